"""Fault tests only: stop a run at a named moment so a test can signal it there, and know it did.

With `RUNBOOK_TEST_PAUSE_AT=<event>` (events: `steps`, `after-step-N`, `delete-file-N`, `write-file-N`)
the run writes `RUNBOOK_TEST_PAUSE_MARKER` when it reaches the event and sleeps until a signal arrives
or the test deletes the marker (at most a minute). Without the variable nothing here does anything.
"""

from __future__ import annotations

import os
import time
from typing import Any

PAUSE_VARIABLE = "RUNBOOK_TEST_PAUSE_AT"
MARKER_VARIABLE = "RUNBOOK_TEST_PAUSE_MARKER"
LONGEST_PAUSE = 60.0


def enabled() -> bool:
    return bool(os.environ.get(PAUSE_VARIABLE))


def pause_at(event: str) -> None:
    """Write the marker and wait for a signal when event is the one a fault test asked for."""
    if os.environ.get(PAUSE_VARIABLE) != event:
        return
    marker = os.environ.get(MARKER_VARIABLE)
    if marker:
        with open(marker, "w", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {event}\n")
    deadline = time.monotonic() + LONGEST_PAUSE
    while time.monotonic() < deadline and (not marker or os.path.exists(marker)):
        time.sleep(0.05)


class PausingTarget:
    """A target that counts the files a step deletes or writes and pauses at the one asked for."""

    def __init__(self, target: Any):
        self._target = target
        self._counts = {"delete-file": 0, "write-file": 0}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def _count(self, kind: str) -> None:
        self._counts[kind] += 1
        pause_at(f"{kind}-{self._counts[kind]}")

    def delete_file(self, service: str, path: str) -> None:
        self._target.delete_file(service, path)
        self._count("delete-file")

    def write_file(self, service: str, path: str, data: bytes) -> None:
        self._target.write_file(service, path, data)
        self._count("write-file")
