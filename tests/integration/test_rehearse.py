"""`runbook run --rehearse` on a real Compose stack: the whole playbook runs on copies, nothing real changes.

The broken state is the guide's InconsistentMigrationHistory, built as in test_fix_history.py:
customer_contact.0002 recorded as applied while customer.0001_initial never ran. A rehearsal of
fix-history applies customer.0001 for real -- on the copy -- and must leave the real rows, tables and
migration files byte-identical, drop its copy, and delete its copy of the files.
"""

from __future__ import annotations

import json
import signal
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from stack import (
    add_users,
    clean_stack,
    db_settings,
    django_backend,
    local_manage,
    manage,
    report_of,
    run_cli,
    service_container,
    sleepers,
    stack_fixture,
    start_cli,
    write_local_config,
)

pytestmark = pytest.mark.integration

PROJECT = "rbrehearse"
DB_PORT = 25650
DB = db_settings(DB_PORT)

# Steps that change the copy in every way a playbook can (a file, SQL, a backend command), then a verify
# check that fails: the rehearsal must exit 3 and the real database and files must not have moved.
FAILING_VERIFY = """\
name: break-then-check
description: Change files, history and tables, then check something that cannot hold.
framework: django
destructive: true
steps:
  - name: edit a migration file
    shell: "printf '# edited by a rehearsal\\\\n' >> catalog/migrations/0001_initial.py"
  - name: forget catalog's history
    sql: "DELETE FROM django_migrations WHERE app = 'catalog'"
  - name: unapply sessions (drops its table)
    manage: [migrate, sessions, zero, --noinput]
  - name: empty the products from the db service
    service: db
    run: [psql, -X, -v, ON_ERROR_STOP=1, -U, runbook, -c, "TRUNCATE catalog_product CASCADE"]
verify:
  - name: nothing left to migrate
    manage: [migrate, --check, --noinput]
"""

# A step that fails after changing the copy: the rehearsal must exit 1, the real things stay.
FAILING_STEP = """\
name: break-then-fail
description: Change a file and the history, then fail.
steps:
  - name: edit a migration file
    shell: "printf '# edited by a rehearsal\\\\n' >> catalog/migrations/0001_initial.py"
  - name: forget catalog's history
    sql: "DELETE FROM django_migrations WHERE app = 'catalog'"
  - name: fail
    run: [sh, -c, "exit 7"]
"""

LONG_STEP = """\
name: long
description: One long step in the backend, on the copy.
steps:
  - name: forget catalog's history
    sql: "DELETE FROM django_migrations WHERE app = 'catalog'"
  - name: long step in the container
    run: [sh, -c, "echo started; exec sleep 120"]
"""


stack = stack_fixture(PROJECT, DB_PORT)


@pytest.fixture
def clean(stack: Path) -> Path:
    # A copy one failed test left behind must fail that test only, not every test after it.
    with psycopg.connect(**DB, autocommit=True) as conn:
        for name in _rehearsal_databases():
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    return clean_stack(stack, DB)


def _break_history() -> None:
    """customer_contact.0002 recorded, customer.0001_initial never run (test_fix_history's second world)."""
    for app in ("contenttypes", "auth", "admin", "sessions", "catalog"):
        manage(PROJECT, "migrate", app, "--noinput")
    manage(PROJECT, "migrate", "customer_contact", "0001", "--noinput")
    add_users(DB, 30)
    with psycopg.connect(**DB) as conn:
        conn.execute("INSERT INTO catalog_category (name) SELECT 'c' || i FROM generate_series(1, 20) AS i")
        conn.execute("INSERT INTO django_migrations (app, name, applied)"
                     " VALUES ('customer_contact', '0002_alter_customercontact_customer', now())")


def _real_state(stack: Path) -> dict:
    """Every real history row, every table's rows, every file of the project: what must not move."""
    with psycopg.connect(**DB) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        rows = {t: conn.execute(sql.SQL("SELECT t::text FROM {} t ORDER BY 1").format(sql.Identifier(t))).fetchall()
                for t in tables}
        history = conn.execute("SELECT id, app, name, applied::text FROM django_migrations ORDER BY id").fetchall()
    files = {str(p.relative_to(stack / "app")): p.read_bytes()
             for p in sorted((stack / "app").rglob("*")) if p.is_file()}
    return {"history": history, "rows": rows, "files": files}


def _rehearsal_databases() -> list[str]:
    with psycopg.connect(**DB) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE '%rehearsal%'")]


def _leftover_copies() -> str:
    code, output = service_container(PROJECT, "backend").exec_run(
        ["sh", "-c", "ls -d /tmp/runbook-rehearsal-* 2>/dev/null; true"])
    return output.decode().strip()


def _assert_untouched(stack: Path, before: dict, output: str) -> None:
    after = _real_state(stack)
    assert after["history"] == before["history"]
    assert after["rows"] == before["rows"]
    assert after["files"] == before["files"]
    assert _rehearsal_databases() == [], output
    assert _leftover_copies() == "", output


def test_rehearsal_of_fix_history_repairs_the_copy_and_leaves_everything_real(clean: Path,
                                                                              runbook_cli: list[str]) -> None:
    _break_history()
    before = _real_state(clean)

    proc = run_cli(runbook_cli, clean, "run", "fix-history", "--rehearse")  # destructive, yet no --yes needed
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "apply customer.0001_initial for real" in proc.stdout
    assert proc.stdout.rstrip().endswith("runbook run fix-history --yes")
    _assert_untouched(clean, before, out)

    report, markdown = report_of(clean, "fix-history")
    assert report["rehearsal"] is True
    assert report["status"] == "done" and report["exit_code"] == 0
    copy = report["rehearsed_on"]["database"]
    assert copy.startswith("shop_rehearsal_") and copy.endswith(", dropped")
    assert report["rehearsed_on"]["files"].startswith("/tmp/runbook-rehearsal-")
    assert report["rehearsed_on"]["files"].endswith("(a copy of /srv/app), deleted")
    assert report["rehearsed_on"]["backend_env"] == "DB_NAME"
    assert report["rehearsed_on"]["real_command"] == "runbook run fix-history --yes"
    assert any("history rows unchanged" in c for c in report["rehearsed_on"]["real_checked"])
    # The copy's history changed, the real one not: the report shows the copy's.
    assert ["customer", "0001_initial"] in report["history_after"]["django_migrations"]
    assert markdown.startswith("# ✅ REHEARSAL DONE: fix-history")
    assert "the real database and migration files were not touched" in markdown
    assert "runbook restore" not in markdown  # nothing real to undo

    # The real run still has everything to do, and does it.
    proc = run_cli(runbook_cli, clean, "run", "fix-history", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "apply customer.0001_initial for real" in proc.stdout
    with psycopg.connect(**DB) as conn:
        assert conn.execute("SELECT to_regclass('customer_customer')").fetchone()[0] == "customer_customer"
    manage(PROJECT, "migrate", "--check")
    assert before["rows"]["auth_user"] == _real_state(clean)["rows"]["auth_user"]


def test_rehearsal_whose_verify_fails_exits_3_and_leaves_everything_real(clean: Path,
                                                                         runbook_cli: list[str]) -> None:
    manage(PROJECT, "migrate", "--noinput")
    manage(PROJECT, "seed", "--rows", "200")
    (clean / "break.yml").write_text(FAILING_VERIFY)
    before = _real_state(clean)

    proc = run_cli(runbook_cli, clean, "run", "break.yml", "--rehearse")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    assert "the real run:" not in proc.stdout
    _assert_untouched(clean, before, out)
    report, markdown = report_of(clean, "break-then-check")
    assert report["rehearsal"] is True and report["status"] == "verify-failed"
    assert [s["status"] for s in report["steps"]] == ["ok", "ok", "ok", "ok"]
    assert "TRUNCATE TABLE" in report["steps"][3]["stdout"]  # it ran, on the copy
    assert report["checks"][0]["status"] == "failed"
    assert markdown.startswith("# ❌ REHEARSAL VERIFY FAILED: break-then-check")

    (clean / "fail.yml").write_text(FAILING_STEP)
    proc = run_cli(runbook_cli, clean, "run", "fail.yml", "--rehearse")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    _assert_untouched(clean, before, proc.stdout + proc.stderr)
    report, _ = report_of(clean, "break-then-fail")
    assert report["rehearsal"] is True and [s["status"] for s in report["steps"]] == ["ok", "ok", "failed"]


def test_ctrl_c_during_a_rehearsal_drops_the_copy_and_deletes_the_files(clean: Path,
                                                                         runbook_cli: list[str]) -> None:
    manage(PROJECT, "migrate", "--noinput")
    (clean / "long.yml").write_text(LONG_STEP)
    before = _real_state(clean)
    proc = start_cli(runbook_cli, clean, "run", "long.yml", "--rehearse")
    try:
        deadline = time.monotonic() + 120
        while sleepers(PROJECT, "sleep 120") < 1:
            assert time.monotonic() < deadline, "the long step never started in the container"
            time.sleep(0.2)
        assert len(_rehearsal_databases()) == 1 and _leftover_copies()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    _assert_untouched(clean, before, out + err)
    assert sleepers(PROJECT, "sleep 120") == 0
    report, _ = report_of(clean, "long")
    assert report["status"] == "interrupted" and report["rehearsal"] is True
    assert report["rehearsed_on"]["database"].endswith(", dropped")


def test_rehearse_refuses_dry_run_and_a_backend_it_cannot_point_at_a_copy(clean: Path,
                                                                         runbook_cli: list[str]) -> None:
    manage(PROJECT, "migrate", "--noinput")
    proc = run_cli(runbook_cli, clean, "run", "fix-history", "--rehearse", "--dry-run")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "runbook: error: --rehearse cannot be combined with --dry-run (a rehearsal changes nothing real, "
        "so drop one of them)"]

    # runbook.yml names a database no backend variable mentions: there is nothing to point at a copy.
    with psycopg.connect(**DB, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS other")
        conn.execute("CREATE DATABASE other")
    # A playbook that takes any state (fix-history would find nothing to do on this healthy stack first).
    (clean / "fail.yml").write_text(FAILING_STEP)
    (clean / "runbook.yml").write_text("database:\n  name: other\n")
    snapshots = sorted((clean / ".runbook" / "snapshots").glob("*"))
    try:
        proc = run_cli(runbook_cli, clean, "run", "fail.yml", "--rehearse")
    finally:
        (clean / "runbook.yml").unlink()
        with psycopg.connect(**DB, autocommit=True) as conn:
            conn.execute("DROP DATABASE other")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "runbook: error: cannot point the backend at a copy: no variable of its environment names database "
        "'other' (set backend.database_env in runbook.yml)"]
    assert sorted((clean / ".runbook" / "snapshots").glob("*")) == snapshots  # refused before the snapshot
    assert _rehearsal_databases() == []

    # A role that may not create databases cannot have a copy: environment not ready, and what to grant.
    with psycopg.connect(**DB, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS nocopy")
        conn.execute("CREATE ROLE nocopy LOGIN PASSWORD 'nocopy-secret'")
    (clean / "runbook.yml").write_text("database:\n  user: nocopy\n  password: nocopy-secret\n")
    try:
        proc = run_cli(runbook_cli, clean, "run", "fail.yml", "--rehearse")
    finally:
        (clean / "runbook.yml").unlink()
        with psycopg.connect(**DB, autocommit=True) as conn:
            conn.execute("DROP ROLE nocopy")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "runbook: error: role 'nocopy' may not create databases, so a rehearsal cannot make its copy of 'shop' "
        "(grant it: ALTER ROLE nocopy CREATEDB, or run without --rehearse)"]
    assert sorted((clean / ".runbook" / "snapshots").glob("*")) == snapshots


# --- the local target: the same rehearsal with a host temporary directory, no Docker -------------------------

def _local_state(project: Path, db: dict) -> dict:
    with psycopg.connect(**db) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        rows = {t: conn.execute(sql.SQL("SELECT t::text FROM {} t ORDER BY 1").format(sql.Identifier(t))).fetchall()
                for t in tables}
    files = {str(p.relative_to(project)): p.read_bytes() for p in sorted(project.rglob("*"))
             if p.is_file() and ".runbook" not in p.parts}
    return {"rows": rows, "files": files}


def test_local_rehearsal_runs_on_a_copy_in_a_host_temporary_directory(shop_project: Path, fresh_db: dict,
                                                                      runbook_cli: list[str]) -> None:
    write_local_config(shop_project, fresh_db, "SHOP_DB_PASSWORD", django_backend(fresh_db))
    for app in ("contenttypes", "auth", "admin", "sessions", "catalog"):
        local_manage(shop_project, fresh_db, "migrate", app, "--noinput")
    local_manage(shop_project, fresh_db, "migrate", "customer_contact", "0001", "--noinput")
    with psycopg.connect(**fresh_db) as conn:
        conn.execute("INSERT INTO catalog_category (name) SELECT 'c' || i FROM generate_series(1, 20) AS i")
        conn.execute("INSERT INTO django_migrations (app, name, applied)"
                     " VALUES ('customer_contact', '0002_alter_customercontact_customer', now())")
    before = _local_state(shop_project, fresh_db)
    env = {"SHOP_DB_PASSWORD": str(fresh_db["password"])}

    proc = run_cli(runbook_cli, shop_project, "run", "fix-history", "--rehearse", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "apply customer.0001_initial for real" in proc.stdout
    assert _local_state(shop_project, fresh_db) == before
    [path] = (shop_project / ".runbook" / "reports").glob("*-fix-history.json")
    report = json.loads(path.read_text())
    assert report["rehearsal"] is True and report["rehearsed_on"]["backend_env"] == "DB_NAME"
    copy_dir = report["rehearsed_on"]["files"].split(" ")[0]
    assert copy_dir.startswith(tempfile.gettempdir()) and not Path(copy_dir).exists()
    with psycopg.connect(**fresh_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s",
                            (f"{fresh_db['dbname']}_rehearsal_%",)).fetchone()[0] == 0

    proc = run_cli(runbook_cli, shop_project, "run", "fix-history", "--yes", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with psycopg.connect(**fresh_db) as conn:
        assert conn.execute("SELECT to_regclass('customer_customer')").fetchone()[0] == "customer_customer"
