"""Progress of the long copies (a snapshot's dump, a restore): reported by the engine, shown by the CLI.

The engine never prints. It calls a `Progress` with a line of text for each thing done, and an
`OnTransfer` with a `Transfer` (bytes so far, bytes expected) twice a second while a copy runs, from a
helper thread. Only the CLI shows those (`runbook.cli.transfers`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

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
