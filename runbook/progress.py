"""Progress of the long copies (a snapshot's dump, a restore): reported by the engine, shown by the CLI.

The engine never prints. It calls a `Progress` with a line of text for each thing done, and an
`OnTransfer` with a `Transfer` (bytes so far, bytes expected) twice a second while a copy runs, from a
helper thread. Only the CLI makes a `TransferDisplay` of those: once a copy has run for a few seconds, a
rich bar with bytes, rate and time left on a terminal, or a plain line every few seconds otherwise (a log,
CI), so that a long snapshot never looks hung.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

Progress = Callable[[str], None]


def no_progress(text: str) -> None:
    return None


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Transfer:
    """How far one copy has come; `total` is an estimate, or None when nothing tells it in advance."""

    what: str  # "snapshot", "restore": one bar each
    done: int  # bytes so far
    total: int | None = None
    measure: str = ""  # what the bytes are, for the reader: "of the database read", "of the dump sent"
    finished: bool = False


OnTransfer = Callable[[Transfer], None]


def no_transfer(transfer: Transfer) -> None:
    return None


class Sampler:
    """While open, call on_transfer with sample() every `interval` seconds from a helper thread; then once
    more, finished (whatever ended the copy), so a display can take its bar away."""

    def __init__(self, on_transfer: OnTransfer, sample: Callable[[], Transfer], interval: float = 0.5):
        self._on_transfer, self._sample, self._interval = on_transfer, sample, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runbook-progress", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._on_transfer(self._sample())
            except Exception:  # noqa: BLE001 - progress is advisory: it never stops the copy it watches
                return

    def __enter__(self) -> Sampler:
        if self._on_transfer is not no_transfer:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._on_transfer is not no_transfer:
            with contextlib.suppress(Exception):  # see _run
                self._on_transfer(replace(self._sample(), finished=True))


class TransferDisplay:
    """The console side of `OnTransfer` (made by the CLI only): a bar on a terminal, plain lines otherwise.

    Nothing shows for a copy shorter than `delay` seconds. The first plain line comes after `delay` seconds,
    the next every `every` seconds; the bar goes away when the copy ends (the engine's own note then says
    what was written, and how fast).
    """

    def __init__(self, console: Any, *, live: bool | None = None, delay: float = 3.0, every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.delay, self.every, self.clock = delay, every, clock
        self._lock = threading.Lock()
        self._first: dict[str, tuple[float, int]] = {}
        self._last_line: dict[str, float] = {}
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}

    def __call__(self, transfer: Transfer) -> None:
        with self._lock:
            now = self.clock()
            if transfer.finished:
                self._end(transfer.what)
                return
            started, _ = self._first.setdefault(transfer.what, (now, transfer.done))
            if now - started < self.delay:
                return
            if self.live:
                self._show_bar(transfer)
            elif now >= self._last_line.get(transfer.what, started + self.delay - self.every) + self.every:
                self._last_line[transfer.what] = now
                self.console.print(self.line(transfer, now), markup=False, highlight=False)

    def line(self, transfer: Transfer, now: float) -> str:
        """One plain line: bytes (of the total), the mean rate so far, and the time left at that rate."""
        started, first = self._first.get(transfer.what, (now, 0))
        elapsed = max(now - started, 1e-6)
        rate = max(transfer.done - first, 0) / elapsed
        text = f"{transfer.what}: {human_size(transfer.done)}"
        if transfer.total:
            text += f" of {human_size(transfer.total)}"
        text += f" {transfer.measure}".rstrip() + f", {human_size(rate)}/s"
        if transfer.total and rate > 0 and transfer.done < transfer.total:
            text += f", about {max(transfer.total - transfer.done, 0) / rate:.0f} s left"
        return text

    def _show_bar(self, transfer: Transfer) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        if self._bar is None:
            self._bar = Progress(TextColumn("   {task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=self.console, transient=True)
            self._bar.start()
        if transfer.what not in self._tasks:
            self._tasks[transfer.what] = self._bar.add_task(f"{transfer.what} {transfer.measure}".strip(),
                                                            total=transfer.total)
        self._bar.update(self._tasks[transfer.what], completed=transfer.done, total=transfer.total)

    def _end(self, what: str) -> None:
        self._first.pop(what, None)
        self._last_line.pop(what, None)
        task = self._tasks.pop(what, None)
        if task is not None and self._bar is not None:
            self._bar.remove_task(task)
        if not self._tasks:
            self.close()

    def close(self) -> None:
        """Take any bar away (a copy interrupted before it could say it ended)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._tasks.clear()
