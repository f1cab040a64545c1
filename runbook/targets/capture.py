"""Keep a command's output for the report in bounded memory: the head and the tail, never the whole."""

from __future__ import annotations

HEAD_CHARS = 512 * 1024
TAIL_CHARS = 512 * 1024


class OutputBuffer:
    """Collects streamed text; past the head limit only a rolling tail is kept."""

    def __init__(self, head: int = HEAD_CHARS, tail: int = TAIL_CHARS):
        self._head_limit, self._tail_limit = head, tail
        self._head: list[str] = []
        self._head_size = 0
        self._tail = ""
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
        if text:
            self._tail += text
            if len(self._tail) > self._tail_limit:
                cut = len(self._tail) - self._tail_limit
                self.dropped += cut
                self._tail = self._tail[cut:]

    def text(self) -> str:
        head = "".join(self._head)
        if not self.dropped:
            return head + self._tail
        return f"{head}\n[... {self.dropped} characters cut by runbook ...]\n{self._tail}"
