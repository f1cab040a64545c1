"""One run at a time per project: an flock on a file under the artifacts dir.

The kernel drops an flock when its process dies, so a crashed run never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path

from runbook.errors import EnvironmentNotReady, LockHeld
from runbook.fsutil import ensure_private_dir

LOCK_NAME = "run.lock"


class RunLock:
    def __init__(self, artifacts_dir: Path, playbook: str):
        self.path = artifacts_dir / LOCK_NAME
        self.playbook = playbook
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            ensure_private_dir(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise EnvironmentNotReady(
                f"cannot create the run lock {self.path}: {exc.strerror}",
                hint="make the project directory writable, or set `artifacts:` in runbook.yml to a writable directory",
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(fd)
            os.close(fd)
            raise LockHeld(
                f"another runbook run holds the lock: {holder}",
                hint="wait for it to finish; the lock goes away by itself when that process ends",
            ) from None
        except OSError as exc:
            # ENOLCK on some network filesystems, EINTR, ...: the lock is not held, so nothing may run.
            os.close(fd)
            raise EnvironmentNotReady(
                f"cannot lock {self.path}: {exc.strerror or exc}",
                hint="set `artifacts:` in runbook.yml to a directory on a local filesystem",
            ) from exc
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "playbook": self.playbook,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd

    @staticmethod
    def _read_holder(fd: int) -> str:
        try:
            data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            return "holder unknown"
        return (f"playbook {data.get('playbook', '?')} on host {data.get('host', '?')}, "
                f"pid {data.get('pid', '?')}, started {data.get('started', '?')}")

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
