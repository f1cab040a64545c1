"""End to end on the compose target: the sample Django project in a real Compose stack, no runbook.yml.

The stack is compose.test.yml rewritten into a directory of its own (its own loopback port, a private
copy of the project), started with plain `docker-compose up -d` so runbook must find the project the
way Compose names it: after the directory.
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import time
from pathlib import Path

import psycopg
import pytest
from stack import (
    SHOP_DATA_TABLES,
    db_settings,
    make_template,
    manage,
    reset_from_template,
    run_cli,
    service_container,
    shop_state,
    sleepers,
    stack_fixture,
    start_cli,
)

pytestmark = pytest.mark.integration

PROJECT = "rbshop"
DB_PORT = 25452
DB = db_settings(DB_PORT)

stack = stack_fixture(PROJECT, DB_PORT)


@pytest.fixture(scope="module")
def shop_stack(stack: Path) -> Path:
    """The stack, its database migrated and seeded once and kept as a template for _reset_database."""
    manage(PROJECT, "migrate", "--noinput")
    manage(PROJECT, "seed", "--rows", "60")
    make_template(DB)
    return stack


def _reset_database(directory: Path) -> None:
    """The migrated database with 60 rows a table (a copy of the template), and no artifacts."""
    reset_from_template(DB)
    shutil.rmtree(directory / ".runbook", ignore_errors=True)


def test_fake_initial_in_compose_with_no_config(shop_stack: Path, runbook_cli: list[str]) -> None:
    _reset_database(shop_stack)
    rows_before, data_before = shop_state(DB)
    with psycopg.connect(**DB) as conn:
        conn.execute("DELETE FROM django_migrations WHERE app IN ('customer', 'customer_contact')")
    assert not (shop_stack / "runbook.yml").exists()

    proc = run_cli(runbook_cli, shop_stack, "run", "fake-initial", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "customer.0001_initial: record: its tables, columns and keys exist" in proc.stdout

    rows_after, data_after = shop_state(DB)
    assert rows_after == rows_before
    assert data_after == data_before
    [report] = (shop_stack / ".runbook" / "reports").glob("*-fake-initial.json")
    record = json.loads(report.read_text())
    assert record["status"] == "done"
    assert record["target"]["target"] == "compose"
    assert record["target"]["project"] == "rbshop"
    assert record["target"]["database_path"] == "host network"
    assert record["target"]["database"] == f"runbook@127.0.0.1:{DB_PORT}/shop"
    assert "runbook-secret" not in report.read_text()
    assert "runbook-secret" not in report.with_suffix(".md").read_text()


def test_fake_initial_repairs_a_restored_dump_without_any_history_row(shop_stack: Path,
                                                                      runbook_cli: list[str]) -> None:
    _reset_database(shop_stack)
    rows_before, data_before = shop_state(DB)
    with psycopg.connect(**DB) as conn:
        conn.execute("DELETE FROM django_migrations")

    proc = run_cli(runbook_cli, shop_stack, "run", "fake-initial", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert shop_state(DB) == (rows_before, data_before)  # every row back, built-in apps' too; no data touched
    [report] = (shop_stack / ".runbook" / "reports").glob("*-fake-initial.json")
    record = json.loads(report.read_text())
    assert {c["name"]: c["status"] for c in record["checks"]} == {
        "history is consistent": "ok", "no unapplied migration": "ok", "the schema matches the models": "ok",
        "models match the migration files": "ok"}
    assert ("contenttypes.0002_remove_content_type_name: record: its tables, columns and keys exist"
            in record["steps"][0]["stdout"])
    assert "[ ]" not in manage(PROJECT, "showmigrations", "--list")


def test_fake_initial_refuses_a_table_missing_a_column_and_changes_nothing(shop_stack: Path,
                                                                           runbook_cli: list[str]) -> None:
    _reset_database(shop_stack)
    with psycopg.connect(**DB) as conn:
        conn.execute("DELETE FROM django_migrations WHERE app IN ('catalog', 'customer', 'customer_contact')")
        conn.execute("ALTER TABLE customer_customer DROP COLUMN created")
    state = _state_without("customer_customer")

    proc = run_cli(runbook_cli, shop_stack, "run", "fake-initial", "--yes")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("runbook: error:")]
    assert len(error) == 1, proc.stderr
    assert ("customer.0001_initial: partly in the schema, neither recorded nor applied: column "
            "customer_customer.created (field customer.Customer.created) does not exist") in proc.stdout
    assert _state_without("customer_customer") == state  # catalog's proven rows were not recorded either


def test_fake_initial_applies_a_migration_whose_column_is_absent(shop_stack: Path, runbook_cli: list[str]) -> None:
    _reset_database(shop_stack)
    rows_before, _ = shop_state(DB)
    with psycopg.connect(**DB) as conn:
        conn.execute("DELETE FROM django_migrations WHERE app = 'catalog'")
        conn.execute("ALTER TABLE catalog_product DROP COLUMN description")
    _, data = _state_without("catalog_product")

    proc = run_cli(runbook_cli, shop_stack, "run", "fake-initial", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "catalog.0001_initial: record: its tables, columns and keys exist" in proc.stdout
    assert "catalog.0002_product_description: apply for real: nothing it creates exists yet" in proc.stdout
    rows_after, data_after = _state_without("catalog_product")
    assert rows_after == rows_before
    assert {k: v for k, v in data_after.items() if k != "columns"} == {
        k: v for k, v in data.items() if k not in ("columns", "catalog_product")}
    assert ("description",) in data_after["columns"]
    with psycopg.connect(**DB) as conn:
        assert conn.execute("SELECT count(*), count(*) FILTER (WHERE description = '') FROM catalog_product"
                            ).fetchone() == (60, 60)


def _state_without(table: str) -> tuple[set[tuple[str, str]], dict[str, list]]:
    """History rows, every data table but `table` row by row, and `table`'s columns."""
    rows, data = shop_state(DB, [t for t in SHOP_DATA_TABLES if t != table])
    with psycopg.connect(**DB) as conn:
        data["columns"] = conn.execute("SELECT column_name FROM information_schema.columns "
                                       "WHERE table_name = %s ORDER BY 1", (table,)).fetchall()
    return rows, data


def test_dry_run_touches_nothing(shop_stack: Path, runbook_cli: list[str]) -> None:
    shutil.rmtree(shop_stack / ".runbook", ignore_errors=True)
    proc = run_cli(runbook_cli, shop_stack, "run", "fake-initial", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "backend would run:" in proc.stdout
    assert "django.plan-fake-initial" in proc.stdout
    assert not (shop_stack / ".runbook").exists()


@pytest.mark.parametrize(
    ("setup", "env", "expected"),
    [
        ("", {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, "cannot reach the Docker daemon"),
        ("services:\n  backend: web\n", {}, "running services: backend, db"),
        ("database:\n  password: not-the-password\n", {}, "wrong or missing database password"),
        ("compose:\n  project: nosuchproject\n", {}, "nosuchproject"),
    ],
    ids=["docker-down", "missing-service", "wrong-password", "no-project"],
)
def test_environment_errors_exit_4_with_one_line(shop_stack: Path, runbook_cli: list[str], setup: str,
                                                  env: dict, expected: str) -> None:
    config = shop_stack / "runbook.yml"
    if setup:
        config.write_text(setup)
    try:
        proc = run_cli(runbook_cli, shop_stack, "run", "fake-initial", "--yes", env=env)
    finally:
        config.unlink(missing_ok=True)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("runbook:")]
    assert len(error_lines) == 1 and expected in error_lines[0], proc.stderr
    assert "not-the-password" not in proc.stdout + proc.stderr


def test_stopped_backend_exits_4_and_names_the_fix(shop_stack: Path, runbook_cli: list[str]) -> None:
    backend = service_container(PROJECT, "backend")
    backend.stop(timeout=5)
    try:
        proc = run_cli(runbook_cli, shop_stack, "run", "fake-initial", "--yes")
    finally:
        backend.start()
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "start backend" in proc.stderr and "Traceback" not in proc.stderr


def test_diagnose_names_the_fake_and_its_line_repairs(shop_stack: Path, runbook_cli: list[str]) -> None:
    _reset_database(shop_stack)
    rows_before, data_before = shop_state(DB)
    with psycopg.connect(**DB) as conn:
        conn.execute("DELETE FROM django_migrations WHERE app IN ('customer', 'customer_contact')")
    found = run_cli(runbook_cli, shop_stack, "diagnose", "--json")
    assert found.returncode == 3, found.stdout + found.stderr
    [finding] = json.loads(found.stdout)["findings"]
    assert finding["kind"] == "safe-to-fake"
    # customer_contact.0002 is not an initial migration: `migrate --fake-initial` would run it; runbook's
    # fake-initial proves it from the state like the others.
    assert finding["command"] == "runbook run fake-initial --yes"
    assert "customer_contact.0002_alter_customercontact_customer: proven" in finding["evidence"]
    proc = run_cli(runbook_cli, shop_stack, *shlex.split(finding["command"])[1:])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert shop_state(DB) == (rows_before, data_before)
    assert run_cli(runbook_cli, shop_stack, "diagnose").returncode == 0


LONG_PLAYBOOK = """
name: long
description: One long step inside the backend container.
snapshot: {database: false, history: true}
steps:
  - name: long step in the container
    run: [sh, -c, "echo started; exec sleep 120"]
"""


def test_ctrl_c_stops_the_command_in_the_container(shop_stack: Path, runbook_cli: list[str]) -> None:
    (shop_stack / "long.yml").write_text(LONG_PLAYBOOK)
    shutil.rmtree(shop_stack / ".runbook", ignore_errors=True)
    first = start_cli(runbook_cli, shop_stack, "run", "long.yml", "--yes")
    try:
        deadline = time.monotonic() + 60
        while sleepers(PROJECT, "sleep 120") < 1:
            assert time.monotonic() < deadline, "the long step never started in the container"
            time.sleep(0.2)
        second = run_cli(runbook_cli, shop_stack, "run", "long.yml", "--yes")
        assert second.returncode == 5, second.stdout + second.stderr
        assert f"pid {first.pid}" in second.stderr
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, out + err
    assert "Traceback" not in err
    assert sleepers(PROJECT, "sleep 120") == 0, "the command went on in the container after Ctrl-C"
    records = [json.loads(p.read_text()) for p in (shop_stack / ".runbook" / "reports").glob("*-long*.json")]
    interrupted = [r for r in records if r["status"] == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["steps"][0]["status"] == "interrupted"
    with psycopg.connect(**DB) as conn:
        assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone()[0] == 0
    (shop_stack / "long.yml").write_text(LONG_PLAYBOOK.replace('"echo started; exec sleep 120"', '"true"'))
    assert run_cli(runbook_cli, shop_stack, "run", "long.yml", "--yes").returncode == 0
