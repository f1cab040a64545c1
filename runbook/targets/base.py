"""The interface every target implements.

A target runs argv commands "in a service" (`db` or `backend`, the playbook's logical names, which the
target maps to the project's own service names) and reads and writes files there.
The local target ignores the service name for placement (everything runs on the host) but keeps it
for the report; the compose target maps it to a running container.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

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
