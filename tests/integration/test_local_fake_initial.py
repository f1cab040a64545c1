"""End to end on the local target: a real Django 5.2 project on a real PostgreSQL, no Docker.

The history rows of two apps are deleted while their tables and data stay, as after restoring a dump
without django_migrations; `runbook run fake-initial --yes` must bring the rows back, touch no data,
and leave a report a person can read.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from stack import django_backend, local_manage, run_local, shop_state, write_local_config

pytestmark = pytest.mark.integration


def _write_config(project: Path, db: dict) -> None:
    write_local_config(project, db, "SHOP_DB_PASSWORD", django_backend(db))


def test_fake_initial_restores_deleted_history_rows(shop_project: Path, fresh_db: dict, runbook_cli: list[str]) -> None:
    local_manage(shop_project, fresh_db, "migrate", "--noinput")
    local_manage(shop_project, fresh_db, "seed", "--rows", "40")
    _write_config(shop_project, fresh_db)
    rows_before, data_before = shop_state(fresh_db)

    with psycopg.connect(**fresh_db) as conn:
        deleted = conn.execute(
            "DELETE FROM django_migrations WHERE app IN ('customer', 'customer_contact') RETURNING app, name"
        ).fetchall()
    assert len(deleted) == 3
    broken = local_manage(shop_project, fresh_db, "migrate", "--noinput", check=False)
    assert broken.returncode != 0 and "already exists" in broken.stderr

    proc = run_local(runbook_cli, shop_project, fresh_db, "run", "fake-initial", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr

    rows_after, data_after = shop_state(fresh_db)
    assert rows_after == rows_before
    assert data_after == data_before
    assert len(data_after["customer_customer"]) == 40

    reports = sorted((shop_project / ".runbook" / "reports").glob("*-fake-initial.md"))
    assert len(reports) == 1
    report = reports[0].read_text()
    twin = json.loads(reports[0].with_suffix(".json").read_text())
    assert twin["status"] == "done" and twin["exit_code"] == 0
    assert [s["status"] for s in twin["steps"]] == ["ok", "ok", "skipped", "ok"]
    assert [c["status"] for c in twin["checks"]] == ["ok", "ok", "ok", "ok"]
    assert twin["steps"][0]["stdout"].splitlines() == [
        "customer.0001_initial: record: its tables, columns and keys exist",
        "customer_contact.0001_initial: record: its tables, columns and keys exist",
        "customer_contact.0002_alter_customercontact_customer: record: its tables, columns and keys exist "
        "(not initial: running it again would fail)"]
    assert "+customer 0001_initial" in report and "+customer_contact 0001_initial" in report
    assert "customer.0001_initial: record: its tables, columns and keys exist" in report
    assert fresh_db["password"] not in report
    assert fresh_db["password"] not in reports[0].with_suffix(".json").read_text()
    assert oct((shop_project / ".runbook").stat().st_mode & 0o777) == "0o700"
    assert oct(reports[0].stat().st_mode & 0o777) == "0o600"
    snapshots = list((shop_project / ".runbook" / "snapshots").iterdir())
    assert len(snapshots) == 1
    history = json.loads((snapshots[0] / "history.json").read_text())
    assert ["customer", "0001_initial"] not in history["django_migrations"]


def _prepared(project: Path, db: dict) -> tuple[set, dict]:
    local_manage(project, db, "migrate", "--noinput")
    local_manage(project, db, "seed", "--rows", "40")
    _write_config(project, db)
    return shop_state(db)


def test_fake_initial_repairs_a_restored_dump_without_any_history_row(shop_project: Path, fresh_db: dict,
                                                                      runbook_cli: list[str]) -> None:
    rows_before, data_before = _prepared(shop_project, fresh_db)
    assert ("contenttypes", "0002_remove_content_type_name") in rows_before
    with psycopg.connect(**fresh_db) as conn:
        conn.execute("DELETE FROM django_migrations")
    # The guides' command walks into the trap: contenttypes.0002 runs for real and fails part way.
    trap = local_manage(shop_project, fresh_db, "migrate", "--fake-initial", "--noinput", check=False)
    assert trap.returncode != 0 and 'column "name" of relation "django_content_type" does not exist' in trap.stderr
    with psycopg.connect(**fresh_db) as conn:
        conn.execute("DELETE FROM django_migrations")

    proc = run_local(runbook_cli, shop_project, fresh_db, "run", "fake-initial", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows_after, data_after = shop_state(fresh_db)
    assert rows_after == rows_before  # every pre-existing row is back, nothing more
    assert data_after == data_before
    [twin] = (shop_project / ".runbook" / "reports").glob("*-fake-initial.json")
    record = json.loads(twin.read_text())
    assert [c["name"] for c in record["checks"] if c["status"] == "ok"] == [
        "history is consistent", "no unapplied migration", "the schema matches the models",
        "models match the migration files"]
    plan = record["steps"][0]["stdout"]
    assert "contenttypes.0002_remove_content_type_name: record: its tables, columns and keys exist (not initial" in plan
    # A data migration leaves no trace in the schema; it counts as run because a proven migration depends on it.
    assert "auth.0011_update_proxy_permissions: record: it only runs code, and a migration that depends on it" in plan
    check = local_manage(shop_project, fresh_db, "migrate", "--check", "--noinput", check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_fake_initial_refuses_a_table_missing_a_column(shop_project: Path, fresh_db: dict,
                                                       runbook_cli: list[str]) -> None:
    _prepared(shop_project, fresh_db)
    with psycopg.connect(**fresh_db) as conn:
        conn.execute("DELETE FROM django_migrations WHERE app IN ('customer', 'customer_contact')")
        conn.execute("ALTER TABLE customer_customer DROP COLUMN created")
    with psycopg.connect(**fresh_db) as conn:
        rows = {tuple(r) for r in conn.execute("SELECT app, name FROM django_migrations")}
        customers = conn.execute("SELECT * FROM customer_customer ORDER BY id").fetchall()

    proc = run_local(runbook_cli, shop_project, fresh_db, "run", "fake-initial", "--yes")
    # The fit check, from the same proof as diagnose, refuses before the snapshot with the line that fits.
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ("fake-initial does not fit this state: partly-applied: customer.0001_initial is only partly in the "
            "schema") in proc.stdout + proc.stderr
    assert "run instead: runbook run complete-migrations --var migrations=customer.0001_initial" in proc.stdout
    with psycopg.connect(**fresh_db) as conn:
        assert {tuple(r) for r in conn.execute("SELECT app, name FROM django_migrations")} == rows
        assert conn.execute("SELECT * FROM customer_customer ORDER BY id").fetchall() == customers
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = "
                            "'customer_customer' AND column_name = 'created'").fetchone()[0] == 0
    [twin] = (shop_project / ".runbook" / "reports").glob("*-fake-initial.json")
    assert [s["status"] for s in json.loads(twin.read_text())["steps"]] == ["not-run"] * 4


def test_fake_initial_with_wrong_password_exits_4(shop_project: Path, fresh_db: dict, runbook_cli: list[str]) -> None:
    _write_config(shop_project, fresh_db)
    wrong = dict(fresh_db, password="wrong-password")
    proc = run_local(runbook_cli, shop_project, wrong, "run", "fake-initial", "--yes")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "wrong or missing database password" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "wrong-password" not in proc.stdout + proc.stderr
    reports = list((shop_project / ".runbook" / "reports").glob("*.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["exit_code"] == 4
