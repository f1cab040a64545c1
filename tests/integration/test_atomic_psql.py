"""The psql path on a real Compose stack (db with `network_mode: none`): the run lock is held by one
long-lived psql session in the db service for the whole run, and it ends with the run."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stack import isolated_stack, pause_env, service_container, start_cli, wait_for_pause

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


def _holders() -> list[str]:
    code, output = service_container(PROJECT, "db").exec_run(["psql", "-X", "-At", "-U", "runbook", "-d", "shop",
                                                              "-c", HOLDERS])
    assert code == 0, output.decode()
    return output.decode().splitlines()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Path]:
    with isolated_stack(tmp_path_factory.mktemp("stacks") / PROJECT, {"slow.yml": PLAYBOOK}) as directory:
        yield directory


def _paused_after_step_1(stack: Path, runbook_cli: list[str], tmp_path: Path) -> subprocess.Popen:
    """A run of slow.yml stopped between its two statements, each its own psql."""
    marker = tmp_path / "paused"
    proc = start_cli(runbook_cli, stack, "run", "slow.yml", env=pause_env("after-step-1", marker))
    wait_for_pause(marker, proc, timeout=120)
    return proc


def _until_no_holder(seconds: float, message: str) -> None:
    deadline = time.monotonic() + seconds
    while _holders():
        assert time.monotonic() < deadline, message
        time.sleep(0.2)


def test_the_lock_session_lives_as_long_as_the_run(stack: Path, runbook_cli: list[str], tmp_path: Path) -> None:
    proc = _paused_after_step_1(stack, runbook_cli, tmp_path)
    [holder] = _holders()  # between two statements, each its own psql: the lock is still held
    assert holder.startswith("runbook lock ")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "the run lock was held by one long-lived psql session" in out
    _until_no_holder(15, "the lock outlived the run")


def test_the_lock_session_ends_when_the_run_is_killed(stack: Path, runbook_cli: list[str], tmp_path: Path) -> None:
    proc = _paused_after_step_1(stack, runbook_cli, tmp_path)
    assert len(_holders()) == 1
    proc.kill()  # no cleanup at all: the kernel closes the FIFO, the exec's stream ends, psql reads EOF
    proc.communicate(timeout=60)
    _until_no_holder(20, "the lock outlived the killed run")
