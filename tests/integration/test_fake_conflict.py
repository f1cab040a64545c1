"""fake-conflict on a real Compose stack: two different `0003` migrations, built the way the guide describes.

The sample `healthcare` app (tests/projects/healthcare) goes into a copy of the shop project. The server ran
`0003_billing_payment_...` (A); the new code has `0003_billing_alter_...` (B), which creates the same
tables, so `manage.py migrate` fails with `relation "billings" already exists`. Either A's file is gone
from the code (its row is pruned) or both files are there (A's row is kept and the leaves are merged).
B is recorded only when its tables and columns are proven; a missing column refuses and changes nothing.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from diagnosis import database_state, diagnose_then_run_its_line, table_rows
from stack import (
    REPO,
    clean_stack,
    db_settings,
    manage,
    run_cli,
    running_stack,
    service_container,
)

pytestmark = pytest.mark.integration

PROJECT = "rbconflict"
DB_PORT = 25512
DB = db_settings(DB_PORT)
HEALTHCARE = REPO / "tests" / "projects" / "healthcare" / "healthcare"
A = "0003_billing_payment_insuranceinformation_device_and_more"
B = "0003_billing_alter_userprofile_role_payment_and_more"
FIX = "runbook run fake-conflict --var app=healthcare --yes"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Path]:
    with running_stack(tmp_path_factory.mktemp("stacks") / PROJECT, DB_PORT) as directory:
        yield directory


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
    with psycopg.connect(**DB) as conn:
        conn.execute("INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,"
                     " is_staff, is_active, date_joined) SELECT '!', false, 'user' || i, '', '', '', false, true,"
                     " now() FROM generate_series(1, 30) AS i")
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


def _rows() -> set[tuple[str, str]]:
    with psycopg.connect(**DB) as conn:
        return {tuple(r) for r in conn.execute("SELECT app, name FROM django_migrations")}


def _data() -> dict[str, list]:
    return table_rows(DB)  # every table but django_migrations


def _migrate_fails_with(text: bytes) -> None:
    code, output = service_container(PROJECT, "backend").exec_run(["python", "manage.py", "migrate", "--noinput"],
                                                                  workdir="/srv/app")
    assert code != 0 and text in output, output.decode()[-800:]


def _report(stack: Path) -> dict:
    [path] = (stack / ".runbook" / "reports").glob("*-fake-conflict.json")
    return json.loads(path.read_text())


def _snapshots(stack: Path) -> list[Path]:
    return sorted((stack / ".runbook" / "snapshots").glob("*")) if (stack / ".runbook" / "snapshots").is_dir() else []


def _second_run_is_a_clean_no_op(stack: Path, cli: list[str]) -> None:
    before, snapshots = database_state(DB), _snapshots(stack)
    for path in (stack / ".runbook").glob("reports/*"):
        path.unlink()
    again = run_cli(cli, stack, "run", "fake-conflict", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing to do" in again.stdout
    assert database_state(DB) == before and _snapshots(stack) == snapshots
    report = _report(stack)
    assert report["status"] == "done" and not report["snapshot"]
    assert {s["status"] for s in report["steps"] + report["checks"]} == {"skipped"}


def test_old_file_gone_new_one_faked_old_row_pruned(clean: Path, runbook_cli: list[str]) -> None:
    _server_ran_a(clean, keep_a_file=False)
    rows_before, data_before = _rows(), _data()
    assert ("healthcare", A) in rows_before
    _migrate_fails_with(b'relation "billings" already exists')

    proc = diagnose_then_run_its_line(runbook_cli, clean, DB, "replaced-file", FIX)
    assert f"recorded healthcare.{B}" in proc.stdout
    assert f"deleted the row of healthcare.{A}" in proc.stdout
    assert "prune the row" in proc.stdout
    assert _rows() == (rows_before - {("healthcare", A)}) | {("healthcare", B)}
    assert _data() == data_before
    manage(PROJECT, "migrate", "--check")
    report = _report(clean)
    assert report["status"] == "done"
    assert report["snapshot"]["id"]
    assert [s["status"] for s in report["steps"]] == ["ok", "skipped", "ok", "ok", "skipped", "skipped", "ok"]
    assert [c["status"] for c in report["checks"]] == ["ok"] * 4
    assert report["variables"] == {"app": "healthcare", "migration": "", "add_missing_columns": False}
    _second_run_is_a_clean_no_op(clean, runbook_cli)


def test_both_files_in_the_code_row_kept_and_leaves_merged(clean: Path, runbook_cli: list[str]) -> None:
    _server_ran_a(clean, keep_a_file=True)
    rows_before, data_before = _rows(), _data()
    _migrate_fails_with(b"Conflicting migrations detected")

    proc = diagnose_then_run_its_line(runbook_cli, clean, DB, "conflict", FIX)
    assert f"keep the row of healthcare.{A}" in proc.stdout
    merges = [p.stem for p in _migrations(clean).glob("0004_merge_*.py")]
    assert len(merges) == 1, proc.stdout
    assert _rows() == rows_before | {("healthcare", B), ("healthcare", merges[0])}
    assert _data() == data_before
    manage(PROJECT, "migrate", "--check")
    assert _report(clean)["status"] == "done"
    _second_run_is_a_clean_no_op(clean, runbook_cli)


def _server_ran_a_without_notes(stack: Path) -> None:
    _server_ran_a(stack, keep_a_file=False)
    with psycopg.connect(**DB) as conn:
        # The server's 0003 made billings without `notes`: B's tables are not all there.
        conn.execute("ALTER TABLE billings DROP COLUMN notes")


def test_missing_column_refuses_and_changes_nothing(clean: Path, runbook_cli: list[str]) -> None:
    _server_ran_a_without_notes(clean)
    rows_before, data_before = _rows(), _data()

    proc = run_cli(runbook_cli, clean, "run", "fake-conflict", "--var", "app=healthcare",
                   "--var", "migration=0003_billing_alter", "--yes")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "column billings.notes (field healthcare.Billing.notes) does not exist" in proc.stdout + proc.stderr
    assert _rows() == rows_before
    assert _data() == data_before
    report = _report(clean)
    assert report["status"] == "failed"
    assert "column billings.notes (field healthcare.Billing.notes) does not exist" in report["error"]
    assert [s["status"] for s in report["steps"]][:3] == ["ok", "skipped", "failed"]


def test_missing_column_is_added_by_the_line_diagnose_prints(clean: Path, runbook_cli: list[str]) -> None:
    _server_ran_a_without_notes(clean)
    rows_before, data_before = _rows(), _data()

    proc = diagnose_then_run_its_line(
        runbook_cli, clean, DB, "replaced-file",
        "runbook run fake-conflict --var app=healthcare --var add_missing_columns=true --yes")
    assert "added column billings.notes as the migration defines it" in proc.stdout
    assert _rows() == (rows_before - {("healthcare", A)}) | {("healthcare", B)}
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
    _second_run_is_a_clean_no_op(clean, runbook_cli)
