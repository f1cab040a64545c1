"""Fault tests for the destructive Alembic playbooks on a real Compose stack (the leadgen sample, two heads):
alembic-linearize and alembic-merge-heads stopped by SIGINT or SIGTERM at every step boundary, and
linearize in the middle of rewriting a version file. Afterwards: exit 130, a report, alembic_version and
every version file identical to before (sha256), and the data rows of every table there before unchanged.
"""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from diagnosis import table_rows
from stack import (
    REPO,
    db_settings,
    in_backend,
    pause_env,
    recreate_database,
    report_of,
    reset_app,
    running_stack,
    start_cli,
    step_boundaries,
    wait_for_pause,
)

pytestmark = pytest.mark.integration

LEADGEN = REPO / "tests" / "projects" / "leadgen"
PROJECT = "atomic-alembic"
DB_PORT = 25701
DB = db_settings(DB_PORT, "leadgen")
TEMPLATE = "atomic_tpl_leadgen"


# linearize rewrites a version file's down_revision (write-file-1); merge-heads has `alembic merge` write one.
POINTS = {
    "alembic-linearize": [*step_boundaries("alembic-linearize"), "write-file-1"],
    "alembic-merge-heads": step_boundaries("alembic-merge-heads"),
}
CASES = [(playbook, point) for playbook, points in POINTS.items() for point in points]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Path]:
    with running_stack(tmp_path_factory.mktemp("stacks") / PROJECT, DB_PORT, LEADGEN, "leadgen") as directory:
        # The guide's state: the database on one branch with rows, the other branch only in the files.
        in_backend(PROJECT, "alembic", "upgrade", "5a1c2e3d4f56")
        in_backend(PROJECT, "python", "seed.py", "--rows", "15")
        recreate_database(DB, TEMPLATE, "leadgen")
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
    recreate_database(DB, "leadgen", TEMPLATE)
    reset_app(stack, LEADGEN)
    for path in (stack / ".runbook").glob("reports/*"):
        path.unlink()
    before = _state(stack)
    marker = tmp_path / "paused"
    proc = start_cli(runbook_cli, stack, "run", playbook, "--yes", env=pause_env(point, marker))
    wait_for_pause(marker, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, out[-3000:] + err
    assert "Traceback" not in out + err
    after = _state(stack)
    assert after["files"] == before["files"] and after["versions"] == before["versions"], out[-3000:]
    # `alembic upgrade head` (step 4) creates the other branch's tables for real: they stay, listed as left.
    assert {t: r for t, r in after["data"].items() if t in before["data"]} == before["data"]
    record, _ = report_of(stack)
    assert record["status"] == "interrupted" and record["putback"]["status"] == "put back", record["putback"]
    made = sorted(set(after["data"]) - set(before["data"]))
    assert [item.split(",")[0] for item in record["putback"]["left"]] == [f"table {t}" for t in made]
