"""Bytes on their way through an exec: the SDK's demuxed stream pumped in a thread, output decoded into
bounded buffers (or stdout into a file), and a local file streamed as a one-file tar archive.
"""

from __future__ import annotations

import codecs
import contextlib
import queue
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from runbook.errors import StepFailed
from runbook.targets.base import ExecResult, OutputCallback
from runbook.targets.capture import OutputBuffer, exec_result

TAR_CHUNK = 256 * 1024


class StreamPump:
    """Read an exec's demuxed stream in a thread, so the caller can wait with a deadline and take Ctrl-C."""

    def __init__(self, stream: Any):
        self._stream = stream
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=256)  # bounded: back-pressure
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.finished = False
        self._thread = threading.Thread(target=self._read, name="runbook-exec-stream", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for out, err in self._stream:
                if out:
                    self._put(("stdout", out))
                if err:
                    self._put(("stderr", err))
        except Exception as exc:
            if not self._stop.is_set():
                self.error = exc
        finally:
            self._put(("end", b""))

    def _put(self, item: tuple[str, bytes]) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def drain(self, emit: Callable[[str, bytes], None], deadline: float | None) -> bool:
        """Pass chunks to emit until the stream ends (True) or the deadline passes (False)."""
        while not self.finished:
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                return False
            try:
                kind, chunk = self._queue.get(timeout=wait)
            except queue.Empty:
                continue
            if kind == "end":
                self.finished = True
            else:
                emit(kind, chunk)
        return True

    def close(self) -> None:
        self._stop.set()
        if not self.finished:
            # Shuts the socket down, which also ends a read blocked in the thread.
            with contextlib.suppress(Exception):
                self._stream.close()
        self._thread.join(timeout=2)


class Output:
    """An exec's stdout and stderr as they arrive: decoded into bounded buffers and passed to on_output,
    or, with a sink, stdout written to it byte for byte."""

    def __init__(self, on_output: OutputCallback | None = None, sink: BinaryIO | None = None):
        self.buffers = {"stdout": OutputBuffer(), "stderr": OutputBuffer()}
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in self.buffers}
        self._on_output = on_output
        self._sink = sink

    def __call__(self, stream: str, chunk: bytes | memoryview, final: bool = False) -> None:
        if stream == "stdout" and self._sink is not None:
            self._sink.write(chunk)
            return
        text = self._decoders[stream].decode(chunk, final=final)
        if text:
            self.buffers[stream].add(text)
            if self._on_output:
                self._on_output(stream, text)  # type: ignore[arg-type]

    def finish(self) -> None:
        """Flush what the decoders hold back (a multi-byte character cut at the very end)."""
        for stream in self.buffers:
            if not (stream == "stdout" and self._sink is not None):
                self(stream, b"", final=True)

    @property
    def empty(self) -> bool:
        return not (self.buffers["stdout"].text() or self.buffers["stderr"].text())

    def result(self, exit_code: int, started: float, timed_out: bool) -> ExecResult:
        return exec_result(exit_code, self.buffers, started, timed_out)


def tar_stream(source: Any, name: str, size: int, uid: int, gid: int) -> Iterator[bytes]:
    """Yield a one-file tar archive of an open file chunk by chunk, never holding the file in memory."""
    member = tarfile.TarInfo(name)
    member.size, member.mode, member.uid, member.gid = size, 0o600, uid, gid
    member.mtime = int(time.time())
    yield member.tobuf(format=tarfile.PAX_FORMAT)
    left = size
    while left > 0:
        block = source.read(min(TAR_CHUNK, left))
        if not block:
            raise StepFailed(f"{getattr(source, 'name', 'the file')} shrank while it was being copied")
        left -= len(block)
        yield block
    # Pad the member to a 512-byte block, then the two zero blocks that end an archive.
    yield b"\0" * (-size % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)
