"""The compose target: commands and files in the containers of a running Compose project, via the docker SDK.

One object per job, wired here: `Containers` finds the project's containers and talks to the daemon,
`Execs` runs commands in them, `Files` moves files in and out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from runbook.config import Config
from runbook.targets.base import DatabaseSettings, ExecResult, OutputCallback
from runbook.targets.compose.containers import Containers
from runbook.targets.compose.docker_sdk import docker
from runbook.targets.compose.execs import Execs
from runbook.targets.compose.files import Files


class ComposeTarget:
    """Run commands and touch files in the services of one running Compose project."""

    name = "compose"
    # The services run in containers, possibly on another machine (DOCKER_HOST).
    on_this_host = False
    # Relative paths resolve in the service, against its container's working directory.
    workdir = None

    def __init__(
        self,
        config: Config,
        *,
        project_name: str | None = None,
        compose_file: str | None = None,
        client_factory: Callable[[], Any] = docker.from_env,
        stream_via_sdk: bool = False,
    ):
        self.config = config
        self.containers = Containers(config, project_name=project_name, compose_file=compose_file,
                                     client_factory=client_factory)
        self.execs = Execs(self.containers, stream_via_sdk=stream_via_sdk)
        self.files = Files(self.containers, self.execs)
        self.warnings = self.containers.warnings

    def environment(self, service: str) -> dict[str, str]:
        return self.containers.environment(service)

    def streams_stdin(self) -> bool:
        return self.execs.hijack_supported(stdin=True)

    def check_ready(self, services: Sequence[str]) -> None:
        self.containers.check_ready(services)

    def describe(self) -> dict[str, str]:
        return self.containers.describe()

    def database_settings(self) -> DatabaseSettings:
        return self.containers.database_settings(self.files.read_file)

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
        return self.execs.exec(service, argv, env=env, workdir=workdir, user=user, timeout=timeout,
                               on_output=on_output)

    def exec_to_file(self, service: str, argv: Sequence[str], dest: Path, *,
                     env: Mapping[str, str] | None = None, timeout: float | None = None) -> ExecResult:
        return self.execs.exec_to_file(service, argv, dest, env=env, timeout=timeout)

    def exec_from_file(self, service: str, argv: Sequence[str], src: Path | BinaryIO, *,
                       env: Mapping[str, str] | None = None, timeout: float | None = None) -> ExecResult:
        return self.execs.exec_from_file(service, argv, src, env=env, timeout=timeout)

    def read_file(self, service: str, path: str) -> bytes:
        return self.files.read_file(service, path)

    def write_file(self, service: str, path: str, data: bytes) -> None:
        self.files.write_file(service, path, data)

    def list_files(self, service: str, directory: str, pattern: str = "*") -> list[str]:
        return self.files.list_files(service, directory, pattern)

    def delete_file(self, service: str, path: str) -> None:
        self.files.delete_file(service, path)
