"""One path every broken state of the playbook tests goes through: diagnose, run exactly its line, healthy.

`runbook diagnose` must exit 3, change nothing (every table's rows and every column identical before and
after), name the finding and print the command; the printed line is split as a shell would and run as it
is; afterwards `runbook diagnose` exits 0 with no finding.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql
from stack import report_of, report_paths, run_cli, snapshot_ids


def database_state(db: dict[str, object]) -> dict[str, object]:
    """Every public table's columns (name, type, nullability) and rows, sorted, for exact comparison."""
    with psycopg.connect(**db) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY table_name, column_name").fetchall()
        tables = sorted({c[0] for c in columns})
        rows = {t: sorted(map(repr, conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(t))).fetchall()))
                for t in tables}
    return {"columns": columns, "rows": rows}


def table_rows(db: dict[str, object], skip: tuple[str, ...] = ("django_migrations", "alembic_version")) -> dict:
    """Every public table's rows except the history tables: the data a repair must keep."""
    return {t: r for t, r in database_state(db)["rows"].items() if t not in skip}


def diagnose_then_run_its_line(cli: list[str], directory: Path, db: dict[str, object], kind: str,
                               command: str, *, refused: bool = False) -> subprocess.CompletedProcess:
    """Assert diagnose names `kind` first with `command`, run exactly the printed line, assert healthy.

    With refused=True the line must refuse instead (exit 2) and leave the database exactly as it was.
    """
    before = database_state(db)
    found = run_cli(cli, directory, "diagnose", "--json")
    assert found.returncode == 3, found.stdout + found.stderr
    report = json.loads(found.stdout)
    assert report["healthy"] is False
    first = report["findings"][0]
    assert first["kind"] == kind, report["findings"]
    assert first["command"] == command, report["findings"]
    human = run_cli(cli, directory, "diagnose")
    assert human.returncode == 3, human.stdout + human.stderr
    assert kind in human.stdout
    lines = human.stdout.splitlines()
    printed = lines[lines.index("to repair, run (the most serious first):") + 1]
    assert printed == command, human.stdout
    assert database_state(db) == before, "diagnose changed the database"

    argv = shlex.split(printed)
    assert argv[0] == "runbook"
    proc = run_cli(cli, directory, *argv[1:])
    if refused:
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert database_state(db) == before, "a refused run changed the database"
        return proc
    assert proc.returncode == 0, proc.stdout + proc.stderr

    healthy = run_cli(cli, directory, "diagnose", "--json")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert json.loads(healthy.stdout)["findings"] == []
    again = run_cli(cli, directory, "diagnose")
    assert again.returncode == 0 and again.stdout.startswith("healthy: no finding"), again.stdout
    return proc


def assert_healthy(cli: list[str], directory: Path) -> None:
    """`runbook diagnose --json` exits 0 with no finding."""
    proc = run_cli(cli, directory, "diagnose", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["findings"] == [], proc.stdout + proc.stderr


def assert_second_run_is_a_no_op(cli: list[str], directory: Path, db: dict[str, object], playbook: str) -> None:
    """`runbook run playbook --yes` again: nothing to do, no change, no snapshot, every step and check skipped."""
    before, snapshots, reports = database_state(db), snapshot_ids(directory), report_paths(directory, playbook)
    for path in reports:  # the new report is then the only one
        path.unlink()
        path.with_suffix(".md").unlink(missing_ok=True)
    again = run_cli(cli, directory, "run", playbook, "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to do" in again.stdout
    assert database_state(db) == before
    assert snapshot_ids(directory) == snapshots  # no snapshot when nothing runs
    record, _ = report_of(directory, playbook)
    assert record["status"] == "done" and not record["snapshot"]
    assert {s["status"] for s in record["steps"] + record["checks"]} == {"skipped"}
