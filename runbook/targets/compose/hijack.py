"""Stream bytes through a docker exec's hijacked connection: a file into stdin, stdout out to a sink.

`POST /exec/ID/start` with `Upgrade: tcp` turns the HTTP connection into a raw socket. Without a TTY the
daemon sends stdout and stderr multiplexed in frames (an 8-byte header: stream id, three zero bytes, the
payload size as a big-endian uint32). Whatever we write goes to the command's stdin; shutting down our
write side is how the command sees EOF. One thread, one non-blocking socket, `poll`: reading and
writing interleave, so a command that talks while it reads (pg_restore --list) never deadlocks, and
memory stays at one chunk whatever the size of the stream.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, BinaryIO

CHUNK = 256 * 1024
# pg_dump writes a few KiB at a time. Reading each trickle as it comes costs a select and a recv per few
# KiB: seconds of CPU per GiB, taken from the pg_dump beside us on a small machine. After a small read
# we let the socket buffer fill for a moment instead; a fast stream always reads full chunks and never waits.
SMALL_READ = 64 * 1024
BATCH_WAIT = 0.01
HEADER_SIZE = 8
STDOUT, STDERR = 1, 2

# Called with (stream id, payload); the memoryview is only valid during the call.
FrameSink = Callable[[int, memoryview], None]


class FrameDecoder:
    """Split Docker's multiplexed stream into payloads, holding at most one 8-byte header between reads."""

    def __init__(self, sink: FrameSink):
        self._sink = sink
        self._header = bytearray()
        self._stream = 0
        self._left = 0

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            if self._left == 0:
                take = min(HEADER_SIZE - len(self._header), end - pos)
                self._header += view[pos:pos + take]
                pos += take
                if len(self._header) < HEADER_SIZE:
                    return
                self._stream = self._header[0]
                self._left = int.from_bytes(self._header[4:8], "big")
                self._header.clear()
                continue
            take = min(self._left, end - pos)
            self._sink(self._stream, view[pos:pos + take])
            pos += take
            self._left -= take

    @property
    def mid_frame(self) -> bool:
        """True when the stream stopped inside a frame: the output is cut."""
        return bool(self._header) or self._left > 0


class UnsupportedTransport(Exception):
    """No plain socket to stream through: an ssh:// or npipe:// DOCKER_HOST, or stdin over TLS."""


class HijackedExec:
    """Pump one exec's hijacked connection: `source` (or nothing) in, decoded frames out."""

    def __init__(self, raw: Any, source: BinaryIO | None, sink: FrameSink):
        sock = getattr(raw, "_sock", raw)  # the SDK returns socket.SocketIO over unix and tcp sockets
        if not isinstance(sock, socket.socket):
            raise UnsupportedTransport(type(sock).__name__)
        if source is not None and isinstance(sock, ssl.SSLSocket):
            # EOF on stdin is a half-close; Python's SSLSocket cannot half-close and keep reading.
            raise UnsupportedTransport("stdin over TLS")
        self._raw = raw
        self._sock = sock
        self._source = source
        self._decoder = FrameDecoder(sink)
        self._pending = memoryview(b"")
        self.sending = source is not None
        self.ended = False
        self.bytes_in = 0  # bytes of source written to stdin
        self.stdin_cut = False  # the command stopped reading before the end of source
        sock.setblocking(False)
        # http.client read the 101 response through a buffer that may already hold the first frames.
        reader = getattr(getattr(getattr(getattr(raw, "_response", None), "raw", None), "_fp", None), "fp", None)
        if reader is not None and hasattr(reader, "peek"):
            with contextlib.suppress(OSError, ValueError):
                early = reader.peek(CHUNK)
                if early:
                    self._decoder.feed(reader.read(len(early)))

    @property
    def mid_frame(self) -> bool:
        return self._decoder.mid_frame

    def pump(self, deadline: float | None) -> bool:
        """Move bytes until the daemon closes the stream (True) or the deadline passes (False)."""
        while not self.ended:
            wait = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if wait <= 0:
                return False
            if isinstance(self._sock, ssl.SSLSocket) and self._sock.pending():
                events = select.POLLIN
            else:
                # poll, not select: no limit on the descriptor's number in a long-lived process.
                poller = select.poll()
                poller.register(self._sock, select.POLLIN | (select.POLLOUT if self.sending else 0))
                events = 0
                for _, mask in poller.poll(wait * 1000):
                    events |= mask
            received = self._receive() if events & (select.POLLIN | select.POLLHUP | select.POLLERR) else None
            if received is not None and received < SMALL_READ and not self.sending and not self.ended:
                time.sleep(BATCH_WAIT)
            if events & select.POLLOUT and self.sending and not self.ended:
                self._send()
        return True

    def stop_sending(self) -> None:
        """Send EOF now, whatever is left of the source (used when the command is being stopped)."""
        if self.sending:
            self.sending = False
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(Exception):
            self._raw.close()

    def _receive(self) -> int:
        try:
            data = self._sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return 0
        except ConnectionResetError:
            data = b""
        if not data:
            self.ended = True
            self.sending = False
            return 0
        self._decoder.feed(data)
        return len(data)

    def _send(self) -> None:
        assert self._source is not None
        if not self._pending:
            block = self._source.read(CHUNK)
            if not block:
                self.sending = False
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_WR)  # EOF on the command's stdin
                return
            self._pending = memoryview(block)
        try:
            sent = self._sock.send(self._pending)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except (BrokenPipeError, ConnectionResetError):
            # The command exited (or closed stdin) before reading everything: its exit code decides.
            self.sending, self.stdin_cut = False, True
            return
        self.bytes_in += sent
        self._pending = self._pending[sent:]
