"""The interface every target implements.

A target runs argv commands "in a service" (`db` or `backend`, the playbook's logical names, which the
target maps to the project's own service names) and reads and writes files there.
The local target ignores the service name for placement (everything runs on the host) but keeps it
for the report; the compose target maps it to a running container.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, runtime_checkable

Stream = Literal["stdout", "stderr"]
# Called with each chunk of output as it arrives, so the console and report can stream it.
OutputCallback = Callable[[Stream, str], None]


@dataclass
class ExecResult:
    """What a command did: a failure is a result, not an exception, until a policy decides."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    timed_out: bool = False
    # True when stdout/stderr were cut to keep memory bounded; the full text streamed past.
    truncated: bool = False


def create_output_file(dest: Path) -> BinaryIO:
    """Open dest for a command's stdout: created or emptied, owner-only from the first byte."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    return os.fdopen(fd, "wb", buffering=1024 * 1024)  # output arrives in small frames: few big writes


def open_source(src: Path | BinaryIO) -> contextlib.AbstractContextManager[BinaryIO]:
    """Open a path to stream from, or pass a file the caller opened through (left open for it)."""
    return contextlib.nullcontext(src) if hasattr(src, "read") else open(src, "rb")  # type: ignore[arg-type, return-value]


@dataclass
class DatabaseSettings:
    """How to reach PostgreSQL; `password` never goes into a report."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str | None = None
    dbname: str = "postgres"
    # How the connection is made, for the report: "tcp", "psql-in-container", ...
    via: str = "tcp"
    extra: dict[str, str] = field(default_factory=dict)

    def conninfo(self) -> dict[str, object]:
        info: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "connect_timeout": 5,
        }
        if self.password is not None:
            info["password"] = self.password
        return info


@runtime_checkable
class Target(Protocol):
    """Run commands and touch files in the services of one project."""

    name: str

    def exec(
        self,
        service: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        user: str | None = None,
        timeout: float | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        """Run argv in the service and return its result; never raise for a non-zero exit."""
        ...

    def exec_to_file(
        self,
        service: str,
        argv: Sequence[str],
        dest: Path,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run argv with its stdout streamed into dest (created 0600, synced) in constant memory; keep stderr."""
        ...

    def exec_from_file(
        self,
        service: str,
        argv: Sequence[str],
        src: Path | BinaryIO,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> ExecResult:
        """Run argv with the file src streamed to its stdin in constant memory; keep stdout and stderr.

        src may be a file the caller opened (and keeps): its offset then shows how far the command read.
        """
        ...

    def read_file(self, service: str, path: str) -> bytes:
        """Return the bytes of a file in the service."""
        ...

    def write_file(self, service: str, path: str, data: bytes) -> None:
        """Create or replace a file in the service."""
        ...

    def list_files(self, service: str, directory: str, pattern: str = "*") -> list[str]:
        """Return the paths of files under directory matching a glob pattern, sorted."""
        ...

    def delete_file(self, service: str, path: str) -> None:
        """Remove a file in the service."""
        ...

    def database_settings(self) -> DatabaseSettings:
        """Return how to reach the database of this project."""
        ...

    def describe(self) -> dict[str, str]:
        """Return facts for the report header (target kind, project, services)."""
        ...

    def check_ready(self, services: Sequence[str]) -> None:
        """Raise EnvironmentNotReady when a needed service cannot run commands."""
        ...
