"""The console side of a long copy's progress: a rich bar on a terminal, plain periodic lines otherwise.

Once a copy has run for a few seconds, a bar with bytes, rate and time left on a terminal, or a plain line
every few seconds otherwise (a log, CI), so that a long snapshot never looks hung.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from runbook.progress import Transfer, human_size


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
