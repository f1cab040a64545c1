"""End to end: Alembic branches that are meant (issue 15) on the ledger sample in a real Compose stack.

The stack `alembrbranches` (db on 127.0.0.1:25850, database `ledger`) mounts a private copy of
tests/projects/ledger at /srv/app: a main line, `reporting` (a named branch forked from it), and `audit`
(a base of its own in a second version location, `audit_versions/`, whose second revision
depends_on the main line). After `alembic upgrade heads` the project is healthy with three heads.
A conflict is made on the audit branch only: a9c8d7e6f5a4 revises a1b2c3d4e5f6, as a1b2c3d4e5f7 does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import psycopg
import pytest
from diagnosis import assert_healthy, database_state, diagnose_then_run_its_line, table_rows
from stack import (
    REPO,
    alembic_heads,
    alembic_versions,
    db_settings,
    empty_database,
    in_backend,
    report_of,
    reset_app,
    run_cli,
    stack_fixture,
)

pytestmark = pytest.mark.integration

LEDGER = REPO / "tests" / "projects" / "ledger"
PROJECT = "alembrbranches"
DB_PORT = 25850
DB = db_settings(DB_PORT, "ledger")
HEADS = ["1000aaaa0002", "2000bbbb0001", "a1b2c3d4e5f7"]
CONFLICT = "audit_versions/a9c8d7e6f5a4_create_audit_notes.py"
CONFLICT_TEXT = '''"""create audit notes (a second child of a1b2c3d4e5f6: the conflict)

Revision ID: a9c8d7e6f5a4
Revises: a1b2c3d4e5f6
Create Date: 2026-12-01 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'a9c8d7e6f5a4'
down_revision = 'a1b2c3d4e5f6'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("audit_notes", sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("note", sa.String(200), nullable=False))


def downgrade():
    op.drop_table("audit_notes")
'''


stack = stack_fixture(PROJECT, DB_PORT, LEDGER, "ledger")


def _reset(directory: Path) -> None:
    empty_database(DB)
    shutil.rmtree(directory / ".runbook", ignore_errors=True)
    reset_app(directory, LEDGER)


def _files(directory: Path) -> dict[str, str]:
    app = directory / "app"
    return {str(p.relative_to(app)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted([*app.glob("migrations/versions/*.py"), *app.glob("audit_versions/*.py")])}


def _with_conflict(directory: Path, *, applied: bool) -> dict[str, str]:
    """Healthy at all three heads, then the conflicting audit revision (applied too when `applied`)."""
    _reset(directory)
    in_backend(PROJECT, "alembic", "upgrade", "heads")
    with psycopg.connect(**DB) as conn:
        conn.execute("INSERT INTO accounts (name) VALUES ('cash'), ('bank')")
        conn.execute("INSERT INTO audit_log (event, account_id) VALUES ('opened', 1)")
    (directory / "app" / CONFLICT).write_text(CONFLICT_TEXT)
    if applied:
        in_backend(PROJECT, "alembic", "upgrade", "heads")
    return _files(directory)


def test_intentional_heads_are_healthy_and_never_merged(stack: Path, runbook_cli: list[str]) -> None:
    _reset(stack)
    in_backend(PROJECT, "alembic", "upgrade", "heads")
    assert alembic_heads(PROJECT) == HEADS and alembic_versions(DB) == HEADS
    files, state = _files(stack), database_state(DB)

    assert_healthy(runbook_cli, stack)
    human = run_cli(runbook_cli, stack, "diagnose")
    assert human.returncode == 0, human.stdout + human.stderr
    for playbook in ("alembic-merge-heads", "alembic-linearize"):
        proc = run_cli(runbook_cli, stack, "run", playbook, "--yes")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "nothing to do" in proc.stdout
    assert _files(stack) == files and alembic_versions(DB) == HEADS and database_state(DB) == state
    shown = run_cli(runbook_cli, stack, "show", "alembic-merge-heads")
    assert "What it never merges" in shown.stdout and "own base" in shown.stdout


def test_a_conflict_on_the_audit_branch_is_linearized_without_touching_the_others(
        stack: Path, runbook_cli: list[str]) -> None:
    files = _with_conflict(stack, applied=False)
    data = table_rows(DB)
    found = run_cli(runbook_cli, stack, "diagnose", "--json")
    [finding] = json.loads(found.stdout)["findings"]
    assert finding["title"] == ("2 heads conflict: a1b2c3d4e5f7, a9c8d7e6f5a4 revise a1b2c3d4e5f6 "
                                "and carry no branch label"), finding
    assert any(e.startswith("left alone: 2000bbbb0001: intentional: labelled branch reporting")
               for e in finding["evidence"])

    proc = diagnose_then_run_its_line(runbook_cli, stack, DB, "alembic-multiple-heads",
                                      "runbook run alembic-linearize --yes")
    assert "plan: re-points down_revision of a9c8d7e6f5a4" in proc.stdout
    assert "`alembic stamp --purge a9c8d7e6f5a4`" in proc.stdout
    after = _files(stack)
    assert {k for k in after if after[k] != files.get(k)} == {CONFLICT}
    assert "down_revision = 'a1b2c3d4e5f7'\n" in (stack / "app" / CONFLICT).read_text()
    assert alembic_heads(PROJECT) == ["1000aaaa0002", "2000bbbb0001", "a9c8d7e6f5a4"]
    assert alembic_versions(DB) == ["1000aaaa0002", "2000bbbb0001", "a9c8d7e6f5a4"]
    assert {t: rows for t, rows in table_rows(DB).items() if t in data} == data
    record, markdown = report_of(stack, "alembic-linearize")
    assert record["status"] == "done"
    assert "any other database" in markdown and "alembic stamp --purge a9c8d7e6f5a4" in markdown
    assert_healthy(runbook_cli, stack)


def test_a_conflict_applied_on_both_sides_is_merged_alone(stack: Path, runbook_cli: list[str]) -> None:
    files = _with_conflict(stack, applied=True)
    assert alembic_versions(DB) == ["1000aaaa0002", "2000bbbb0001", "a1b2c3d4e5f7", "a9c8d7e6f5a4"]
    data = table_rows(DB)

    diagnose_then_run_its_line(runbook_cli, stack, DB, "alembic-multiple-heads",
                               "runbook run alembic-merge-heads --yes")
    after = _files(stack)
    [merge] = set(after) - set(files)
    assert {k: v for k, v in after.items() if k != merge} == files
    text = (stack / "app" / merge).read_text()
    assert "'a1b2c3d4e5f7'" in text and "'a9c8d7e6f5a4'" in text
    assert "1000aaaa0002" not in text and "2000bbbb0001" not in text
    revision = Path(merge).name.split("_", 1)[0]
    assert alembic_heads(PROJECT) == sorted(["1000aaaa0002", "2000bbbb0001", revision])
    assert alembic_versions(DB) == sorted(["1000aaaa0002", "2000bbbb0001", revision])
    assert table_rows(DB) == data
    assert_healthy(runbook_cli, stack)


def test_branches_names_intentional_heads_to_join(stack: Path, runbook_cli: list[str]) -> None:
    """With a conflict on audit, `--var branches=audit,reporting` also joins the reporting branch; main stays."""
    files = _with_conflict(stack, applied=False)
    proc = run_cli(runbook_cli, stack, "run", "alembic-merge-heads", "--var", "branches=audit,reporting", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _, markdown = report_of(stack, "alembic-merge-heads")
    assert "to join: a1b2c3d4e5f7, a9c8d7e6f5a4, 2000bbbb0001" in markdown  # in the order named
    after = _files(stack)
    [merge] = set(after) - set(files)
    text = (stack / "app" / merge).read_text()
    assert all(f"'{h}'" in text for h in ("2000bbbb0001", "a1b2c3d4e5f7", "a9c8d7e6f5a4"))
    assert "1000aaaa0002" not in text
    revision = Path(merge).name.split("_", 1)[0]
    assert alembic_heads(PROJECT) == sorted(["1000aaaa0002", revision])
    assert alembic_versions(DB) == sorted(["1000aaaa0002", revision])
    assert_healthy(runbook_cli, stack)


def test_branches_joins_intentional_heads_on_a_healthy_stack(stack: Path, runbook_cli: list[str]) -> None:
    """No conflict at all: `--var branches=audit,reporting` is an explicit request, not "nothing to do"."""
    _reset(stack)
    in_backend(PROJECT, "alembic", "upgrade", "heads")
    files = _files(stack)
    proc = run_cli(runbook_cli, stack, "run", "alembic-merge-heads", "--var", "branches=audit,reporting", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing to do" not in proc.stdout
    after = _files(stack)
    [merge] = set(after) - set(files)
    text = (stack / "app" / merge).read_text()
    assert "'2000bbbb0001'" in text and "'a1b2c3d4e5f7'" in text and "1000aaaa0002" not in text
    revision = Path(merge).name.split("_", 1)[0]
    assert alembic_heads(PROJECT) == sorted(["1000aaaa0002", revision])
    assert alembic_versions(DB) == sorted(["1000aaaa0002", revision])
    assert_healthy(runbook_cli, stack)
