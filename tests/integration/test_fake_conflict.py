"""fake-conflict on a real Compose stack: two different `0003` migrations, built the way the guide describes.

The sample `healthcare` app (tests/projects/healthcare) goes into a copy of the shop project. The server ran
`0003_billing_payment_...` (A); the new code has `0003_billing_alter_...` (B), which creates the same
tables, so `manage.py migrate` fails with `relation "billings" already exists`. Either A's file is gone
from the code (its row is pruned) or both files are there (A's row is kept and the leaves are merged).
B is recorded only when its tables and columns are proven; a missing column refuses and changes nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from diagnosis import assert_second_run_is_a_no_op, diagnose_then_run_its_line, table_rows
from stack import (
    REPO,
    add_users,
    clean_stack,
    db_settings,
    history_rows,
    manage,
    migrate_fails_with,
    report_of,
    run_cli,
    stack_fixture,
)

pytestmark = pytest.mark.integration

PROJECT = "rbconflict"
DB_PORT = 25512
DB = db_settings(DB_PORT)
HEALTHCARE = REPO / "tests" / "projects" / "healthcare" / "healthcare"
A = "0003_billing_payment_insuranceinformation_device_and_more"
B = "0003_billing_alter_userprofile_role_payment_and_more"
FIX = "runbook run fake-conflict --var app=healthcare --yes"


stack = stack_fixture(PROJECT, DB_PORT)


@pytest.fixture
def clean(stack: Path) -> Path:
    clean_stack(stack, DB)
    settings = stack / "app" / "shop" / "settings.py"
    settings.write_text(settings.read_text() + '\nINSTALLED_APPS += ["healthcare"]\n')
    shutil.copytree(HEALTHCARE, stack / "app" / "healthcare", ignore=shutil.ignore_patterns("__pycache__"))
    return stack


def _migrations(stack: Path) -> Path:
    return stack / "app" / "healthcare" / "migrations"


def _server_ran_a(stack: Path, *, keep_a_file: bool) -> None:
    """Deploy the old code (A only), migrate, add data; then deploy the new code (B, and A when asked)."""
    b_text = (_migrations(stack) / f"{B}.py").read_text()
    (_migrations(stack) / f"{B}.py").unlink()
    manage(PROJECT, "migrate", "--noinput")
    add_users(DB, 30)
    with psycopg.connect(**DB) as conn:
        conn.execute("INSERT INTO user_profiles (user_id, role) SELECT id, 'physician-assistant' FROM auth_user")
        conn.execute("INSERT INTO patients (name) SELECT 'patient ' || i FROM generate_series(1, 40) AS i")
        conn.execute("INSERT INTO family_history (patient_id, condition) SELECT id, 'asthma' FROM patients")
        conn.execute("INSERT INTO billings (patient_id, invoice_number, billing_date, total_amount, notes)"
                     " SELECT id, 'INV-' || id, current_date, id * 10.5, '' FROM patients")
        conn.execute("INSERT INTO payments (billing_id, payment_date, amount)"
                     " SELECT billing_id, current_date, total_amount / 2 FROM billings")
    if not keep_a_file:
        (_migrations(stack) / f"{A}.py").unlink()
    (_migrations(stack) / f"{B}.py").write_text(b_text)


def _data() -> dict[str, list]:
    return table_rows(DB)  # every table but django_migrations


def test_old_file_gone_new_one_faked_old_row_pruned(clean: Path, runbook_cli: list[str]) -> None:
    _server_ran_a(clean, keep_a_file=False)
    rows_before, data_before = history_rows(DB), _data()
    assert ("healthcare", A) in rows_before
    migrate_fails_with(PROJECT, 'relation "billings" already exists')

    proc = diagnose_then_run_its_line(runbook_cli, clean, DB, "replaced-file", FIX)
    assert f"recorded healthcare.{B}" in proc.stdout
    assert f"deleted the row of healthcare.{A}" in proc.stdout
    assert "prune the row" in proc.stdout
    assert history_rows(DB) == (rows_before - {("healthcare", A)}) | {("healthcare", B)}
    assert _data() == data_before
    manage(PROJECT, "migrate", "--check")
    report = report_of(clean, "fake-conflict")[0]
    assert report["status"] == "done"
    assert report["snapshot"]["id"]
    assert [s["status"] for s in report["steps"]] == ["ok", "skipped", "ok", "ok", "skipped", "skipped", "ok"]
    assert [c["status"] for c in report["checks"]] == ["ok"] * 4
    assert report["variables"] == {"app": "healthcare", "migration": "", "add_missing_columns": False}
    assert_second_run_is_a_no_op(runbook_cli, clean, DB, "fake-conflict")


def test_both_files_in_the_code_row_kept_and_leaves_merged(clean: Path, runbook_cli: list[str]) -> None:
    _server_ran_a(clean, keep_a_file=True)
    rows_before, data_before = history_rows(DB), _data()
    migrate_fails_with(PROJECT, "Conflicting migrations detected")

    proc = diagnose_then_run_its_line(runbook_cli, clean, DB, "conflict", FIX)
    assert f"keep the row of healthcare.{A}" in proc.stdout
    merges = [p.stem for p in _migrations(clean).glob("0004_merge_*.py")]
    assert len(merges) == 1, proc.stdout
    assert history_rows(DB) == rows_before | {("healthcare", B), ("healthcare", merges[0])}
    assert _data() == data_before
    manage(PROJECT, "migrate", "--check")
    assert report_of(clean, "fake-conflict")[0]["status"] == "done"
    assert_second_run_is_a_no_op(runbook_cli, clean, DB, "fake-conflict")


def _server_ran_a_without_notes(stack: Path) -> None:
    _server_ran_a(stack, keep_a_file=False)
    with psycopg.connect(**DB) as conn:
        # The server's 0003 made billings without `notes`: B's tables are not all there.
        conn.execute("ALTER TABLE billings DROP COLUMN notes")


def test_missing_column_refuses_and_changes_nothing(clean: Path, runbook_cli: list[str]) -> None:
    _server_ran_a_without_notes(clean)
    rows_before, data_before = history_rows(DB), _data()

    proc = run_cli(runbook_cli, clean, "run", "fake-conflict", "--var", "app=healthcare",
                   "--var", "migration=0003_billing_alter", "--yes")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "column billings.notes (field healthcare.Billing.notes) does not exist" in proc.stdout + proc.stderr
    assert history_rows(DB) == rows_before
    assert _data() == data_before
    report = report_of(clean, "fake-conflict")[0]
    assert report["status"] == "failed"
    assert "column billings.notes (field healthcare.Billing.notes) does not exist" in report["error"]
    assert [s["status"] for s in report["steps"]][:3] == ["ok", "skipped", "failed"]


def test_missing_column_is_added_by_the_line_diagnose_prints(clean: Path, runbook_cli: list[str]) -> None:
    _server_ran_a_without_notes(clean)
    rows_before, data_before = history_rows(DB), _data()

    proc = diagnose_then_run_its_line(
        runbook_cli, clean, DB, "replaced-file",
        "runbook run fake-conflict --var app=healthcare --var add_missing_columns=true --yes")
    assert "added column billings.notes as the migration defines it" in proc.stdout
    assert history_rows(DB) == (rows_before - {("healthcare", A)}) | {("healthcare", B)}
    after = _data()
    assert {t: rows for t, rows in after.items() if t != "billings"} == {
        t: rows for t, rows in data_before.items() if t != "billings"}
    # Every billing is still there, now with the column B defines (empty text, NOT NULL).
    with psycopg.connect(**DB) as conn:
        assert conn.execute("SELECT count(*), count(*) FILTER (WHERE notes = '') FROM billings").fetchone() == (40, 40)
        nullable = conn.execute("SELECT is_nullable FROM information_schema.columns"
                                " WHERE table_name = 'billings' AND column_name = 'notes'").fetchone()[0]
    assert nullable == "NO"
    manage(PROJECT, "migrate", "--check")


def test_state_without_conflict_is_left_alone(clean: Path, runbook_cli: list[str]) -> None:
    (_migrations(clean) / f"{A}.py").unlink()
    manage(PROJECT, "migrate", "--noinput")
    assert_second_run_is_a_no_op(runbook_cli, clean, DB, "fake-conflict")
