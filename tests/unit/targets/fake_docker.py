"""A Docker daemon in memory, enough for the compose target's containers and archives without Docker."""

from __future__ import annotations

import io
import tarfile
from types import SimpleNamespace
from typing import Any

import docker

from runbook.targets.compose.project import NUMBER_LABEL, PROJECT_LABEL, SERVICE_LABEL


class FakeContainer:
    """One container: its inspect data, and files served by get_archive (bytes, a directory, or a link)."""

    def __init__(self, project: str, service: str, number: int = 1, env: tuple[str, ...] = (),
                 workdir: str = "/srv/app"):
        self.id = f"{service}-{number}"
        self.name = f"{project}-{service}-{number}"
        self.labels = {PROJECT_LABEL: project, SERVICE_LABEL: service, NUMBER_LABEL: str(number)}
        self.attrs: dict[str, Any] = {"Config": {"Env": list(env), "WorkingDir": workdir}, "Mounts": []}
        self.files: dict[str, bytes | str | None] = {}  # bytes: a file; str: a symlink's target; None: a dir
        self.archive_error: Exception | None = None

    def summary(self) -> dict[str, Any]:
        return {"Id": self.id, "Names": [f"/{self.name}"], "State": "running", "Labels": self.labels}

    def get_archive(self, path: str) -> tuple[Any, dict]:
        if self.archive_error is not None:
            raise self.archive_error
        if path not in self.files:
            raise docker.errors.NotFound(f'404 Client Error: Not Found ("Could not find the file {path}")')
        content = self.files[path]
        member = tarfile.TarInfo(path.rsplit("/", 1)[-1])
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            if content is None:
                member.type = tarfile.DIRTYPE
                tar.addfile(member)
            elif isinstance(content, str):
                member.type, member.linkname = tarfile.SYMTYPE, content
                tar.addfile(member)
            else:
                member.size = len(content)
                tar.addfile(member, io.BytesIO(content))
        return iter([buffer.getvalue()]), {}


class FakeDocker:
    """The client: lists the containers of a project by label and hands out each by id."""

    def __init__(self, *containers: FakeContainer):
        self._containers = {c.id: c for c in containers}
        self.api = SimpleNamespace(containers=self._list)
        self.containers = SimpleNamespace(get=self._containers.__getitem__)

    def _list(self, all: bool, filters: dict[str, str]) -> list[dict[str, Any]]:
        key, _, value = filters["label"].partition("=")
        return [c.summary() for c in self._containers.values() if c.labels.get(key) == value]
