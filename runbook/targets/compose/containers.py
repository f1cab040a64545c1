"""The containers of a running Compose project: found by label, checked, described, talked to through the SDK.

Containers are found by Compose's labels, so stacks started by Compose v1 and v2 both work and no docker
CLI output is ever parsed. Every call to the Docker API goes through `talking`, which turns whatever the SDK
or its transport raises into one EnvironmentNotReady line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import requests.exceptions

from runbook.config import Config
from runbook.errors import EnvironmentNotReady, RunbookError
from runbook.targets.base import DatabaseSettings, FileAccessError, Warnings, file_error
from runbook.targets.compose.docker_sdk import docker
from runbook.targets.compose.project import (
    PROJECT_LABEL,
    ComposeProject,
    ContainerInfo,
    container_env,
    group_by_service,
    pick_container,
    resolve_project,
    settings_from_container,
)
from runbook.targets.local import settings_from_config

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# check_ready trusts a container list younger than this (the executor calls it right after describe()).
FRESH_LIST = 1.0


class Containers:
    """The project's container for each service, looked up by label and kept until a failure says it changed."""

    def __init__(self, config: Config, *, project_name: str | None, compose_file: str | None,
                 client_factory: Callable[[], Any]):
        self.config = config
        # Things the report should show the user: a choice runbook made, a change that will not last.
        self.warnings = Warnings()
        self._project_name = project_name
        self._compose_file = compose_file
        self._client_factory = client_factory
        self._client: Any = None
        self._project: ComposeProject | None = None
        self._containers: dict[str, Any] = {}
        self._listed_at = float("-inf")  # when the project's containers were last listed (monotonic)

    # --- Docker and the project ----------------------------------------------------------------------

    @property
    def docker_host(self) -> str:
        return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST

    @property
    def client(self) -> Any:
        """The docker SDK client, made on first use; an unreachable daemon is EnvironmentNotReady."""
        if self._client is None:
            try:
                self._client = self._client_factory()
            except Exception as exc:  # DockerException, paramiko and socket errors alike
                raise self.unreachable(exc) from exc
        return self._client

    @property
    def project(self) -> ComposeProject:
        if self._project is None:
            self._project = resolve_project(
                self.config.project_dir,
                project_name=self._project_name,
                configured_name=self.config.compose.project,
                compose_file=self._compose_file,
                configured_file=self.config.compose.file,
            )
        return self._project

    def service_name(self, service: str) -> str:
        """Map the playbook's `db` / `backend` to the project's service names."""
        if service == "db":
            return self.config.services.db
        if service == "backend":
            return self.config.services.backend
        return service

    # --- finding containers --------------------------------------------------------------------------

    def container(self, service: str) -> Any:
        """Return the docker SDK container that runs service (cached until check_ready or a failure)."""
        name = self.service_name(service)
        if name not in self._containers:
            self._resolve([service])
        return self._containers[name]

    def forget(self, service: str) -> None:
        """Drop the container known for service: it stopped or was recreated, so look it up again."""
        self._containers.pop(self.service_name(service), None)

    def _resolve(self, services: Sequence[str]) -> None:
        """Find the containers of services with one container list; inspect only those not known yet."""
        project = self.project
        with self.talking(f"listing the containers of project {project.name!r}"):
            summaries = self.client.api.containers(all=True, filters={"label": f"{PROJECT_LABEL}={project.name}"})
        self._listed_at = time.monotonic()
        found = group_by_service(ContainerInfo.from_summary(s) for s in summaries)
        for service in services:
            name = self.service_name(service)
            try:
                info, warning = pick_container(project, name, found)
            except EnvironmentNotReady:
                self._containers.pop(name, None)
                raise
            if warning:
                self.warnings.add(warning)
            known = self._containers.get(name)
            if known is not None and known.id == info.id:
                continue  # listed as running a moment ago, same container: its inspect data still holds
            try:
                with self.talking(f"inspecting container {info.name}", passthrough=(docker.errors.NotFound,)):
                    self._containers[name] = self.client.containers.get(info.id)
            except docker.errors.NotFound as exc:
                raise EnvironmentNotReady(f"container {info.name} of service {name!r} went away",
                                          hint="run again once the stack is up") from exc

    def check_ready(self, services: Sequence[str]) -> None:
        known = all(self.service_name(s) in self._containers for s in services)
        if known and time.monotonic() - self._listed_at < FRESH_LIST:
            return  # describe() listed them a moment ago
        # A fresh list says whether each service still runs; a container seen before is not inspected again.
        self._resolve(services)

    def describe(self) -> dict[str, str]:
        info = {"target": "compose", "project": "", "compose_file": "", "docker_host": self.docker_host}
        try:
            info["project"] = self.project.name
            info["compose_file"] = str(self.project.compose_file or "")
        except RunbookError as exc:
            info["project"] = f"(unknown: {exc.message})"
        try:
            self._resolve([r for r in ("db", "backend") if self.service_name(r) not in self._containers])
        except RunbookError as exc:
            if self._client is None:  # no daemon: do not wait for it twice
                info["db"] = info["backend"] = f"(unavailable: {exc.message})"
                return info
        for role in ("db", "backend"):
            try:
                info[role] = self.container(role).name
            except RunbookError as exc:
                info[role] = f"(unavailable: {exc.message})"
        return info

    def environment(self, service: str) -> dict[str, str]:
        """Return the environment the service's container was started with (its inspect data)."""
        return container_env(self.container(service).attrs)

    def absolute(self, service: str, path: str) -> str:
        """Resolve path like a command in the service would: relative to its container's working directory."""
        base = (self.container(service).attrs.get("Config") or {}).get("WorkingDir") or "/"
        return posixpath.normpath(posixpath.join(base, path))

    # --- the database --------------------------------------------------------------------------------

    def database_settings(self, read_file: Callable[[str, str], bytes]) -> DatabaseSettings:
        """Return how to reach the db service's PostgreSQL: runbook.yml first, then the container's POSTGRES_*."""
        db = self.config.database
        if db.url or db.host:
            configured = settings_from_config(self.config)
            assert configured is not None
            return configured
        found = self._settings_from_container(read_file)
        merged = settings_from_config(self.config, fallback=found)
        if merged is None:
            return found
        # Credentials from runbook.yml, address from the container: say how the connection is made.
        merged.via, merged.extra = found.via, dict(found.extra)
        return merged

    def _settings_from_container(self, read_file: Callable[[str, str], bytes]) -> DatabaseSettings:
        container = self.container("db")
        settings = settings_from_container(container.attrs, container.name, self.docker_host)
        settings.extra["service"] = self.config.services.db
        password_file = container_env(container.attrs).get("POSTGRES_PASSWORD_FILE")
        if settings.password is None and password_file:
            with contextlib.suppress(RunbookError):
                settings.password = read_file("db", password_file).decode().rstrip("\r\n")
        return settings

    # --- archives: the daemon's way to move files in and out ------------------------------------------

    def put_archive(self, service: str, directory: str, data: Any) -> None:
        """Unpack a tar archive (bytes, a file or an iterator of chunks) into directory in the service."""
        container = self.container(service)
        tmpfs = _tmpfs_holding(container, directory)
        if tmpfs:
            # The daemon would write beneath the mount, where nothing in the container sees it.
            raise FileAccessError(f"cannot write into {directory} in {service}: it is on the tmpfs mount {tmpfs}, "
                                  "which Docker's archive API cannot reach", path=directory, service=service)
        try:
            with self.talking(f"writing into {directory} in {container.name}", service,
                              passthrough=(docker.errors.APIError,)):
                container.put_archive(directory, data)
        except docker.errors.APIError as exc:
            raise FileAccessError(f"cannot write into {directory} in {service}: {reason(exc)}",
                                  path=directory, service=service) from exc

    @contextlib.contextmanager
    def get_archive(self, service: str, path: str) -> Iterator[Any]:
        """Fetch path from the service as a tar archive spooled to a temporary file; yield the open spool."""
        container = self.container(service)
        tmpfs = _tmpfs_holding(container, path)
        if tmpfs:
            raise FileAccessError(f"cannot read {path} in {service}: it is on the tmpfs mount {tmpfs}, "
                                  "which Docker's archive API cannot reach", path=path, service=service)
        with tempfile.TemporaryFile() as spool:
            try:
                with self.talking(f"reading {path} in {container.name}", service,
                                  passthrough=(docker.errors.APIError,)):
                    chunks, _ = container.get_archive(path)
                    for chunk in chunks:
                        spool.write(chunk)
            except docker.errors.NotFound as exc:
                missing = FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
                raise file_error("read", service, path, missing) from exc
            except docker.errors.APIError as exc:
                raise FileAccessError(f"cannot read {path} in {service}: {reason(exc)}",
                                      path=path, service=service) from exc
            spool.seek(0)
            yield spool

    # --- errors --------------------------------------------------------------------------------------

    def unreachable(self, exc: BaseException) -> EnvironmentNotReady:
        return EnvironmentNotReady(
            f"cannot reach the Docker daemon at {self.docker_host}: {reason(exc)}",
            hint="start Docker or set DOCKER_HOST",
        )

    @contextlib.contextmanager
    def talking(self, doing: str, service: str | None = None,
                passthrough: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
        """Turn whatever the Docker SDK or its transport raises while doing something into one line (exit 4).

        Errors in passthrough are left to the caller, who knows what they mean there.
        """
        try:
            yield
        except passthrough:
            raise
        except (requests.exceptions.ConnectionError, ConnectionError) as exc:
            raise self.unreachable(exc) from exc
        except docker.errors.APIError as exc:
            if service is not None and exc.status_code in (404, 409):
                name = self.service_name(service)
                self._containers.pop(name, None)
                raise EnvironmentNotReady(f"service {name} stopped during the step ({reason(exc)})",
                                          hint=f"start it with `docker compose up -d {name}`") from exc
            raise EnvironmentNotReady(f"the Docker daemon at {self.docker_host} answered an error while {doing}: "
                                      f"{reason(exc)}",
                                      hint="check `docker compose ps` and the daemon's log") from exc
        except _transport_errors() as exc:
            raise EnvironmentNotReady(f"lost touch with the Docker daemon at {self.docker_host} while {doing}: "
                                      f"{reason(exc)}", hint="check that Docker is running and reachable") from exc


def _tmpfs_holding(container: Any, path: str) -> str | None:
    """Return the tmpfs mount that holds path, if any."""
    attrs = container.attrs
    mounts = [m.get("Destination") for m in attrs.get("Mounts") or [] if m.get("Type") == "tmpfs"]
    mounts += list((attrs.get("HostConfig") or {}).get("Tmpfs") or {})
    for mount in mounts:
        mount = str(mount or "").rstrip("/")
        if mount and (path == mount or path.startswith(mount + "/")):
            return mount
    return None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The errors the SDK and its transports raise; paramiko counts only when ssh:// loaded it."""
    kinds: list[type[BaseException]] = [docker.errors.DockerException, requests.exceptions.RequestException,
                                        TimeoutError, EOFError]
    paramiko = sys.modules.get("paramiko")
    if paramiko is not None:
        kinds.append(paramiko.SSHException)
    return tuple(kinds)


def reason(exc: BaseException) -> str:
    """Return a short one-line reason: the innermost OS error if there is one, else the message."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        for arg in getattr(seen, "args", ()):
            if isinstance(arg, OSError) and arg.strerror:
                return arg.strerror
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        return first_line(str(exc.explanation))
    return first_line(str(exc)) or type(exc).__name__


def first_line(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else ""
