"""Keep a command's output for the report in bounded memory: the head and the tail, never the whole."""

from __future__ import annotations

import time
from collections import deque

from runbook.targets.base import ExecResult

HEAD_CHARS = 512 * 1024
TAIL_CHARS = 512 * 1024


class OutputBuffer:
    """Collects streamed text; past the head limit only a rolling tail is kept."""

    def __init__(self, head: int = HEAD_CHARS, tail: int = TAIL_CHARS):
        self._head_limit, self._tail_limit = head, tail
        self._head: list[str] = []
        self._head_size = 0
        # Chunks, not one string: trimming the front then costs O(chunk), never a copy of the whole tail.
        self._tail: deque[str] = deque()
        self._tail_size = 0
        self.dropped = 0

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def add(self, text: str) -> None:
        room = self._head_limit - self._head_size
        if room > 0:
            self._head.append(text[:room])
            self._head_size += min(room, len(text))
            text = text[room:]
        if not text:
            return
        if len(text) > self._tail_limit:
            self.dropped += len(text) - self._tail_limit + self._tail_size
            self._tail.clear()
            self._tail_size = 0
            text = text[-self._tail_limit:]
        self._tail.append(text)
        self._tail_size += len(text)
        excess = self._tail_size - self._tail_limit
        while excess > 0:
            first = self._tail[0]
            if len(first) <= excess:
                self._tail.popleft()
                cut = len(first)
            else:
                self._tail[0] = first[excess:]
                cut = excess
            self._tail_size -= cut
            self.dropped += cut
            excess -= cut

    def text(self) -> str:
        head = "".join(self._head)
        tail = "".join(self._tail)
        if not self.dropped:
            return head + tail
        return f"{head}\n[... {self.dropped} characters cut by runbook ...]\n{tail}"


def exec_result(exit_code: int, buffers: dict[str, OutputBuffer], started: float, timed_out: bool) -> ExecResult:
    """Return what a streamed command did, from the buffers that kept its stdout and stderr."""
    return ExecResult(
        exit_code=exit_code,
        stdout=buffers["stdout"].text(),
        stderr=buffers["stderr"].text(),
        duration=time.monotonic() - started,
        timed_out=timed_out,
        truncated=buffers["stdout"].truncated or buffers["stderr"].truncated,
    )
