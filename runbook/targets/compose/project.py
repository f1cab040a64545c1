"""Find a Compose project the way Compose does: its name, its file, its containers, its database.

Everything here is pure: it reads files, container summaries and inspect data, never the Docker API.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from dotenv import dotenv_values

from runbook.errors import ConfigError, EnvironmentNotReady
from runbook.targets.base import DatabaseSettings

# The order in which Compose (v1 and v2) looks for a file when none is named.
DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
NUMBER_LABEL = "com.docker.compose.container-number"


@dataclass(frozen=True)
class ComposeProject:
    """The project runbook works on and why it chose that name (for error messages and the report)."""

    name: str
    compose_file: Path | None
    source: str


def normalize_project_name(name: str) -> str:
    """Apply Compose's rule: lowercase, keep [a-z0-9_-], drop leading '_' and '-'."""
    kept = re.sub(r"[^a-z0-9_-]", "", name.lower())
    return kept.lstrip("_-")


def read_dotenv(project_dir: Path) -> dict[str, str]:
    """Return the variables of `<project_dir>/.env`, which Compose reads for COMPOSE_*; none when unreadable."""
    try:
        values = dotenv_values(project_dir / ".env")
    except (OSError, UnicodeDecodeError):
        return {}
    return {key: value for key, value in values.items() if value is not None}  # None: a bare `KEY` line


def find_compose_file(
    project_dir: Path,
    *,
    compose_file: str | None = None,
    configured: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Path | None:
    """Return the compose file Compose would use: argument > runbook.yml > COMPOSE_FILE > default names.

    A default name is looked for in project_dir, then in each parent directory, as Compose does.
    """
    env = os.environ if env is None else env
    named, origin = compose_file, "--compose-file"
    if not named:
        named, origin = configured, "compose.file in runbook.yml"
    if not named and env.get("COMPOSE_FILE"):
        separator = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        named, origin = env["COMPOSE_FILE"].split(separator)[0], "COMPOSE_FILE"
    if named:
        path = Path(named).expanduser()
        path = path if path.is_absolute() else project_dir / path
        if not path.is_file():
            raise ConfigError(f"compose file {path} (from {origin}) does not exist",
                              hint="fix the path or run runbook in the directory of your compose file")
        return path
    # Like Compose: when the directory holds none, the nearest parent directory that does.
    for directory in (project_dir, *project_dir.parents):
        for candidate in DEFAULT_FILES:
            if (directory / candidate).is_file():
                return directory / candidate
    return None


def name_in_compose_file(path: Path) -> str | None:
    """Return the top-level `name:` of a compose file, or None when it has none or cannot be read."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    # An interpolated name (`name: ${X}`) is Compose's business; fall back to the directory name.
    if isinstance(name, str) and name.strip() and "$" not in name:
        return name.strip()
    return None


def resolve_project(
    project_dir: Path,
    *,
    project_name: str | None = None,
    configured_name: str | None = None,
    compose_file: str | None = None,
    configured_file: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ComposeProject:
    """Choose the project name: argument > runbook.yml > COMPOSE_PROJECT_NAME > `name:` > directory."""
    project_dir = project_dir.resolve()
    process_env = os.environ if env is None else env
    env = {**read_dotenv(project_dir), **process_env}
    path = find_compose_file(project_dir, compose_file=compose_file, configured=configured_file, env=env)
    if path is not None and path.parent != project_dir:
        # Compose reads `.env` from the project directory: the compose file's, when it was found above.
        env = {**read_dotenv(path.parent), **process_env}
    candidates: list[tuple[str | None, str]] = [
        (project_name, "--project-name"),
        (configured_name, "compose.project in runbook.yml"),
        (env.get("COMPOSE_PROJECT_NAME"), "COMPOSE_PROJECT_NAME"),
    ]
    if path is not None:
        candidates.append((name_in_compose_file(path), f"name: in {path.name}"))
    directory = path.parent if path is not None else project_dir
    candidates.append((directory.name, f"directory name {directory.name!r}"))
    for raw, source in candidates:
        if raw and normalize_project_name(raw):
            return ComposeProject(normalize_project_name(raw), path, source)
    raise ConfigError(f"cannot derive a Compose project name from {directory}",
                      hint="pass --project-name or set compose.project in runbook.yml")


@dataclass(frozen=True)
class ContainerInfo:
    """The few facts of a container summary (`GET /containers/json`) that choosing one needs."""

    id: str
    name: str
    state: str
    labels: Mapping[str, str]

    @classmethod
    def from_summary(cls, summary: Mapping[str, object]) -> ContainerInfo:
        names = summary.get("Names") or [""]
        state = summary.get("State")
        # API < 1.24 had no State; Status reads "Up 3 minutes" / "Exited (0) ...".
        if not isinstance(state, str):
            status = str(summary.get("Status") or "")
            state = "running" if status.startswith("Up") else "exited"
        return cls(
            id=str(summary.get("Id", "")),
            name=str(names[0]).lstrip("/"),  # type: ignore[index]
            state=state,
            labels=dict(summary.get("Labels") or {}),  # type: ignore[call-overload]
        )

    @property
    def number(self) -> int:
        try:
            return int(self.labels.get(NUMBER_LABEL, "0"))
        except ValueError:
            return 0

    @property
    def running(self) -> bool:
        return self.state == "running"


def group_by_service(containers: Iterable[ContainerInfo]) -> dict[str, list[ContainerInfo]]:
    """Group a project's containers by service, leaving out one-off (`run`) ones, lowest number first."""
    services: dict[str, list[ContainerInfo]] = {}
    for container in containers:
        if container.labels.get(ONEOFF_LABEL, "False") == "True" or SERVICE_LABEL not in container.labels:
            continue
        services.setdefault(container.labels[SERVICE_LABEL], []).append(container)
    for members in services.values():
        members.sort(key=lambda c: (c.number, c.name))
    return services


def pick_container(
    project: ComposeProject, service: str, services: Mapping[str, list[ContainerInfo]]
) -> tuple[ContainerInfo, str | None]:
    """Return the container that runs service, plus a warning when there was a choice; raise when none can."""
    if not services:
        raise EnvironmentNotReady(
            f"no Compose project {project.name!r} (name from {project.source}) is running here",
            hint="start it with `docker compose up -d` or pass --project-name",
        )
    members = services.get(service)
    if not members:
        running = sorted(s for s, cs in services.items() if any(c.running for c in cs))
        listed = ", ".join(running) if running else "none"
        raise EnvironmentNotReady(
            f"Compose project {project.name!r} has no service {service!r} (running services: {listed})",
            hint="set services.db / services.backend in runbook.yml to the right names",
        )
    live = [c for c in members if c.running]
    if not live:
        state = members[0].state or "stopped"
        verb = "unpause" if state == "paused" else "start"
        raise EnvironmentNotReady(
            f"service {service!r} of Compose project {project.name!r} is {state}, not running",
            hint=f"{verb} it with `docker compose {verb} {service}`",
        )
    chosen = live[0]
    warning = None
    if len(live) > 1:
        names = ", ".join(c.name for c in live)
        warning = (
            f"service {service!r} of Compose project {project.name!r} runs {len(live)} containers "
            f"({names}); runbook used {chosen.name}: scale it down to one "
            f"(`docker compose up -d --scale {service}=1`) or choose the project with --project-name"
        )
    return chosen, warning


def match_glob(relative: str, pattern: str) -> bool:
    """Match a `/`-separated relative path like pathlib's glob: `*` stays in one segment, `**` spans any."""
    return _match(relative.split("/"), [p for p in pattern.strip("/").split("/") if p not in ("", ".")])


def glob_depth(pattern: str) -> int | None:
    """Return how many directory levels a pattern can reach, or None when `**` makes it unbounded."""
    parts = [p for p in pattern.strip("/").split("/") if p not in ("", ".")]
    return None if "**" in parts else len(parts)


def _match(parts: list[str], pattern: list[str]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(parts[i:], rest) for i in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], head) and _match(parts[1:], rest)


def container_env(attrs: Mapping[str, Any]) -> dict[str, str]:
    """Return a container's environment from its inspect data."""
    items = (attrs.get("Config") or {}).get("Env") or []
    return dict(item.split("=", 1) for item in items if "=" in item)


def settings_from_container(attrs: Mapping[str, Any], name: str, docker_host: str) -> DatabaseSettings:
    """Work out how to reach the PostgreSQL of a db container from its inspect data (POSTGRES_* env).

    `via` says how: "host network", "published port", "container address", or "psql-in-container"
    when this machine cannot reach the server and SQL must go through psql inside the container.
    """
    env = container_env(attrs)
    user = env.get("POSTGRES_USER") or "postgres"
    settings = DatabaseSettings(user=user, password=env.get("POSTGRES_PASSWORD"),
                                dbname=env.get("POSTGRES_DB") or user, extra={"container": name})
    settings.port = port = int(env.get("PGPORT") or 5432)
    network = attrs.get("NetworkSettings") or {}
    docker_url = urlparse(docker_host)
    local = docker_url.scheme in ("unix", "npipe")
    # Over tcp:// ports are published on the Docker host; over ssh:// only psql in the container works.
    remote = docker_url.hostname if docker_url.scheme in ("tcp", "http", "https") else None
    bindings = [b for b in (network.get("Ports") or {}).get(f"{port}/tcp") or [] if b.get("HostPort")]
    bindings.sort(key=lambda b: ":" in (b.get("HostIp") or ""))  # IPv4 first
    addresses = [n["IPAddress"] for n in (network.get("Networks") or {}).values() if n.get("IPAddress")]
    if (attrs.get("HostConfig") or {}).get("NetworkMode") == "host" and (local or remote):
        settings.host, settings.via = remote or "127.0.0.1", "host network"
        return settings
    if bindings:
        host_ip = (bindings[0].get("HostIp") or "").strip("[]")
        if host_ip in ("", "0.0.0.0", "::"):
            host_ip = remote or "127.0.0.1"
        loopback = host_ip.startswith("127.") or host_ip == "::1"
        if local or (remote and not loopback):
            settings.host, settings.port = host_ip, int(bindings[0]["HostPort"])
            settings.via = "published port"
            return settings
    if addresses and local:
        settings.host, settings.via = addresses[0], "container address"
        return settings
    settings.via = "psql-in-container"
    return settings
