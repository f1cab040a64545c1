"""fix-history on a real Compose stack: InconsistentMigrationHistory built the way the guide describes.

customer_contact.0002 (which moves its foreign key to customer.Customer) is recorded as applied while its
dependency customer.0001_initial is not. Either customer's table exists and only its row is missing, or
the table was never created. `runbook run fix-history --yes`, with no variables, must repair both, keep
every row, and leave a history that `manage.py migrate` accepts. When the dependants that must run again
would point existing rows at a table that has none for them (contacts made against auth.User, as in the
guide), it refuses before changing anything: no automatic repair knows which customer a contact belongs to.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from diagnosis import assert_second_run_is_a_no_op, database_state, diagnose_then_run_its_line, table_rows
from stack import (
    add_users,
    clean_stack,
    db_settings,
    history_rows,
    latest_report,
    manage,
    migrate_fails_with,
    run_cli,
    snapshot_ids,
    stack_fixture,
)

pytestmark = pytest.mark.integration

PROJECT = "rbfix"
DB_PORT = 25492
DB = db_settings(DB_PORT)
FIX = "runbook run fix-history --yes"
BARCODE_MIGRATION = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("catalog", "0002_product_description"), ("customer", "0001_initial")]
    operations = [migrations.AddField("product", "barcode", models.CharField(max_length=20, blank=True, default=""))]
"""


stack = stack_fixture(PROJECT, DB_PORT)


@pytest.fixture
def clean(stack: Path) -> Path:
    return clean_stack(stack, DB)


def test_dependency_tables_exist_only_the_row_is_missing(clean: Path, runbook_cli: list[str]) -> None:
    manage(PROJECT, "migrate", "--noinput")
    manage(PROJECT, "seed", "--rows", "500")
    add_users(DB, 50)
    rows_before, data_before = history_rows(DB), table_rows(DB)
    with psycopg.connect(**DB) as conn:
        conn.execute("DELETE FROM django_migrations WHERE app = 'customer'")
    migrate_fails_with(PROJECT, "InconsistentMigrationHistory")

    proc = diagnose_then_run_its_line(runbook_cli, clean, DB, "inconsistent-history", FIX)
    assert "record customer.0001_initial" in proc.stdout
    assert history_rows(DB) == rows_before
    assert table_rows(DB) == data_before
    manage(PROJECT, "migrate", "--check")
    report = latest_report(clean, "fix-history")[0]
    assert report["status"] == "done"
    assert report["steps"][2]["status"] == "skipped"  # nothing had to be applied for real
    assert_second_run_is_a_no_op(runbook_cli, clean, DB, "fix-history")


def _guides_world(contacts: int) -> None:
    """customer_contact.0001 ran against auth.User; 0002 (foreign key to customer) recorded, never run."""
    for app in ("contenttypes", "auth", "admin", "sessions"):
        manage(PROJECT, "migrate", app, "--noinput")
    manage(PROJECT, "migrate", "catalog", "0002", "--noinput")
    manage(PROJECT, "migrate", "customer_contact", "0001", "--noinput")
    add_users(DB, 50)
    with psycopg.connect(**DB) as conn:
        conn.execute("INSERT INTO catalog_category (name) SELECT 'c' || i FROM generate_series(1, 20) AS i")
        conn.execute("INSERT INTO customer_contact_customercontact (customer_id, phone, note)"
                     " SELECT id, '555-' || id, 'called' FROM auth_user ORDER BY id LIMIT %(n)s", {"n": contacts})
        conn.execute("INSERT INTO django_migrations (app, name, applied)"
                     " VALUES ('customer_contact', '0002_alter_customercontact_customer', now())")
        assert conn.execute("SELECT to_regclass('customer_customer')").fetchone()[0] is None


def test_dependency_never_ran_with_contacts_refuses_before_any_change(clean: Path, runbook_cli: list[str]) -> None:
    _guides_world(contacts=30)
    migrate_fails_with(PROJECT, "InconsistentMigrationHistory")

    proc = diagnose_then_run_its_line(runbook_cli, clean, DB, "inconsistent-history", FIX, refused=True)
    assert ("customer_contact.0002_alter_customercontact_customer must run again to point "
            "customer_contact_customercontact.customer_id at customer_customer.id, but 30 rows") in proc.stdout
    report = latest_report(clean, "fix-history")[0]
    assert report["status"] == "refused" and report["exit_code"] == 2
    assert [s["status"] for s in report["steps"]] == ["failed"] + ["not-run"] * 6


def test_dependency_never_ran_is_applied_and_proven_dependants_recorded_again(
        clean: Path, runbook_cli: list[str]) -> None:
    # catalog.0003 depends on customer.0001 too; its column is there, so it is recorded again, not re-run.
    (clean / "app" / "catalog" / "migrations" / "0003_product_barcode.py").write_text(BARCODE_MIGRATION)
    models = clean / "app" / "catalog" / "models.py"
    models.write_text(models.read_text().replace(
        '    category = models.ForeignKey(',
        '    barcode = models.CharField(max_length=20, blank=True, default="")\n    category = models.ForeignKey('))
    _guides_world(contacts=0)
    with psycopg.connect(**DB) as conn:
        conn.execute("ALTER TABLE catalog_product ADD COLUMN barcode varchar(20) NOT NULL DEFAULT ''")
        conn.execute("ALTER TABLE catalog_product ALTER COLUMN barcode DROP DEFAULT")
        conn.execute("INSERT INTO django_migrations (app, name, applied)"
                     " VALUES ('catalog', '0003_product_barcode', now())")
    data_before = table_rows(DB)
    migrate_fails_with(PROJECT, "InconsistentMigrationHistory")

    proc = diagnose_then_run_its_line(runbook_cli, clean, DB, "inconsistent-history", FIX)
    assert "apply customer.0001_initial for real" in proc.stdout
    assert "recorded catalog.0003_product_barcode again: the schema proves it ran" in proc.stdout
    assert "customer_contact.0002_alter_customercontact_customer did not really run" in proc.stdout
    with psycopg.connect(**DB) as conn:
        target = conn.execute(
            "SELECT confrelid::regclass::text FROM pg_constraint WHERE contype = 'f'"
            " AND conrelid = 'customer_contact_customercontact'::regclass").fetchone()[0]
    assert target == "customer_customer"  # 0002 really ran: the foreign key moved to customer
    assert {("customer", "0001_initial"), ("catalog", "0003_product_barcode")} <= history_rows(DB)
    after = table_rows(DB)
    # Applying customer.0001 for real adds its content type and permissions (Django's post_migrate); every
    # other table holds exactly the rows it had.
    grown = ("django_content_type", "auth_permission")
    assert {t: after[t] for t in data_before if t not in grown} == {
        t: rows for t, rows in data_before.items() if t not in grown}
    assert all(set(data_before[t]) <= set(after[t]) for t in grown)
    assert after["customer_customer"] == []
    manage(PROJECT, "migrate", "--check")
    report = latest_report(clean, "fix-history")[0]
    assert report["status"] == "done"
    assert all(check["status"] == "ok" for check in report["checks"])
    assert_second_run_is_a_no_op(runbook_cli, clean, DB, "fix-history")


def test_consistent_history_is_left_alone(clean: Path, runbook_cli: list[str]) -> None:
    manage(PROJECT, "migrate", "--noinput")
    healthy = run_cli(runbook_cli, clean, "diagnose", "--json")
    assert healthy.returncode == 0 and json.loads(healthy.stdout)["findings"] == []
    assert_second_run_is_a_no_op(runbook_cli, clean, DB, "fix-history")


def test_another_problem_is_refused_with_the_line_that_fits(clean: Path, runbook_cli: list[str]) -> None:
    manage(PROJECT, "migrate", "--noinput")
    with psycopg.connect(**DB) as conn:
        conn.execute("DELETE FROM django_migrations WHERE app = 'customer_contact'")
    before, snapshots = database_state(DB), snapshot_ids(clean)
    proc = run_cli(runbook_cli, clean, "run", "fix-history", "--yes")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [error] = [line for line in proc.stderr.splitlines() if line.startswith("runbook: error:")]
    assert "fix-history does not fit this state: safe-to-fake" in error
    assert error.endswith("run instead: runbook run fake-initial --yes")
    assert database_state(DB) == before
    assert snapshot_ids(clean) == snapshots  # refused before the snapshot
    assert latest_report(clean, "fix-history")[0]["status"] == "refused"


def test_recorded_migration_that_never_ran_is_run_again(clean: Path, runbook_cli: list[str]) -> None:
    # catalog.0002 is recorded, but its column is gone (a dump restored over a newer history).
    manage(PROJECT, "migrate", "--noinput")
    manage(PROJECT, "seed", "--rows", "100")
    with psycopg.connect(**DB) as conn:
        conn.execute("ALTER TABLE catalog_product DROP COLUMN description")
    rows_before, data_before = history_rows(DB), table_rows(DB)

    # Put back from Django's migration state after the recorded migrations, not by running 0002 again: in
    # a real history a later migration may have altered the column since.
    proc = diagnose_then_run_its_line(runbook_cli, clean, DB, "schema-lost",
                                      "runbook run restore-schema --var apps=catalog --yes")
    assert "restored column catalog_product.description" in proc.stdout
    assert history_rows(DB) == rows_before
    after = table_rows(DB)
    assert {t: r for t, r in after.items() if t != "catalog_product"} == {
        t: r for t, r in data_before.items() if t != "catalog_product"}
    with psycopg.connect(**DB) as conn:
        assert conn.execute("SELECT count(*), count(*) FILTER (WHERE description = '') FROM catalog_product"
                            ).fetchone() == (len(data_before["catalog_product"]),) * 2
    manage(PROJECT, "migrate", "--check")


def test_fix_history_ends_like_the_guide_with_every_migration_applied(clean: Path, runbook_cli: list[str]) -> None:
    # Seen: fix-history repaired the inconsistency, then failed its check "no unapplied migration" because
    # other apps still had migrations that never ran. The guide ends with `manage.py migrate`; so does it.
    _guides_world(contacts=0)
    with psycopg.connect(**DB) as conn:
        conn.execute("DROP TABLE django_session")
        conn.execute("DELETE FROM django_migrations WHERE app = 'sessions'")
        conn.execute("ALTER TABLE catalog_product DROP COLUMN description")
        conn.execute("DELETE FROM django_migrations WHERE app = 'catalog' AND name = '0002_product_description'")
    migrate_fails_with(PROJECT, "InconsistentMigrationHistory")

    proc = diagnose_then_run_its_line(runbook_cli, clean, DB, "inconsistent-history", FIX)
    assert "apply customer.0001_initial for real" in proc.stdout
    assert {("sessions", "0001_initial"), ("catalog", "0002_product_description"),
            ("customer", "0001_initial")} <= history_rows(DB)
    manage(PROJECT, "migrate", "--check")
    report = latest_report(clean, "fix-history")[0]
    assert report["status"] == "done" and all(check["status"] == "ok" for check in report["checks"])


def test_squash_whose_originals_are_recorded_gets_its_own_row(clean: Path, runbook_cli: list[str]) -> None:
    manage(PROJECT, "migrate", "--noinput")
    manage(PROJECT, "seed", "--rows", "50")
    # A squash added after the originals ran: Django counts it applied, but its own row is missing.
    manage(PROJECT, "squashmigrations", "catalog", "0002", "--noinput")
    [squash] = [p.stem for p in (clean / "app" / "catalog" / "migrations").glob("0001_squashed_*.py")]
    rows_before, data_before = history_rows(DB), table_rows(DB)
    assert ("catalog", squash) not in rows_before

    diagnose_then_run_its_line(runbook_cli, clean, DB, "squash-unrecorded",
                               f"runbook run fake-migrations --var migrations=catalog.{squash} --yes")
    assert history_rows(DB) == rows_before | {("catalog", squash)}
    assert table_rows(DB) == data_before


def test_partly_applied_migration_is_completed(clean: Path, runbook_cli: list[str]) -> None:
    # The rows of customer_contact are gone and its table lost `note`: migrate fails ("already exists"),
    # a fake would hide the missing column.
    manage(PROJECT, "migrate", "--noinput")
    manage(PROJECT, "seed", "--rows", "80")
    with psycopg.connect(**DB) as conn:
        conn.execute("DELETE FROM django_migrations WHERE app = 'customer_contact'")
        conn.execute("ALTER TABLE customer_contact_customercontact DROP COLUMN note")
    data_before = table_rows(DB)
    contacts = len(data_before["customer_contact_customercontact"])
    assert contacts > 0

    proc = diagnose_then_run_its_line(
        runbook_cli, clean, DB, "partly-applied",
        "runbook run complete-migrations --var migrations=customer_contact.0001_initial,"
        "customer_contact.0002_alter_customercontact_customer --yes")
    assert "added column customer_contact_customercontact.note as the migration defines it" in proc.stdout
    after = table_rows(DB)
    assert {t: r for t, r in after.items() if t != "customer_contact_customercontact"} == {
        t: r for t, r in data_before.items() if t != "customer_contact_customercontact"}
    with psycopg.connect(**DB) as conn:
        assert conn.execute("SELECT count(*), count(*) FILTER (WHERE note = '')"
                            " FROM customer_contact_customercontact").fetchone() == (contacts, contacts)
    manage(PROJECT, "migrate", "--check")
