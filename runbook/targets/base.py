"""The interface every target implements.

A target runs argv commands "in a service" (`db` or `backend`, the playbook's logical names, which the
target maps to the project's own service names) and reads and writes files there.
The local target ignores the service name for placement (everything runs on the host) but keeps it
for the report; the compose target maps it to a running container.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal, Protocol, overload, runtime_checkable

from runbook.errors import StepFailed

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


class FileAccessError(StepFailed):
    """A file in a service could not be read, written, listed or deleted; `path` and `service` say which."""

    def __init__(self, message: str, *, path: str, service: str, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.path = path
        self.service = service


class MissingFile(FileAccessError):
    """The file is not there; callers that can do without it catch this one."""


# How to fix what an errno says, for the one-line error.
_FIXES = {
    errno.EACCES: "check the owner and mode of the file and its directory, or run as a user who may change it",
    errno.EPERM: "check the owner and mode of the file and its directory, or run as a user who may change it",
    errno.EISDIR: "name a file, not a directory",
    errno.ENOTDIR: "a part of the path is a file, not a directory: check the path",
    errno.EEXIST: "a file stands where a directory is needed: check the path",
    errno.ENOSPC: "free some space where the file lives",
    errno.EROFS: "the file system is read-only: mount it writable",
    errno.ENOENT: "check the path",
    errno.ELOOP: "a symbolic link on the path loops: check the links",
}


def file_error(doing: str, service: str, path: str, exc: OSError) -> FileAccessError:
    """Turn an OSError of a file operation into one line naming the path and the fix."""
    kind = MissingFile if exc.errno == errno.ENOENT else FileAccessError
    reason = exc.strerror or str(exc) or type(exc).__name__
    return kind(f"cannot {doing} {path} in {service}: {reason}", path=path, service=service,
                hint=_FIXES.get(exc.errno or 0, "check the path and the service"))


class Warnings(Sequence[str]):
    """Things the report should show the user, each kept once and passed at once to whoever listens."""

    def __init__(self) -> None:
        self._messages: list[str] = []
        self._listeners: list[Callable[[str], None]] = []

    def add(self, message: str) -> None:
        if message in self._messages:
            return
        self._messages.append(message)
        for listener in self._listeners:
            listener(message)

    def listen(self, listener: Callable[[str], None]) -> None:
        """Call listener with each warning raised from now on (the console shows them as they come)."""
        self._listeners.append(listener)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self._messages[index]

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[str]:
        return iter(self._messages)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Warnings):
            return self._messages == other._messages
        return isinstance(other, list) and self._messages == other

    def __repr__(self) -> str:
        return f"Warnings({self._messages!r})"


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
    # Further libpq parameters from database.url (sslmode, sslrootcert, ...), passed on as they are.
    parameters: dict[str, str] = field(default_factory=dict)

    def conninfo(self) -> dict[str, object]:
        info: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "connect_timeout": 5,
        }
        info.update(self.parameters)
        if self.password is not None:
            info["password"] = self.password
        return info


@runtime_checkable
class Target(Protocol):
    """Run commands and touch files in the services of one project."""

    # The kind of target ("local", "compose"), as data for the report and the snapshot's manifest.
    name: str
    # Things the report should show: a choice the target made, a change that will not last.
    warnings: Warnings

    @property
    def on_this_host(self) -> bool:
        """True when the services run on this machine: their files are its files, its client tools reach the db."""
        ...

    @property
    def workdir(self) -> str | None:
        """The backend's working directory on this host, where relative file paths start; None in a service."""
        ...

    def environment(self, service: str) -> dict[str, str]:
        """Return the environment a command in the service starts with, before runbook.yml's and the step's."""
        ...

    def streams_stdin(self) -> bool:
        """True when a command's stdin is a live stream fed as it runs; False when it is uploaded whole first."""
        ...

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
        """Return the bytes of a file in the service; MissingFile when there is none, else FileAccessError."""
        ...

    def write_file(self, service: str, path: str, data: bytes) -> None:
        """Create or replace a file in the service (and its directory); FileAccessError when it cannot."""
        ...

    def list_files(self, service: str, directory: str, pattern: str = "*") -> list[str]:
        """Return the paths of files under directory matching a glob pattern, sorted; none when it is missing."""
        ...

    def delete_file(self, service: str, path: str) -> None:
        """Remove a file in the service; a missing one is fine, one that cannot go is FileAccessError."""
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
