"""The compose target's side of the interface, on a Docker daemon in memory: where it runs, its services'
environment, and the warnings it raises."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_docker import FakeContainer, FakeDocker

from runbook.config import Config
from runbook.targets.base import Target, Warnings
from runbook.targets.compose import ComposeTarget


def _target(tmp_path: Path, *containers: FakeContainer) -> ComposeTarget:
    return ComposeTarget(Config(project_dir=tmp_path), project_name="shop",
                         client_factory=lambda: FakeDocker(*containers))


def test_the_services_run_in_containers_with_their_own_environment(tmp_path: Path) -> None:
    backend = FakeContainer("shop", "backend", env=("DATABASE_URL=postgres://app@db/shop", "EMPTY=", "A=b=c"))
    target = _target(tmp_path, backend, FakeContainer("shop", "db", env=("POSTGRES_DB=shop",)))
    assert isinstance(target, Target)
    assert target.on_this_host is False
    assert target.workdir is None  # relative paths resolve in the container, not against a directory here
    assert target.environment("backend") == {"DATABASE_URL": "postgres://app@db/shop", "EMPTY": "", "A": "b=c"}
    assert target.environment("db") == {"POSTGRES_DB": "shop"}


def test_stdin_streams_unless_the_connection_takes_the_sdk_path(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("RUNBOOK_STREAM_VIA_SDK", raising=False)
    assert _target(tmp_path).streams_stdin() is True
    sdk = ComposeTarget(Config(project_dir=tmp_path), project_name="shop", client_factory=FakeDocker,
                        stream_via_sdk=True)
    assert sdk.streams_stdin() is False
    monkeypatch.setenv("DOCKER_HOST", "ssh://deploy@build.example")
    assert _target(tmp_path).streams_stdin() is False  # the SDK cannot write to an exec's stdin there


def test_a_warning_reaches_the_listener_once_and_stays_for_the_report(tmp_path: Path) -> None:
    target = _target(tmp_path, FakeContainer("shop", "backend", 1), FakeContainer("shop", "backend", 2),
                     FakeContainer("shop", "db"))
    heard: list[str] = []
    target.warnings.listen(heard.append)
    target.check_ready(["db", "backend"])
    target.describe()
    assert isinstance(target.warnings, Warnings)
    assert len(heard) == 1 and "runs 2 containers (shop-backend-1, shop-backend-2)" in heard[0]
    assert target.warnings == heard
