"""One run at a time, and a clean stop on Ctrl-C: real processes, a real PostgreSQL, the local target."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from stack import run_local, start_cli, write_local_config

pytestmark = pytest.mark.integration

SLOW_PLAYBOOK = """
name: slow
description: A long step to hold the lock.
snapshot: {database: false, history: true}
steps:
  - name: long step
    shell: "echo started; sleep 60 & echo $! > sleeper.pid; wait"
"""


def _project(root: Path, db: dict, name: str) -> Path:
    project = root / name
    project.mkdir()
    (project / "slow.yml").write_text(SLOW_PLAYBOOK)
    write_local_config(project, db, "LOCK_TEST_DB_PASSWORD")
    return project


def _start(cli: list[str], project: Path, db: dict) -> subprocess.Popen:
    return start_cli(cli, project, "run", "slow.yml", "--yes", env={"LOCK_TEST_DB_PASSWORD": str(db["password"])})


def _run(cli: list[str], project: Path, db: dict) -> subprocess.CompletedProcess:
    return run_local(cli, project, db, "run", "slow.yml", "--yes", password_env="LOCK_TEST_DB_PASSWORD", timeout=60)


def _wait_for_step(project: Path, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    pid_file = project / "sleeper.pid"
    while time.monotonic() < deadline:
        if pid_file.exists() and pid_file.read_text().strip():
            return int(pid_file.read_text())
        time.sleep(0.1)
    raise AssertionError("the long step never started")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_second_run_exits_5_and_ctrl_c_leaves_a_report_and_no_lock(tmp_path, fresh_db, runbook_cli):
    first_dir = _project(tmp_path, fresh_db, "first")
    first = _start(runbook_cli, first_dir, fresh_db)
    try:
        sleeper = _wait_for_step(first_dir)

        # Same project directory: the host lock names the holder.
        same = _run(runbook_cli, first_dir, fresh_db)
        assert same.returncode == 5, same.stdout + same.stderr
        assert f"pid {first.pid}" in same.stderr and "Traceback" not in same.stderr

        # Another directory on the same database (another checkout, another host): the advisory lock.
        other_dir = _project(tmp_path, fresh_db, "other")
        other = _run(runbook_cli, other_dir, fresh_db)
        assert other.returncode == 5, other.stdout + other.stderr
        assert "database lock" in other.stderr and f"pid {first.pid}" in other.stderr
        assert not (other_dir / "sleeper.pid").exists()

        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, out + err
    assert "Traceback" not in err
    assert not _alive(sleeper), "the step's child process outlived the interrupted run"

    # The refused second run is on record too, beside the interrupted one.
    records = {}
    for path in (first_dir / ".runbook" / "reports").glob("*-slow*.json"):
        records[json.loads(path.read_text())["status"]] = path
    assert sorted(records) == ["interrupted", "refused"]
    report = records["interrupted"]
    record = json.loads(report.read_text())
    assert record["exit_code"] == 130
    assert record["steps"][0]["status"] == "interrupted"
    assert "interrupted" in report.with_suffix(".md").read_text().lower()

    # Nothing left behind: no session holds the advisory lock, and a new run takes both locks at once.
    with psycopg.connect(**fresh_db) as conn:
        # This database only: other tests on the same cluster may hold advisory locks of their own.
        held = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                            "(SELECT oid FROM pg_database WHERE datname = current_database())").fetchone()[0]
    assert held == 0
    (first_dir / "sleeper.pid").unlink()
    (first_dir / "slow.yml").write_text(SLOW_PLAYBOOK.replace(
        'shell: "echo started; sleep 60 & echo $! > sleeper.pid; wait"', "run: [\"true\"]"))
    again = _run(runbook_cli, first_dir, fresh_db)
    assert again.returncode == 0, again.stdout + again.stderr
    shutil.rmtree(tmp_path / "other", ignore_errors=True)


QUICK_PLAYBOOK = SLOW_PLAYBOOK.replace('shell: "echo started; sleep 60 & echo $! > sleeper.pid; wait"', 'run: ["true"]')


def test_a_run_on_another_database_of_the_server_is_neither_held_up_nor_named(tmp_path, fresh_db, runbook_cli):
    # Advisory locks belong to one database: two projects whose databases share a server run side by side,
    # and a refusal names the holder of its own database's lock.
    neighbour = dict(fresh_db, dbname=f"{fresh_db['dbname']}_neighbour")
    with psycopg.connect(**dict(fresh_db, dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(neighbour["dbname"])))
    holder_dir = _project(tmp_path, neighbour, "holder")
    holder = _start(runbook_cli, holder_dir, neighbour)
    try:
        _wait_for_step(holder_dir)
        first_dir = _project(tmp_path, fresh_db, "first")
        first = _start(runbook_cli, first_dir, fresh_db)
        try:
            _wait_for_step(first_dir)
            other_dir = _project(tmp_path, fresh_db, "other")
            refused = _run(runbook_cli, other_dir, fresh_db)
            assert refused.returncode == 5, refused.stdout + refused.stderr
            assert f"database lock on {fresh_db['dbname']}: runbook pid {first.pid} " in refused.stderr, \
                refused.stderr
        finally:
            first.send_signal(signal.SIGINT)
            first.communicate(timeout=30)

        quick_dir = _project(tmp_path, fresh_db, "quick")
        (quick_dir / "slow.yml").write_text(QUICK_PLAYBOOK)
        quick = _run(runbook_cli, quick_dir, fresh_db)
        assert quick.returncode == 0, quick.stdout + quick.stderr
        assert holder.poll() is None  # still holding its own database's lock all along
    finally:
        holder.send_signal(signal.SIGINT)
        holder.communicate(timeout=30)
        with psycopg.connect(**dict(fresh_db, dbname="postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(neighbour["dbname"])))
