"""Fault tests for the destructive Alembic playbooks on a real Compose stack (the leadgen sample, two heads):
alembic-linearize and alembic-merge-heads stopped by SIGINT or SIGTERM at every step boundary, and
linearize in the middle of rewriting a version file. Afterwards: exit 130, a report, alembic_version and
every version file identical to before (sha256), and the data rows of every table there before unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from diagnosis import table_rows
from psycopg import sql
from stack import REPO, db_settings, reset_app, running_stack, service_container

pytestmark = pytest.mark.integration

LEADGEN = REPO / "tests" / "projects" / "leadgen"
PROJECT = "atomic-alembic"
DB_PORT = 25701
DB = db_settings(DB_PORT, "leadgen")
ADMIN = db_settings(DB_PORT, "postgres")
TEMPLATE = "atomic_tpl_leadgen"


def _boundaries(playbook: str) -> list[str]:
    """Every step boundary of the built-in playbook as it is now: before the first step and after each."""
    steps = yaml.safe_load((REPO / "playbooks" / f"{playbook}.yml").read_text())["steps"]
    return ["steps", *(f"after-step-{n}" for n in range(1, len(steps) + 1))]


# linearize rewrites a version file's down_revision (write-file-1); merge-heads has `alembic merge` write one.
POINTS = {
    "alembic-linearize": [*_boundaries("alembic-linearize"), "write-file-1"],
    "alembic-merge-heads": _boundaries("alembic-merge-heads"),
}
CASES = [(playbook, point) for playbook, points in POINTS.items() for point in points]


def _recreate(dbname: str, template: str | None = None) -> None:
    with psycopg.connect(**ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}" + (" TEMPLATE {}" if template else "")).format(
            sql.Identifier(dbname), *([sql.Identifier(template)] if template else [])))


def _in_backend(*argv: str) -> None:
    code, output = service_container(PROJECT, "backend").exec_run(list(argv), workdir="/srv/app")
    assert code == 0, output.decode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Path]:
    with running_stack(tmp_path_factory.mktemp("stacks") / PROJECT, DB_PORT, LEADGEN, "leadgen") as directory:
        # The guide's state: the database on one branch with rows, the other branch only in the files.
        _in_backend("alembic", "upgrade", "5a1c2e3d4f56")
        _in_backend("python", "seed.py", "--rows", "15")
        _recreate(TEMPLATE, "leadgen")
        yield directory


def _state(stack: Path) -> dict:
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted((stack / "app" / "alembic" / "versions").glob("*.py"))}
    with psycopg.connect(**DB) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version ORDER BY 1").fetchall()
    return {"files": files, "versions": versions, "data": table_rows(DB)}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize(("playbook", "point"), CASES)
def test_alembic_playbook_stopped_changes_nothing(stack, runbook_cli, tmp_path, playbook, point, sig) -> None:
    _recreate("leadgen", TEMPLATE)
    reset_app(stack, LEADGEN)
    for path in (stack / ".runbook").glob("reports/*"):
        path.unlink()
    before = _state(stack)
    marker = tmp_path / "paused"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_") and k != "RUNBOOK_TRACEBACK"}
    env.update(NO_COLOR="1", COLUMNS="200", RUNBOOK_TEST_PAUSE_AT=point, RUNBOOK_TEST_PAUSE_MARKER=str(marker))
    proc = subprocess.Popen([*runbook_cli, "run", playbook, "--yes"], cwd=stack, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not marker.exists():
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the run never reached {point} (exit {proc.returncode}):\n{out[-3000:]}\n{err}")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, out[-3000:] + err
    assert "Traceback" not in out + err
    after = _state(stack)
    assert after["files"] == before["files"] and after["versions"] == before["versions"], out[-3000:]
    # `alembic upgrade head` (step 4) creates the other branch's tables for real: they stay, listed as left.
    assert {t: r for t, r in after["data"].items() if t in before["data"]} == before["data"]
    [path] = (stack / ".runbook" / "reports").glob("*.json")
    report = json.loads(path.read_text())
    assert report["status"] == "interrupted" and report["putback"]["status"] == "put back", report["putback"]
    made = sorted(set(after["data"]) - set(before["data"]))
    assert [item.split(",")[0] for item in report["putback"]["left"]] == [f"table {t}" for t in made]
