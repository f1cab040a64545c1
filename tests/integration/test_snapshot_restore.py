"""Snapshot before, verify after, restore on demand: on a real Compose stack with a populated database.

The stack is compose.test.yml in a directory named `rbsnap` (so the Compose project is `rbsnap`) with the
db on 127.0.0.1:25462. Every test starts from the same seeded database (3000 customers, contacts and
products, plus two extra tables and a view) and compares the whole database before and after, with its
own queries: every relation, every column, every index, every sequence, and every table's row count and
md5 of its sorted rows. Those queries are the tests' own, not runbook's, so they check runbook's checks.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from stack import (
    db_settings,
    make_template,
    manage,
    reset_app,
    reset_from_template,
    run_cli,
    service_container,
    snapshot_ids,
    stack_fixture,
    take_snapshot,
)

pytestmark = pytest.mark.integration

PROJECT = "rbsnap"
DB_PORT = 25462
DB = db_settings(DB_PORT)

EXTRA_TABLES = """
CREATE TABLE extra_event (
    id bigserial PRIMARY KEY,
    product_id bigint REFERENCES catalog_product(id),
    kind text NOT NULL,
    payload jsonb,
    amount numeric(12, 2),
    happened timestamptz NOT NULL,
    blob bytea
);
INSERT INTO extra_event (product_id, kind, payload, amount, happened, blob)
SELECT p.id, CASE WHEN g = 1 THEN 'view' ELSE 'buy' END,
       jsonb_build_object('n', p.id * g, 'tags', jsonb_build_array('a', g)),
       (p.id * 37 % 10000) / 100.0,
       timestamptz '2026-01-01 00:00:00+00' + (p.id * g) * interval '1 minute',
       decode(md5(p.sku || g), 'hex')
FROM catalog_product p, generate_series(1, 2) g;
CREATE TABLE extra_tag (id serial PRIMARY KEY, name text UNIQUE NOT NULL, note text);
INSERT INTO extra_tag (name, note)
SELECT 'tag-' || i, CASE WHEN i % 7 = 0 THEN NULL ELSE repeat('x', i % 50) END FROM generate_series(1, 2500) i;
CREATE VIEW extra_expensive AS SELECT id, sku, price FROM catalog_product WHERE price > 50;
"""

# Everything a user could do to the database between a snapshot and a restore.
MUTATIONS = """
UPDATE catalog_product SET price = price + 1 WHERE id % 10 = 0;
DELETE FROM extra_event WHERE id % 3 = 0;
DROP TABLE extra_tag;
ALTER TABLE customer_customer ADD COLUMN vip boolean DEFAULT false;
CREATE TABLE after_snapshot (id serial PRIMARY KEY, category_id bigint REFERENCES catalog_category(id));
INSERT INTO after_snapshot (category_id) SELECT id FROM catalog_category;
CREATE VIEW after_view AS SELECT * FROM extra_event WHERE kind = 'buy';
DELETE FROM django_migrations WHERE app = 'customer_contact';
INSERT INTO catalog_category (name) VALUES ('Added later');
"""

BREAK_THEN_FAIL = """\
name: break-then-fail
description: Delete rows and history, add a migration file, then {how}.
framework: django
snapshot:
  database: true
  history: true
steps:
  - name: delete every other event
    sql: DELETE FROM extra_event WHERE id % 2 = 0
  - name: forget the catalog history
    sql: DELETE FROM django_migrations WHERE app = 'catalog'
  - name: a new migration file
    shell: "echo '# scratch' > catalog/migrations/0003_scratch.py"
{more_steps}verify:
  - name: every event is still there
    sql: SELECT count(*) FROM extra_event
    expect:
      scalar: 6000
"""


def db_state() -> dict[str, object]:
    """The whole public schema as data: relations, columns, indexes, sequences, and every table's rows."""
    state: dict[str, object] = {}
    with psycopg.connect(**DB) as conn:
        conn.execute("SET TimeZone TO 'UTC'")
        relations = conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S') ORDER BY 1").fetchall()
        state["relations"] = relations
        state["columns"] = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY 1, 2").fetchall()
        state["indexes"] = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1").fetchall()
        for name, kind in relations:
            ident = sql.Identifier(name)
            if kind in ("r", "p"):
                state[name] = conn.execute(sql.SQL(
                    "SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {} t").format(ident)
                ).fetchone()
            elif kind == "S":
                state[name] = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(ident)).fetchone()
    return state


def files_state(directory: Path) -> dict[str, str]:
    app = directory / "app"
    return {str(p.relative_to(app)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(app.glob("**/migrations/*.py"))}


def execute(statements: str) -> None:
    with psycopg.connect(**DB, autocommit=True) as conn:
        conn.execute(statements)


def mutate_files(directory: Path) -> None:
    app = directory / "app"
    (app / "catalog" / "migrations" / "0003_after.py").write_text("# made after the snapshot\n")
    with (app / "customer" / "migrations" / "0001_initial.py").open("a") as fh:
        fh.write("# edited after the snapshot\n")
    (app / "catalog" / "migrations" / "0002_product_description.py").unlink()


snap_stack = stack_fixture(PROJECT, DB_PORT, name="snap_stack")


@pytest.fixture(scope="module")
def seeded_once(snap_stack: Path) -> Path:
    """The database migrated and seeded once, then kept as a template: a copy takes a second, this a minute."""
    execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    manage(PROJECT, "migrate", "--noinput")
    manage(PROJECT, "seed", "--rows", "3000")
    execute(EXTRA_TABLES)
    make_template(DB)
    return snap_stack


@pytest.fixture
def seeded(seeded_once: Path) -> Path:
    """The stack with a freshly migrated and seeded database, pristine migration files, no artifacts."""
    reset_from_template(DB)
    reset_app(seeded_once)
    subprocess.run(["rm", "-rf", str(seeded_once / ".runbook")], check=True)
    return seeded_once


def test_snapshot_then_restore_puts_everything_back(seeded: Path, runbook_cli: list[str]) -> None:
    state, files = db_state(), files_state(seeded)
    snapshot_id, _ = take_snapshot(runbook_cli, seeded)

    directory = seeded / ".runbook" / "snapshots" / snapshot_id
    assert directory.stat().st_mode & 0o777 == 0o700
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["playbook"] == "manual" and manifest["target"] == "compose"
    assert {p["file"] for p in manifest["parts"]} == {"database.dump", "history.json", "files.tar.gz"}
    for part in [*manifest["parts"], {"file": "manifest.json"}]:
        path = directory / part["file"]
        assert path.stat().st_mode & 0o777 == 0o600, part
        if "sha256" in part:
            assert hashlib.sha256(path.read_bytes()).hexdigest() == part["sha256"]
            assert path.stat().st_size == part["size"]
    assert (directory / "database.dump").read_bytes()[:5] == b"PGDMP"
    tables = manifest["database"]["tables"]
    assert {name: t["rows"] for name, t in tables.items()} == {
        name: state[name][0] for name, kind in state["relations"] if kind == "r"}
    assert tables["extra_event"]["rows"] == 6000 and tables["catalog_product"]["rows"] == 3000
    assert all(t["checksum"] for t in tables.values())
    assert manifest["database"]["consistent"] is True
    history = json.loads((directory / "history.json").read_text())
    with psycopg.connect(**DB) as conn:
        rows = [list(r) for r in conn.execute("SELECT app, name FROM django_migrations ORDER BY app, name")]
    assert history["django_migrations"] == rows
    with tarfile.open(directory / "files.tar.gz") as tar:
        archived = sorted(m.name.removeprefix("./") for m in tar if m.isfile())
    assert archived == sorted(files)

    execute(MUTATIONS)
    mutate_files(seeded)
    assert db_state() != state and files_state(seeded) != files

    proc = run_cli(runbook_cli, seeded, "restore", snapshot_id, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"the data is back as of snapshot {snapshot_id}" in proc.stdout
    # 0002 comes back, 0001 loses its edit, 0003 (made after the snapshot) goes.
    assert "2 written back, 1 made after the snapshot deleted" in proc.stdout
    assert db_state() == state
    assert files_state(seeded) == files


@pytest.mark.parametrize("how", ["verify", "step"])
def test_run_with_rollback_on_failure_restores_at_once(seeded: Path, runbook_cli: list[str], tmp_path: Path,
                                                       how: str) -> None:
    state, files = db_state(), files_state(seeded)
    failing_step = "  - name: a step that fails\n    sql: SELECT 1 / 0\n" if how == "step" else ""
    playbook = tmp_path / "break-then-fail.yml"
    playbook.write_text(BREAK_THEN_FAIL.format(how=f"fail ({how})", more_steps=failing_step))

    proc = run_cli(runbook_cli, seeded, "run", str(playbook), "--yes", "--rollback-on-failure")
    expected_exit = 3 if how == "verify" else 1
    assert proc.returncode == expected_exit, proc.stdout + proc.stderr
    assert "== rollback" in proc.stdout
    assert "rolled back: the data is back as of snapshot" in proc.stdout
    assert db_state() == state
    assert files_state(seeded) == files

    [report] = (seeded / ".runbook" / "reports").glob("*-break-then-fail.json")
    record = json.loads(report.read_text())
    assert record["exit_code"] == expected_exit
    assert record["rollback"]["status"] == "restored"
    assert record["rollback"]["snapshot"] == record["snapshot"]["id"]
    assert any(note.startswith("rolled back:") for note in record["notes"])
    assert record["files"] == []  # the rollback put the files back too
    markdown = report.with_suffix(".md").read_text()
    assert f"the data is back as of snapshot {record['snapshot']['id']}" in markdown.split("## Run")[0]


def test_run_without_the_flag_leaves_the_damage_and_says_how_to_undo(seeded: Path, runbook_cli: list[str],
                                                                     tmp_path: Path) -> None:
    playbook = tmp_path / "break-then-fail.yml"
    playbook.write_text(BREAK_THEN_FAIL.format(how="fail", more_steps=""))
    proc = run_cli(runbook_cli, seeded, "run", str(playbook), "--yes")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "== rollback" not in proc.stdout and "undo: runbook restore" in proc.stdout
    with psycopg.connect(**DB) as conn:
        assert conn.execute("SELECT count(*) FROM extra_event").fetchone()[0] == 3000
    # A file made by a plain shell step is in the report as a diff too.
    [report] = (seeded / ".runbook" / "reports").glob("*-break-then-fail.json")
    assert json.loads(report.read_text())["files"] == [{
        "path": "catalog/migrations/0003_scratch.py", "change": "created", "added": 1, "removed": 0,
        "diff": "--- /dev/null\n+++ b/catalog/migrations/0003_scratch.py\n@@ -0,0 +1 @@\n+# scratch\n", "note": ""}]
    assert "<summary>catalog/migrations/0003_scratch.py: created (+1 -0)</summary>" in report.with_suffix(
        ".md").read_text()


def test_a_damaged_snapshot_is_refused_before_anything_changes(seeded: Path, runbook_cli: list[str]) -> None:
    snapshot_id, _ = take_snapshot(runbook_cli, seeded)
    dump = seeded / ".runbook" / "snapshots" / snapshot_id / "database.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))
    execute(MUTATIONS)
    mutate_files(seeded)
    state, files = db_state(), files_state(seeded)

    proc = run_cli(runbook_cli, seeded, "restore", snapshot_id, "--yes")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"snapshot {snapshot_id} is damaged: database.dump sha256 differs" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert db_state() == state
    assert files_state(seeded) == files


def test_a_dump_damaged_where_pg_restore_cannot_tell_is_refused_by_its_sha256(seeded: Path,
                                                                            runbook_cli: list[str]) -> None:
    snapshot_id, _ = take_snapshot(runbook_cli, seeded)
    dump = seeded / ".runbook" / "snapshots" / snapshot_id / "database.dump"
    data = dump.read_bytes()
    # The server's version in the archive's header: pg_restore only prints it, so it reads the file whole.
    at = data.index(b"(Debian ")
    dump.write_bytes(data[:at] + b"(Debiaq " + data[at + 8:])
    execute(MUTATIONS)
    mutate_files(seeded)
    state, files = db_state(), files_state(seeded)

    proc = run_cli(runbook_cli, seeded, "restore", snapshot_id, "--yes")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # No pass over the dump before the restore: the restore read it, and would not commit.
    assert "database.dump's is checked as it is read" in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("runbook: error:")]
    assert errors == [f"runbook: error: snapshot {snapshot_id} is damaged: database.dump sha256 differs "
                      "(the database was left as it was)"], proc.stderr
    assert db_state() == state
    assert files_state(seeded) == files


def test_restore_without_yes_and_no_terminal_is_refused(seeded: Path, runbook_cli: list[str]) -> None:
    snapshot_id, _ = take_snapshot(runbook_cli, seeded)
    execute("DELETE FROM extra_event WHERE id > 100")
    state = db_state()
    proc = run_cli(runbook_cli, seeded, "restore", snapshot_id)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pass --yes" in proc.stderr
    assert db_state() == state

    unknown = run_cli(runbook_cli, seeded, "restore", "20000101T000000000000Z-nothing", "--yes")
    assert unknown.returncode == 2 and "no snapshot" in unknown.stderr


def test_restore_waits_for_no_run_it_takes_the_run_lock(seeded: Path, runbook_cli: list[str]) -> None:
    from runbook.artifacts.lock import RunLock

    snapshot_id, _ = take_snapshot(runbook_cli, seeded)
    execute("DELETE FROM extra_event WHERE id > 100")
    state = db_state()
    with RunLock(seeded / ".runbook", "a run in progress"):
        proc = run_cli(runbook_cli, seeded, "restore", snapshot_id, "--yes")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert "a run in progress" in proc.stderr
    assert db_state() == state


def test_snapshots_lists_every_snapshot(seeded: Path, runbook_cli: list[str], tmp_path: Path) -> None:
    manual, _ = take_snapshot(runbook_cli, seeded)
    playbook = tmp_path / "break-then-fail.yml"
    playbook.write_text(BREAK_THEN_FAIL.format(how="fail", more_steps=""))
    assert run_cli(runbook_cli, seeded, "run", str(playbook), "--yes").returncode == 3
    proc = run_cli(runbook_cli, seeded, "snapshots")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["id", "time", "playbook", "size"]
    assert len(lines) == 3
    assert lines[1].split()[0] == manual and lines[1].split()[2] == "manual"
    assert lines[2].split()[0].endswith("-break-then-fail") and lines[2].split()[2] == "break-then-fail"
    assert lines[1].split()[-1] in ("KiB", "MiB")


# Fake pg_dumps put first on the db service's PATH (/opt/venv/bin): each breaks the snapshot differently.
BROKEN_DUMPS = {
    "fails": ("echo 'pg_dump: error: simulated failure' >&2; exit 1", "pg_dump exited 1: pg_dump: error: simulated"),
    "not-a-dump": ("echo 'hello'", "database.dump is not a pg_dump custom-format archive"),
    "cut-short": ('/usr/lib/postgresql/15/bin/pg_dump "$@" | head -c 60000', "reading all of database.dump back"),
    # One bit flipped half way, in a table's compressed rows: the pg_restore reading the stream stops there.
    # (Killed by SIGPIPE when it does, as pg_dump itself would be.)
    "corrupted": ('/usr/lib/postgresql/15/bin/pg_dump "$@" | python3 -c "import signal, sys; '
                  'signal.signal(signal.SIGPIPE, signal.SIG_DFL); d = bytearray(sys.stdin.buffer.read()); '
                  'd[len(d) // 2] ^= 1; sys.stdout.buffer.write(d)"',
                  "reading all of database.dump back with pg_restore exited 1: pg_restore: error: could not "
                  "uncompress data"),
    # A whole, readable dump of other data (here a copy missing rows): only counting its rows shows it.
    "other-rows": ("exec /usr/lib/postgresql/15/bin/pg_dump --format=custom --no-password --dbname=shop_copy",
                   "database.dump holds 10 rows of table extra_tag, the database had 2,500"),
}


@pytest.mark.parametrize("broken", sorted(BROKEN_DUMPS))
def test_a_failed_snapshot_runs_no_step(seeded: Path, runbook_cli: list[str], tmp_path: Path, broken: str) -> None:
    script, expected = BROKEN_DUMPS[broken]
    playbook = tmp_path / "break-then-fail.yml"
    playbook.write_text(BREAK_THEN_FAIL.format(how="fail", more_steps=""))
    state, files = db_state(), files_state(seeded)
    if broken == "other-rows":
        execute("CREATE DATABASE shop_copy TEMPLATE shop")
        with psycopg.connect(**{**DB, "dbname": "shop_copy"}, autocommit=True) as conn:
            conn.execute("DELETE FROM extra_tag WHERE id > 10")
    db = service_container(PROJECT, "db")
    fake = f"#!/bin/sh\n{script}\n"
    assert db.exec_run(["sh", "-c", 'printf "%s" "$1" > /opt/venv/bin/pg_dump && chmod +x /opt/venv/bin/pg_dump',
                        "install", fake]).exit_code == 0
    try:
        proc = run_cli(runbook_cli, seeded, "run", str(playbook), "--yes", "--rollback-on-failure")
    finally:
        db.exec_run(["rm", "-f", "/opt/venv/bin/pg_dump"])
        execute("DROP DATABASE IF EXISTS shop_copy")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("runbook: error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert db_state() == state and files_state(seeded) == files
    assert snapshot_ids(seeded) == []  # no half-written snapshot left behind
    [report] = (seeded / ".runbook" / "reports").glob("*-break-then-fail.json")
    assert {s["status"] for s in json.loads(report.read_text())["steps"]} == {"not-run"}


def test_peak_memory_stays_flat_while_dumping_a_big_table(seeded: Path, runbook_cli: list[str]) -> None:
    # 1 KiB of incompressible bytes per row (16 SHA-512 digests): the dump is well over 100 MB. Digests
    # concatenated in the row take seconds; 64 md5s a row aggregated over 9.6 million rows took over a minute.
    digests = " || ".join(f"sha512((i::text || '-{j}')::bytea)" for j in range(16))
    execute(f"CREATE TABLE big_blob AS SELECT i AS id, {digests} AS data FROM generate_series(1, 150000) i")
    try:
        probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:]);"
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(p.returncode)")
        proc = run_cli([sys.executable, "-c", probe, *runbook_cli], seeded, "snapshot")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        peak_kib = int(proc.stdout.strip().splitlines()[-1])
        [snapshot_id] = snapshot_ids(seeded)
        dump = seeded / ".runbook" / "snapshots" / snapshot_id / "database.dump"
        assert dump.stat().st_size > 150 * 1024 * 1024
        assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB while writing a {dump.stat().st_size} byte dump"
    finally:
        execute("DROP TABLE IF EXISTS big_blob")
        subprocess.run(["rm", "-rf", str(seeded / ".runbook")], check=True)
