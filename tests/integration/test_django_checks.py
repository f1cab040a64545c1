"""The Django and Alembic checks and the fake guard, end to end on the local target.

Each test breaks a migrated copy of the sample project the way real databases break (a deleted history
row, a dropped column, a model edited without a migration), runs a small playbook through the installed
`runbook` console script, and checks the exit code, what the output names, and the database afterwards.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from stack import (
    SHOP,
    django_backend,
    drop_template,
    history_rows,
    local_manage,
    make_template,
    recreate_database,
    run_local,
    template_name,
    write_local_config,
)

pytestmark = pytest.mark.integration

EVERY_CHECK = [
    {"name": "history is consistent", "action": "django.consistent"},
    {"name": "nothing unapplied", "action": "django.no-unapplied"},
    {"name": "one leaf per app", "action": "django.no-conflicts"},
    {"name": "models match the files", "action": "django.makemigrations-clean"},
    {"name": "schema matches the models", "action": "django.schema-matches"},
]


def _sql(db: dict, *statements: str) -> list:
    with psycopg.connect(**db, autocommit=True) as conn:
        result = []
        for statement in statements:
            cur = conn.execute(statement)
            result = cur.fetchall() if cur.description else result
        return result


@pytest.fixture(scope="module")
def migrated_once(local_pg: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The sample project's database migrated and seeded once for the module and kept as a template: a copy
    for each test takes a fraction of the time of a migrate."""
    settings = dict(local_pg, dbname=f"shop_{uuid.uuid4().hex[:10]}")  # the cluster is shared: a name of its own
    recreate_database(settings, str(settings["dbname"]))
    project = tmp_path_factory.mktemp("migrated-once") / "shop"
    shutil.copytree(SHOP, project, ignore=shutil.ignore_patterns("__pycache__", ".runbook"))
    try:
        local_manage(project, settings, "migrate", "--noinput")
        local_manage(project, settings, "seed", "--rows", "5")
        make_template(settings)
        yield settings
    finally:
        drop_template(settings)


@pytest.fixture
def shop(shop_project: Path, fresh_db: dict, migrated_once: dict) -> tuple[Path, dict]:
    """The sample project, migrated and seeded, with a runbook.yml for the local target."""
    recreate_database(fresh_db, str(fresh_db["dbname"]), template_name(migrated_once))
    write_local_config(shop_project, fresh_db, "SHOP_DB_PASSWORD", django_backend(fresh_db))
    return shop_project, fresh_db


def _playbook(tmp_path: Path, name: str, steps: list[dict], verify: list[dict] | None = None) -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump({
        "name": name, "description": f"test playbook {name}", "snapshot": {"database": False, "history": False},
        "steps": steps, "verify": verify or [],
    }, sort_keys=False))
    return path


def _run(cli: list[str], project: Path, db: dict, playbook: Path) -> tuple[int, str, dict]:
    """Run a playbook file; return the exit code, the console text and the report's JSON twin."""
    proc = run_local(cli, project, db, "run", str(playbook), "--yes", timeout=300)
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text, text
    # By time written: two runs in one second are named `X-name.json` and `X-name-2.json`, which sort backwards.
    reports = sorted((p for p in (project / ".runbook" / "reports").glob("*.json")
                      if re.search(rf"-{re.escape(playbook.stem)}(-\d+)?\.json$", p.name)),
                     key=lambda p: p.stat().st_mtime_ns)
    return proc.returncode, text, json.loads(reports[-1].read_text()) if reports else {}


def _check_output(report: dict, name: str) -> str:
    check = next(c for c in [*report["steps"], *report["checks"]] if c["name"] == name)
    return check["stdout"] + check["stderr"] + "\n".join(check["problems"])


INSPECT = {"name": "inspect", "action": "django.inspect", "keep": "state"}


def test_healthy_project_passes_every_check(shop, tmp_path: Path, runbook_cli: list[str]) -> None:
    project, db = shop
    keep = {"name": "kept the inspection", "action": "assert",
            "with": {"that": "kept.state.problems | length == 0 and 'catalog_product' in kept.state.schema.tables"}}
    code, text, report = _run(runbook_cli, project, db, _playbook(tmp_path, "healthy", [INSPECT, keep], EVERY_CHECK))
    assert code == 0, text
    assert [c["status"] for c in report["checks"]] == ["ok"] * len(EVERY_CHECK)
    assert "schema matches the models" in _check_output(report, "schema matches the models")
    assert "no problems found" in _check_output(report, "inspect")


def test_deleted_dependency_row_is_inconsistent_history(shop, tmp_path: Path, runbook_cli: list[str]) -> None:
    project, db = shop
    _sql(db, "DELETE FROM django_migrations WHERE app = 'customer' AND name = '0001_initial'")
    # What the guides hit: Django itself refuses to do anything now.
    broken = local_manage(project, db, "migrate", "--noinput", check=False)
    assert broken.returncode != 0 and "InconsistentMigrationHistory" in broken.stderr

    code, text, report = _run(runbook_cli, project, db, _playbook(tmp_path, "broken", [INSPECT], EVERY_CHECK))
    assert code == 3, text
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["history is consistent"] == "failed" and statuses["nothing unapplied"] == "failed"
    assert statuses["schema matches the models"] == "ok" and statuses["models match the files"] == "ok"
    line = ("customer_contact.0002_alter_customercontact_customer is applied but its dependency "
            "customer.0001_initial is not")
    assert line in _check_output(report, "history is consistent")
    assert line in text  # the console says why, not only "exit code 1"
    assert "customer.0001_initial is not applied" in _check_output(report, "nothing unapplied")

    # The guard proves the table is there and records the row; Django's own `migrate --fake` would raise.
    fake = {"name": "fake", "action": "django.fake", "with": {"migrations": ["customer.0001_initial"]}}
    code, text, report = _run(runbook_cli, project, db, _playbook(tmp_path, "repair", [fake], EVERY_CHECK))
    assert code == 0, text
    assert ("customer", "0001_initial") in history_rows(db)
    assert "table customer_customer exists" in _check_output(report, "fake")


def test_dropped_column_fails_schema_check_and_refuses_the_fake(shop, tmp_path: Path,
                                                                runbook_cli: list[str]) -> None:
    project, db = shop
    _sql(db, "ALTER TABLE catalog_product DROP COLUMN description")
    schema = [{"name": "schema matches the models", "action": "django.schema-matches"}]
    code, text, report = _run(runbook_cli, project, db, _playbook(tmp_path, "drift", [INSPECT], schema))
    assert code == 3, text
    assert ("column catalog_product.description (field catalog.Product.description) does not exist"
            in _check_output(report, "schema matches the models"))
    assert "catalog_product.description" in text

    _sql(db, "DELETE FROM django_migrations WHERE app = 'catalog' AND name = '0002_product_description'")
    fake = {"name": "fake", "action": "django.fake", "with": {"migrations": ["catalog.0002_product_description"]},
            "keep": "faked"}
    playbook = _playbook(tmp_path, "fake", [fake], schema)
    code, text, report = _run(runbook_cli, project, db, playbook)
    assert code == 1, text
    output = _check_output(report, "fake")
    assert "refused" in output and "column catalog_product.description does not exist" in output
    assert ("catalog", "0002_product_description") not in history_rows(db)
    assert report["checks"][0]["status"] != "ok"  # the run stopped at the refused step

    # As AddField left it: text NOT NULL, no default. Now the fake is proven and the row comes back.
    _sql(db, "ALTER TABLE catalog_product ADD COLUMN description text NOT NULL DEFAULT ''",
         "ALTER TABLE catalog_product ALTER COLUMN description DROP DEFAULT")
    code, text, report = _run(runbook_cli, project, db, playbook)
    assert code == 0, text
    assert ("catalog", "0002_product_description") in history_rows(db)
    assert "recorded catalog.0002_product_description" in _check_output(report, "fake")


def _constraint_of(db: dict, table: str, column: str, kind: str) -> str:
    [[name]] = _sql(db, "SELECT c.conname FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid "
                        f"AND a.attnum = ANY(c.conkey) WHERE c.conrelid = '{table}'::regclass AND c.contype = '{kind}' "
                        f"AND a.attname = '{column}'")
    return name


def test_a_dropped_unique_constraint_or_fk_index_refuses_the_fake(shop, tmp_path: Path,
                                                                   runbook_cli: list[str]) -> None:
    project, db = shop
    # Names differ between installs (hash suffixes): look them up, as a DBA would before dropping.
    unique = _constraint_of(db, "customer_customer", "email", "u")
    [[fk_index]] = _sql(db, "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = "
                            "'customer_contact_customercontact'::regclass AND NOT indisprimary")
    _sql(db, f'ALTER TABLE customer_customer DROP CONSTRAINT "{unique}"', f'DROP INDEX "{fk_index}"',
         "DELETE FROM django_migrations WHERE app IN ('customer', 'customer_contact')")
    rows = history_rows(db)
    schema = [{"name": "schema matches the models", "action": "django.schema-matches"}]
    fake = {"name": "fake", "action": "django.fake", "with": {"migrations": [
        "customer.0001_initial", "customer_contact.0001_initial", "customer_contact.0002"]}}
    code, text, report = _run(runbook_cli, project, db, _playbook(tmp_path, "fake-keys", [fake], schema))
    assert code == 1, text
    output = _check_output(report, "fake")
    assert "NO   unique constraint on customer_customer(email) does not exist" in output
    assert "NO   index on customer_contact_customercontact(customer_id) does not exist" in output
    assert history_rows(db) == rows  # nothing recorded
    assert not _sql(db, "SELECT 1 FROM pg_constraint WHERE conrelid = 'customer_customer'::regclass "
                        "AND contype = 'u'")

    code, text, report = _run(runbook_cli, project, db, _playbook(tmp_path, "drift-keys", [INSPECT], schema))
    assert code == 3, text
    problems = _check_output(report, "schema matches the models")
    assert ("unique constraint on customer_customer(email) does not exist (field customer.Customer.email unique)"
            in problems)
    assert ("index on customer_contact_customercontact(customer_id) does not exist "
            "(field customer_contact.CustomerContact.customer db_index)") in problems

    # Put them back under other names: matched by columns, the fake is proven and the schema matches.
    _sql(db, "ALTER TABLE customer_customer ADD CONSTRAINT another_name UNIQUE (email)",
         "CREATE INDEX any_name ON customer_contact_customercontact (customer_id)")
    code, text, report = _run(runbook_cli, project, db, _playbook(tmp_path, "fake-keys", [fake], schema))
    assert code == 0, text
    assert ("customer", "0001_initial") in history_rows(db)


def test_a_foreign_key_to_another_table_is_a_schema_difference(shop, tmp_path: Path,
                                                                runbook_cli: list[str]) -> None:
    project, db = shop
    fk = _constraint_of(db, "catalog_product", "category_id", "f")
    _sql(db, f'ALTER TABLE catalog_product DROP CONSTRAINT "{fk}"',
         "CREATE TABLE other_category (id bigint PRIMARY KEY)",
         "INSERT INTO other_category SELECT id FROM catalog_category",
         "ALTER TABLE catalog_product ADD FOREIGN KEY (category_id) REFERENCES other_category(id)")
    schema = [{"name": "schema matches the models", "action": "django.schema-matches"}]
    code, text, report = _run(runbook_cli, project, db, _playbook(tmp_path, "fk-drift", [INSPECT], schema))
    assert code == 3, text
    assert ("foreign key catalog_product(category_id) -> catalog_category(id) does not exist (field "
            "catalog.Product.category); it references other_category(id)") in _check_output(
        report, "schema matches the models")


def test_a_column_of_another_type_refuses_the_fake(shop, tmp_path: Path, runbook_cli: list[str]) -> None:
    project, db = shop
    _sql(db, "DELETE FROM django_migrations WHERE app = 'catalog' AND name = '0002_product_description'",
         "ALTER TABLE catalog_product ALTER COLUMN description TYPE varchar(100)")
    fake = {"name": "fake", "action": "django.fake", "with": {"migrations": ["catalog.0002"]}}
    code, text, report = _run(runbook_cli, project, db, _playbook(tmp_path, "typed", [fake]))
    assert code == 1, text
    assert ("column catalog_product.description (field catalog.Product.description) is character varying(100), "
            "Django's migration state expects text" in _check_output(report, "fake"))
    assert ("catalog", "0002_product_description") not in history_rows(db)


def test_fix_history_by_faking_back_in_one_batch(shop, tmp_path: Path, runbook_cli: list[str]) -> None:
    """customer_contact.0001 made the column an integer FK to auth_user; 0002 made it bigint to customer.

    Faking 0001 alone is refused (the live column is 0002's): the state after it is not the live one. Faking
    the chain together is proven: the live tables match the state after all of it.
    """
    project, db = shop
    unrecord = {"name": "unrecord", "action": "django.unrecord", "with": {"migrations": [
        "customer.0001_initial", "customer_contact.0001_initial",
        "customer_contact.0002_alter_customercontact_customer"]}}
    alone = {"name": "fake 0001 alone", "action": "django.fake",
             "with": {"migrations": ["customer_contact.0001_initial"]}, "expect": {"exit_code": 1}}
    batch = {"name": "fake the chain", "action": "django.fake", "with": {"migrations": [
        "customer_contact.0002", "customer_contact.0001_initial", "customer.0001_initial"]}}
    playbook = _playbook(tmp_path, "chain", [unrecord, alone, batch], EVERY_CHECK)
    code, text, report = _run(runbook_cli, project, db, playbook)
    assert code == 0, text
    refused = _check_output(report, "fake 0001 alone")
    assert ("column customer_contact_customercontact.customer_id (field customer_contact.CustomerContact.customer) "
            "is bigint, Django's migration state expects integer" in refused)
    assert "it references customer_customer(id)" in refused
    chain = _check_output(report, "fake the chain")
    assert ("the live tables of app customer_contact match Django's migration state with "
            "customer_contact.0002_alter_customercontact_customer" in chain)
    assert {("customer", "0001_initial"), ("customer_contact", "0001_initial"),
            ("customer_contact", "0002_alter_customercontact_customer")} <= history_rows(db)


def test_model_change_without_migration_fails_makemigrations_clean(shop, tmp_path: Path,
                                                                   runbook_cli: list[str]) -> None:
    project, db = shop
    models = project / "catalog" / "models.py"
    models.write_text(models.read_text() + "    weight = models.IntegerField(null=True)\n")
    # With an inconsistent history too: the real `makemigrations --check` cannot even start then.
    _sql(db, "DELETE FROM django_migrations WHERE app = 'customer' AND name = '0001_initial'")
    real = local_manage(project, db, "makemigrations", "--check", "--dry-run", check=False)
    assert real.returncode != 0 and "InconsistentMigrationHistory" in real.stderr

    check = [{"name": "models match the files", "action": "django.makemigrations-clean"}]
    code, text, report = _run(runbook_cli, project, db, _playbook(tmp_path, "models", [INSPECT], check))
    assert code == 3, text
    output = _check_output(report, "models match the files")
    assert "makemigrations would write catalog/migrations/0003_product_weight.py" in output
    assert "Add field weight to product" in output


def test_django_that_cannot_start_fails_the_check_with_its_reason(shop, tmp_path: Path,
                                                                  runbook_cli: list[str]) -> None:
    project, db = shop
    (project / "shop" / "settings.py").write_text("raise RuntimeError('settings are broken here')\n")
    code, text, report = _run(runbook_cli, project, db, _playbook(
        tmp_path, "nostart", [{"name": "history", "action": "history"}], EVERY_CHECK[:1]))
    assert code == 3, text
    assert "Django cannot start (shop.settings): RuntimeError: settings are broken here" in text


@pytest.mark.parametrize(("broken", "reason"), [
    ("from django.db import migrations\n\nclass Migration(migrations.Migration)\n    operations = []\n",
     "SyntaxError"),
    ("from django.db import migrations\n\n\nclass Migration(migrations.Migration):\n"
     "    dependencies = [('catalog', '0009_never_written')]\n    operations = []\n",
     "NodeNotFoundError"),
])
def test_a_migration_file_django_cannot_load_is_one_line_exit_4(shop, runbook_cli: list[str], broken: str,
                                                                reason: str) -> None:
    project, db = shop
    path = project / "catalog" / "migrations" / "0003_broken.py"
    path.write_text(broken)
    rows = history_rows(db)
    for command in (["diagnose"], ["run", "fix-history", "--yes"]):
        proc = run_local(runbook_cli, project, db, *command, timeout=300)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        [error] = [line for line in proc.stderr.splitlines() if line.startswith("runbook: error:")]
        assert reason in error and "0003_broken.py" in error, error
        assert "fix or restore that migration file" in error
    assert history_rows(db) == rows


def test_missing_interpreter_is_environment_not_ready(shop, tmp_path: Path, runbook_cli: list[str]) -> None:
    project, db = shop
    config = yaml.safe_load((project / "runbook.yml").read_text())
    config["backend"]["manage"] = ["/nonexistent/python3", "manage.py"]
    (project / "runbook.yml").write_text(yaml.safe_dump(config))
    code, text, _ = _run(runbook_cli, project, db, _playbook(tmp_path, "nopython", [INSPECT]))
    assert code == 4, text
    assert "cannot run /nonexistent/python3 in the backend" in text


ALEMBIC_INI = """\
[alembic]
script_location = migrations
"""


def _revision(rev: str, down: str | None) -> str:
    return textwrap.dedent(f'''\
        """revision {rev}"""
        revision = "{rev}"
        down_revision = {down!r}
        branch_labels = None
        depends_on = None


        def upgrade():
            pass


        def downgrade():
            pass
        ''')


def test_alembic_single_head_and_at_head(tmp_path: Path, fresh_db: dict, runbook_cli: list[str]) -> None:
    project = tmp_path / "api"
    (project / "migrations" / "versions").mkdir(parents=True)
    (project / "alembic.ini").write_text(ALEMBIC_INI)
    (project / "migrations" / "script.py.mako").write_text("")
    for rev, down in (("a1", None), ("b1", "a1"), ("b2", "a1")):
        (project / "migrations" / "versions" / f"{rev}.py").write_text(_revision(rev, down))
    write_local_config(project, fresh_db, "SHOP_DB_PASSWORD", {"workdir": ".", "manage": [sys.executable, "manage.py"]})
    _sql(fresh_db, "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
         "INSERT INTO alembic_version VALUES ('b1')")
    checks = [{"name": "single head", "action": "alembic.single-head"},
              {"name": "at head", "action": "alembic.at-head"}]
    playbook = _playbook(tmp_path, "heads", [{"name": "history", "action": "history"}], checks)

    code, text, report = _run(runbook_cli, project, fresh_db, playbook)
    assert code == 3, text
    assert "2 heads that conflict: b1 (down_revision a1, migrations/versions/b1.py); b2 (down_revision a1" in \
        _check_output(report, "single head")
    assert "head b2 (down_revision a1, migrations/versions/b2.py) is not applied" in _check_output(report, "at head")

    # Linearised (b2 now follows b1) and upgraded: both hold.
    (project / "migrations" / "versions" / "b2.py").write_text(_revision("b2", "b1"))
    _sql(fresh_db, "UPDATE alembic_version SET version_num = 'b2'")
    code, text, report = _run(runbook_cli, project, fresh_db, playbook)
    assert code == 0, text
    assert "one head: b2" in _check_output(report, "single head")
