"""The psql path on a real Compose stack (db with `network_mode: none`): the run lock is held by one
long-lived psql session in the db service for the whole run, and it ends with the run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml
from stack import REPO, require_docker

pytestmark = pytest.mark.integration

PROJECT = "atomic-psql"
PLAYBOOK = """
name: slow
description: Two SQL steps.
snapshot: {database: false, history: true}
steps:
  - name: one
    sql: SELECT 1
  - name: two
    sql: SELECT 2
"""
HOLDERS = ("SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
           " WHERE l.locktype = 'advisory' AND l.classid = 1920298594 AND l.objid = 1 AND l.granted")


def _db():
    return docker.from_env().containers.list(filters={"label": [f"com.docker.compose.project={PROJECT}",
                                                                "com.docker.compose.service=db"]})[0]


def _holders() -> list[str]:
    code, output = _db().exec_run(["psql", "-X", "-At", "-U", "runbook", "-d", "shop", "-c", HOLDERS])
    assert code == 0, output.decode()
    return output.decode().splitlines()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Path]:
    require_docker()
    directory = tmp_path_factory.mktemp("stacks") / PROJECT
    directory.mkdir()
    spec = yaml.safe_load((REPO / "compose.test.yml").read_text())
    spec["services"]["db"]["network_mode"] = "none"
    spec["services"]["db"]["environment"]["PGPORT"] = "5432"
    del spec["services"]["db"]["healthcheck"]
    spec["services"]["backend"]["volumes"] = []
    (directory / "docker-compose.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (directory / "slow.yml").write_text(PLAYBOOK)
    compose = ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]
    up = subprocess.run([*compose, "up", "-d"], cwd=directory, capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        pytest.fail(up.stderr)
    try:
        for _ in range(120):
            if (b"starting postgres on" in _db().logs()
                    and _db().exec_run(["pg_isready", "-q", "-U", "runbook", "-d", "shop"]).exit_code == 0):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the db service never became ready")
        yield directory
    finally:
        subprocess.run([*compose, "down", "-v"], cwd=directory, capture_output=True, timeout=300)


def test_the_lock_session_lives_as_long_as_the_run(stack: Path, runbook_cli: list[str], tmp_path: Path) -> None:
    marker = tmp_path / "paused"
    env = {**os.environ, "NO_COLOR": "1", "RUNBOOK_TEST_PAUSE_AT": "after-step-1",
           "RUNBOOK_TEST_PAUSE_MARKER": str(marker)}
    proc = subprocess.Popen([*runbook_cli, "run", "slow.yml"], cwd=stack, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()
    [holder] = _holders()  # between two statements, each its own psql: the lock is still held
    assert holder.startswith("runbook lock ")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "the run lock was held by one long-lived psql session" in out
    deadline = time.monotonic() + 15
    while _holders():
        assert time.monotonic() < deadline, "the lock outlived the run"
        time.sleep(0.2)


def test_the_lock_session_ends_when_the_run_is_killed(stack: Path, runbook_cli: list[str], tmp_path: Path) -> None:
    marker = tmp_path / "paused"
    env = {**os.environ, "NO_COLOR": "1", "RUNBOOK_TEST_PAUSE_AT": "after-step-1",
           "RUNBOOK_TEST_PAUSE_MARKER": str(marker)}
    proc = subprocess.Popen([*runbook_cli, "run", "slow.yml"], cwd=stack, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()
    assert len(_holders()) == 1
    proc.kill()  # no cleanup at all: the kernel closes the FIFO, the exec's stream ends, psql reads EOF
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 20
    while _holders():
        assert time.monotonic() < deadline, "the lock outlived the killed run"
        time.sleep(0.2)
