"""fix-history on a real Compose stack: InconsistentMigrationHistory built the way the guide describes.

customer_contact.0002 (which moves its foreign key to customer.Customer) is recorded as applied while its
dependency customer.0001_initial is not. Either customer's table exists and only its row is missing, or
the table was never created. `runbook run fix-history --yes`, with no variables, must repair both, keep
every row, and leave a history that `manage.py migrate` accepts.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from stack import db_settings, empty_database, manage, reset_app, run_cli, running_stack, service_container

pytestmark = pytest.mark.integration

PROJECT = "rbfix"
DB_PORT = 55492
DB = db_settings(DB_PORT)
KEPT_TABLES = ["catalog_category", "catalog_product", "auth_user"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Path]:
    with running_stack(tmp_path_factory.mktemp("stacks") / PROJECT, DB_PORT) as directory:
        yield directory


@pytest.fixture
def clean(stack: Path) -> Path:
    empty_database(DB)
    reset_app(stack)
    for path in (stack / ".runbook").glob("reports/*"):
        path.unlink()
    return stack


def _rows() -> set[tuple[str, str]]:
    with psycopg.connect(**DB) as conn:
        return {tuple(r) for r in conn.execute("SELECT app, name FROM django_migrations")}


def _data() -> dict[str, list]:
    with psycopg.connect(**DB) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in KEPT_TABLES}


def _migrate_fails_with_inconsistent_history() -> None:
    code, output = service_container(PROJECT, "backend").exec_run(["python", "manage.py", "migrate", "--noinput"],
                                                                  workdir="/srv/app")
    assert code != 0 and b"InconsistentMigrationHistory" in output, output.decode()[-500:]


def _report(stack: Path) -> dict:
    [path] = (stack / ".runbook" / "reports").glob("*-fix-history.json")
    return json.loads(path.read_text())


def _diagnose_and_run_its_fix(stack: Path, cli: list[str]):
    """Run `runbook diagnose`, check it names fix-history, then run exactly the line it prints."""
    found = run_cli(cli, stack, "diagnose", "--json")
    assert found.returncode == 3, found.stdout + found.stderr
    report = json.loads(found.stdout)
    first = report["findings"][0]
    assert first["kind"] == "inconsistent-history"
    assert "customer_contact.0002_alter_customercontact_customer" in first["evidence"][0]
    assert first["command"] == "runbook run fix-history --yes"
    argv = shlex.split(first["command"])
    return run_cli(cli, stack, *argv[1:])


def _add_users_and_products(count: int) -> None:
    with psycopg.connect(**DB) as conn:
        conn.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,"
            " is_active, date_joined) SELECT '!', false, 'user' || i, '', '', '', false, true, now()"
            " FROM generate_series(1, %(n)s) AS i", {"n": count})


def test_dependency_tables_exist_only_the_row_is_missing(clean: Path, runbook_cli: list[str]) -> None:
    manage(PROJECT, "migrate", "--noinput")
    manage(PROJECT, "seed", "--rows", "500")
    _add_users_and_products(50)
    rows_before, data_before = _rows(), _data()
    with psycopg.connect(**DB) as conn:
        conn.execute("DELETE FROM django_migrations WHERE app = 'customer'")
    _migrate_fails_with_inconsistent_history()

    proc = _diagnose_and_run_its_fix(clean, runbook_cli)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "record customer.0001_initial" in proc.stdout
    assert _rows() == rows_before
    assert _data() == data_before
    manage(PROJECT, "migrate", "--check")
    assert run_cli(runbook_cli, clean, "diagnose").returncode == 0
    report = _report(clean)
    assert report["status"] == "done"
    assert report["steps"][2]["status"] == "skipped"  # nothing had to be applied for real


def test_dependency_never_ran(clean: Path, runbook_cli: list[str]) -> None:
    # The guide's world: contacts were made against auth.User, then 0002 was recorded without running.
    for app in ("contenttypes", "auth", "admin", "sessions", "catalog"):
        manage(PROJECT, "migrate", app, "--noinput")
    manage(PROJECT, "migrate", "customer_contact", "0001", "--noinput")
    _add_users_and_products(50)
    with psycopg.connect(**DB) as conn:
        conn.execute("INSERT INTO catalog_category (name) SELECT 'c' || i FROM generate_series(1, 20) AS i")
        conn.execute("INSERT INTO django_migrations (app, name, applied)"
                     " VALUES ('customer_contact', '0002_alter_customercontact_customer', now())")
        assert conn.execute("SELECT to_regclass('customer_customer')").fetchone()[0] is None
    data_before = _data()
    _migrate_fails_with_inconsistent_history()

    proc = _diagnose_and_run_its_fix(clean, runbook_cli)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "apply customer.0001_initial for real" in proc.stdout
    with psycopg.connect(**DB) as conn:
        assert conn.execute("SELECT to_regclass('customer_customer')").fetchone()[0] == "customer_customer"
        target = conn.execute(
            "SELECT confrelid::regclass::text FROM pg_constraint WHERE contype = 'f'"
            " AND conrelid = 'customer_contact_customercontact'::regclass").fetchone()[0]
    assert target == "customer_customer"  # 0002 really ran: the foreign key moved to customer
    assert ("customer", "0001_initial") in _rows()
    assert _data() == data_before
    manage(PROJECT, "migrate", "--check")
    report = _report(clean)
    assert report["status"] == "done"
    assert all(check["status"] == "ok" for check in report["checks"])


def test_consistent_history_is_left_alone(clean: Path, runbook_cli: list[str]) -> None:
    manage(PROJECT, "migrate", "--noinput")
    rows_before = _rows()
    healthy = run_cli(runbook_cli, clean, "diagnose", "--json")
    assert healthy.returncode == 0 and json.loads(healthy.stdout)["findings"] == []
    proc = run_cli(runbook_cli, clean, "run", "fix-history", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing to do" in proc.stdout
    assert _rows() == rows_before
    assert [s["status"] for s in _report(clean)["steps"]][1:] == ["skipped"] * 3


