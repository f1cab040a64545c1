"""Reading files out of a container, on a Docker daemon in memory: every failure is one line with the path."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest
from fake_docker import FakeContainer, FakeDocker

from runbook.config import Config
from runbook.targets.base import FileAccessError, MissingFile
from runbook.targets.compose import ComposeTarget


@pytest.fixture
def backend() -> FakeContainer:
    container = FakeContainer("shop", "backend", workdir="/srv/app")
    container.files = {
        "/srv/app/alembic.ini": b"[alembic]\n",
        "/srv/app/current.ini": "alembic.ini",  # a relative symlink
        "/srv/app/loop": "/srv/app/loop",
        "/srv/app/migrations": None,
    }
    return container


@pytest.fixture
def target(tmp_path: Path, backend: FakeContainer) -> ComposeTarget:
    return ComposeTarget(Config(project_dir=tmp_path), project_name="shop",
                         client_factory=lambda: FakeDocker(backend, FakeContainer("shop", "db")))


def test_a_file_is_read_relative_to_the_working_directory_through_symlinks(target: ComposeTarget) -> None:
    assert target.read_file("backend", "alembic.ini") == b"[alembic]\n"
    assert target.read_file("backend", "/srv/app/current.ini") == b"[alembic]\n"


def test_a_missing_file_is_missing_file(target: ComposeTarget) -> None:
    with pytest.raises(MissingFile) as caught:
        target.read_file("backend", "deploy/alembic.ini")
    assert str(caught.value) == ("cannot read /srv/app/deploy/alembic.ini in backend: No such file or directory "
                                 "(check the path)")
    assert (caught.value.path, caught.value.service, caught.value.exit_code) == (
        "/srv/app/deploy/alembic.ini", "backend", 1)


def test_a_directory_or_a_link_loop_is_a_file_access_error(target: ComposeTarget) -> None:
    with pytest.raises(FileAccessError) as directory:
        target.read_file("backend", "migrations")
    assert type(directory.value) is FileAccessError
    assert str(directory.value) == ("cannot read /srv/app/migrations in backend: Is a directory "
                                    "(name a file, not a directory)")
    with pytest.raises(FileAccessError, match="cannot read /srv/app/loop in backend: Too many levels of symbolic"):
        target.read_file("backend", "loop")


def test_an_error_of_the_daemon_names_the_file(target: ComposeTarget, backend: FakeContainer) -> None:
    backend.archive_error = docker.errors.APIError("500 Server Error", explanation="disk I/O error")
    with pytest.raises(FileAccessError) as caught:
        target.read_file("backend", "alembic.ini")
    assert str(caught.value) == "cannot read /srv/app/alembic.ini in backend: disk I/O error"
