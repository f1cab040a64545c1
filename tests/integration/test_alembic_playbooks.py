"""End to end: alembic-linearize and alembic-merge-heads on the leadgen sample in a real Compose stack.

The stack is compose.test.yml rewritten into a directory of its own, `rbalembic` (db on 127.0.0.1:25482,
database `leadgen`), with a private copy of tests/projects/leadgen bind-mounted at /srv/app in the
backend. No runbook.yml: the playbooks run `alembic` in the backend's working directory, /srv/app.
The sample has the conflict of the guide: 137b19ac6ef3 (then 5a1c2e3d4f56) and file_doc_mgmt_001
(then 8d4f5a6b7c89) both revise 2dd19a2d0626.
"""

from __future__ import annotations

import hashlib
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

LEADGEN = REPO / "tests" / "projects" / "leadgen"
PROJECT = "rbalembic"
DB_PORT = 25482
DB = db_settings(DB_PORT, "leadgen")
BRANCH_TABLES = {"document_categories", "file_documents", "document_shares", "document_versions", "document_tags"}
BRANCH_COLUMNS = {
    "document_categories": ["id", "name"],
    "file_documents": ["id", "category_id", "lead_id", "uploaded_by", "filename", "content_type", "size_bytes",
                       "created_at"],
    "document_shares": ["id", "document_id", "user_id", "permission"],
    "document_versions": ["id", "document_id", "version", "storage_path", "created_at"],
    "document_tags": ["id", "document_id", "tag"],
}
BRANCH_FILES = ["add_file_document_management.py", "8d4f5a6b7c89_add_document_tags.py"]


stack = stack_fixture(PROJECT, DB_PORT, LEADGEN, "leadgen")


def _reset(directory: Path, *, branch: bool = True) -> None:
    """An empty database, a fresh copy of the sample (without the second branch when branch=False)."""
    empty_database(DB)
    shutil.rmtree(directory / ".runbook", ignore_errors=True)
    reset_app(directory, LEADGEN)
    app = directory / "app"
    if not branch:
        for name in BRANCH_FILES:
            (app / "alembic" / "versions" / name).unlink()
        # Without the branch its tables are not in the models either.
        models = app / "models.py"
        blocks = models.read_text().split("\nTable(")
        kept = [b for b in blocks[1:] if b.split('"')[1] not in BRANCH_TABLES]
        models.write_text("\nTable(".join([blocks[0], *kept]))


def _versions_dir(directory: Path) -> Path:
    return directory / "app" / "alembic" / "versions"


def _files(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(_versions_dir(directory).glob("*.py"))}


def _tables() -> set[str]:
    with psycopg.connect(**DB) as conn:
        return {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def _data() -> dict[str, list]:
    return table_rows(DB)  # every table but alembic_version


def _kept(before: dict[str, list]) -> None:
    """Every table that had rows still has exactly them (a repair may add the branch's empty tables)."""
    after = _data()
    assert {t: after.get(t) for t in before} == before
    assert all(after[t] == [] for t in set(after) - set(before))


def _branch_applied(record: dict) -> None:
    """The branch's tables have every column its revisions create, and alembic check found no drift."""
    with psycopg.connect(**DB) as conn:
        for table, columns in BRANCH_COLUMNS.items():
            found = [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE"
                                                " table_name = %s ORDER BY ordinal_position", [table])]
            assert found == columns, table
    [check] = [c for c in record["checks"] if c["name"] == "the schema matches the models (alembic check)"]
    assert check["status"] == "ok" and "the schema matches the models" in check["stdout"], check


def _start_on_trunk(directory: Path) -> dict[str, list]:
    """The database on the 137b19ac6ef3 branch, with rows; the other branch only in the files."""
    _reset(directory)
    in_backend(PROJECT, "alembic", "upgrade", "5a1c2e3d4f56")
    in_backend(PROJECT, "python", "seed.py", "--rows", "15")
    assert alembic_heads(PROJECT) == ["5a1c2e3d4f56", "8d4f5a6b7c89"]
    assert alembic_versions(DB) == ["5a1c2e3d4f56"]
    return _data()


def test_linearize_moves_the_unapplied_branch_after_the_trunk(stack: Path, runbook_cli: list[str]) -> None:
    data = _start_on_trunk(stack)
    files = _files(stack)

    proc = diagnose_then_run_its_line(runbook_cli, stack, DB, "alembic-multiple-heads",
                                      "runbook run alembic-linearize --yes")

    assert alembic_heads(PROJECT) == ["8d4f5a6b7c89"]
    assert alembic_versions(DB) == ["8d4f5a6b7c89"]
    assert _tables() >= BRANCH_TABLES
    _kept(data)
    moved = (_versions_dir(stack) / "add_file_document_management.py").read_text()
    assert "down_revision = '5a1c2e3d4f56'\n" in moved and "Revises: 5a1c2e3d4f56\n" in moved
    after = _files(stack)
    changed = {name for name in files if after[name] != files[name]}
    assert changed == {"add_file_document_management.py"} and set(after) == set(files)

    record, markdown = report_of(stack, "alembic-linearize")
    assert record["status"] == "done"
    _branch_applied(record)
    assert record["snapshot"]
    # Before the rewrite: what moves, and the stamp line for a database that applied the moved branch.
    assert proc.stdout.index("plan: re-points down_revision of file_doc_mgmt_001") < proc.stdout.index("moved ")
    for text in (proc.stdout, markdown):
        assert "any other database" in text and "`alembic stamp --purge 8d4f5a6b7c89`" in text
        assert "-down_revision = '2dd19a2d0626'" in text
        assert "+down_revision = '5a1c2e3d4f56'" in text
        assert "+Revises: 5a1c2e3d4f56" in text


def test_linearize_refuses_when_both_branches_are_applied(stack: Path, runbook_cli: list[str]) -> None:
    _reset(stack)
    in_backend(PROJECT, "alembic", "upgrade", "heads")
    files, rows = _files(stack), alembic_versions(DB)
    assert rows == ["5a1c2e3d4f56", "8d4f5a6b7c89"]

    proc = run_cli(runbook_cli, stack, "run", "alembic-linearize", "--yes")
    assert proc.returncode == 2, proc.stdout + proc.stderr  # refused: the state does not fit
    assert "more than one branch are applied" in proc.stdout + proc.stderr
    assert "alembic-merge-heads" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert _files(stack) == files
    assert alembic_versions(DB) == rows


def _merge_file(directory: Path, before: dict[str, str]) -> Path:
    [name] = set(_files(directory)) - set(before)
    return _versions_dir(directory) / name


def test_merge_heads_from_one_branch(stack: Path, runbook_cli: list[str]) -> None:
    data = _start_on_trunk(stack)
    files = _files(stack)

    proc = run_cli(runbook_cli, stack, "run", "alembic-merge-heads", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    merge = _merge_file(stack, files)
    assert merge.name.endswith("_merge_heads.py")
    text = merge.read_text()
    assert "'5a1c2e3d4f56'" in text and "'8d4f5a6b7c89'" in text
    revision = merge.name.split("_", 1)[0]
    assert alembic_heads(PROJECT) == [revision]
    assert alembic_versions(DB) == [revision]
    assert _tables() >= BRANCH_TABLES
    _kept(data)
    assert {k: v for k, v in _files(stack).items() if k != merge.name} == files
    record, _ = report_of(stack, "alembic-merge-heads")
    assert record["status"] == "done"
    _branch_applied(record)
    assert_healthy(runbook_cli, stack)


def test_merge_heads_when_the_database_has_both_heads(stack: Path, runbook_cli: list[str]) -> None:
    _reset(stack)
    in_backend(PROJECT, "alembic", "upgrade", "heads")
    in_backend(PROJECT, "python", "seed.py", "--rows", "10")
    data, files = _data(), _files(stack)
    assert alembic_versions(DB) == ["5a1c2e3d4f56", "8d4f5a6b7c89"]

    diagnose_then_run_its_line(runbook_cli, stack, DB, "alembic-multiple-heads",
                               "runbook run alembic-merge-heads --yes")

    revision = _merge_file(stack, files).name.split("_", 1)[0]
    assert alembic_heads(PROJECT) == [revision]
    assert alembic_versions(DB) == [revision]
    assert _data() == data
    _branch_applied(report_of(stack, "alembic-merge-heads")[0])


@pytest.mark.parametrize("playbook", ["alembic-linearize", "alembic-merge-heads"])
def test_one_head_is_nothing_to_do(stack: Path, runbook_cli: list[str], playbook: str) -> None:
    _reset(stack, branch=False)
    in_backend(PROJECT, "alembic", "upgrade", "head")
    in_backend(PROJECT, "python", "seed.py", "--rows", "5")
    files, rows, state = _files(stack), alembic_versions(DB), database_state(DB)
    assert_healthy(runbook_cli, stack)

    proc = run_cli(runbook_cli, stack, "run", playbook, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing to do: runbook diagnose finds no alembic-multiple-heads" in proc.stdout

    assert _files(stack) == files
    assert alembic_versions(DB) == rows == ["5a1c2e3d4f56"]
    assert database_state(DB) == state
    assert not (stack / ".runbook" / "snapshots").exists() or not any((stack / ".runbook" / "snapshots").iterdir())
    record, _ = report_of(stack, playbook)
    assert record["status"] == "done" and not record["snapshot"]
    assert {s["status"] for s in record["steps"] + record["checks"]} == {"skipped"}


def test_an_ancestor_row_in_alembic_version_is_pruned(stack: Path, runbook_cli: list[str]) -> None:
    _reset(stack, branch=False)
    in_backend(PROJECT, "alembic", "upgrade", "head")
    in_backend(PROJECT, "python", "seed.py", "--rows", "5")
    data = _data()
    with psycopg.connect(**DB) as conn:
        conn.execute("INSERT INTO alembic_version (version_num) VALUES ('2dd19a2d0626')")

    proc = diagnose_then_run_its_line(runbook_cli, stack, DB, "alembic-redundant-rows",
                                      "runbook run alembic-prune-versions --yes")
    assert "deleted row 2dd19a2d0626: an ancestor of 5a1c2e3d4f56" in proc.stdout
    assert alembic_versions(DB) == ["5a1c2e3d4f56"]
    assert _data() == data


def _at_unknown_revision(directory: Path) -> dict[str, list]:
    """One head applied with rows, then alembic_version names a revision no file has (a rebased file)."""
    _reset(directory, branch=False)
    in_backend(PROJECT, "alembic", "upgrade", "head")
    in_backend(PROJECT, "python", "seed.py", "--rows", "5")
    with psycopg.connect(**DB) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'c0ffee000001'")
    return _data()


def test_unknown_revision_is_stamped_back_to_head_when_the_schema_proves_it(
        stack: Path, runbook_cli: list[str]) -> None:
    data = _at_unknown_revision(stack)
    proc = diagnose_then_run_its_line(runbook_cli, stack, DB, "alembic-unknown-revision",
                                      "runbook run alembic-stamp-head --yes")
    assert "the live schema matches the models exactly" in proc.stdout
    assert alembic_versions(DB) == ["5a1c2e3d4f56"]
    assert _data() == data


def test_unknown_revision_is_refused_when_the_schema_differs(stack: Path, runbook_cli: list[str]) -> None:
    _at_unknown_revision(stack)
    with psycopg.connect(**DB) as conn:
        conn.execute("ALTER TABLE documents DROP COLUMN body")
    before = database_state(DB)
    proc = run_cli(runbook_cli, stack, "run", "alembic-stamp-head", "--yes")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "the schema differs from the models at head" in proc.stdout
    assert "documents" in proc.stdout
    assert database_state(DB) == before
    assert alembic_versions(DB) == ["c0ffee000001"]
