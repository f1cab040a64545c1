"""Work done beside a streaming copy: hash a file as it grows, run a job in a helper thread, follow COPY.

The copy itself (pg_dump into the snapshot's file, the dump into pg_restore) runs in the caller's thread,
so that Ctrl-C or SIGTERM stops it in the service as before; everything here runs beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import psycopg

from runbook.targets.base import DatabaseSettings

T = TypeVar("T")
CHUNK = 1024 * 1024
# How long the hasher sleeps when it has caught up with the writer.
CATCH_UP_WAIT = 0.05


class FileHasher:
    """The size and sha256 of a file another writer appends to, read as it grows (from the page cache).

    A writer's bytes below the file's size are complete (the kernel moves the size after the copy), so
    reading up to the end as it stands never sees a half-written block.
    """

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_RDONLY)
        self._digest = hashlib.sha256()
        self.size = 0
        self._writer_done = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="runbook-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                done = self._writer_done.is_set()  # before the read: then an empty read means the end
                block = os.read(self._fd, CHUNK)
                if block:
                    self._digest.update(block)
                    self.size += len(block)
                elif done:
                    return
                else:
                    self._writer_done.wait(CATCH_UP_WAIT)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by finish()
            self._error = exc

    def finish(self) -> tuple[int, str]:
        """Wait for the last bytes (the writer has finished); return the size and the sha256."""
        self._writer_done.set()
        self._thread.join()
        self.close()
        if self._error is not None:
            raise self._error
        return self.size, self._digest.hexdigest()

    def close(self) -> None:
        """Stop early (the copy failed); safe to call twice."""
        self._writer_done.set()
        self._thread.join()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = -1


class Beside(Generic[T]):
    """Run fn in a helper thread now; result() waits and re-raises its exception in the caller's thread."""

    def __init__(self, fn: Callable[[], T], name: str):
        self._value: T | None = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
                self._error = exc

        self._thread = threading.Thread(target=run, name=f"runbook-{name}", daemon=True)
        self._thread.start()

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def wait(self, timeout: float | None = None) -> bool:
        """Wait at most timeout seconds, ignoring the outcome; True when the job has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


# pg_dump reads one table at a time with COPY; PostgreSQL 14 and later show how far in this view.
COPY_PROGRESS_SQL = (
    "SELECT p.relid::bigint, p.tuples_processed, p.bytes_processed FROM pg_stat_progress_copy p"
    " JOIN pg_stat_activity a ON a.pid = p.pid WHERE a.application_name = %s")
TABLE_SIZES_SQL = (
    "SELECT c.oid::bigint, pg_table_size(c.oid), c.reltuples::float8 FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
    " AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'")


class CopyProgress:
    """How many bytes of the database's tables a pg_dump (known by its application_name) has read so far.

    Each table counts in full once pg_dump has moved past it, and in proportion to its rows (or its bytes
    when it was never analyzed) while it is being read. An estimate, good enough for a bar and a time left.
    """

    def __init__(self, settings: DatabaseSettings, application_name: str):
        self._settings, self._name = settings, application_name
        self._conn: psycopg.Connection[Any] | None = None
        self.sizes: dict[int, tuple[int, float]] = {}  # table oid: its bytes, its estimated rows
        self._order: list[int] = []
        self._current: tuple[int, float] | None = None
        self.total: int | None = None
        self._failed = False

    def read(self) -> int | None:
        """Return the bytes read so far (None when the server cannot say); each call asks the server once."""
        if self._failed:
            return None
        try:
            if self._conn is None:
                self._conn = psycopg.connect(**self._settings.conninfo(), autocommit=True,
                                             application_name="runbook snapshot progress")
                for oid, size, tuples in self._conn.execute(TABLE_SIZES_SQL):
                    self.sizes[int(oid)] = (int(size), float(tuples))
                self.total = sum(size for size, _ in self.sizes.values())
            rows = self._conn.execute(COPY_PROGRESS_SQL, (self._name,)).fetchall()
        except psycopg.Error:
            self._failed = True  # no view (before 14), no permission: the bar shows the dump's bytes instead
            self.close()
            return None
        return self.advance(rows)

    def advance(self, rows: list[tuple[int, int, int]]) -> int:
        """Take one look at pg_stat_progress_copy (relid, tuples, bytes); return the bytes read so far."""
        for relid, tuples, nbytes in rows:
            size, estimate = self.sizes.get(int(relid), (0, 0.0))
            share = tuples / estimate if estimate > 0 else (nbytes / size if size else 1.0)
            if int(relid) not in self._order:
                self._order.append(int(relid))
            self._current = (int(relid), min(max(share, 0.0), 1.0))
        done = 0.0
        for relid in self._order:
            size = self.sizes.get(relid, (0, 0.0))[0]
            done += size * (self._current[1] if self._current and relid == self._current[0] else 1.0)
        return int(done)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
