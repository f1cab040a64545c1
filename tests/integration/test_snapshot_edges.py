"""Snapshot and restore at their edges, on a real Compose stack (project `rbsnapedge`, db on 127.0.0.1:25620).

A partitioned table, large objects, a restore that fails after the large objects, a restored state that
differs from its manifest, and a second run refused while the first holds the database lock. Each test
checks the database afterwards with its own queries, not runbook's.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
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
    sleepers,
    stack_fixture,
    start_cli,
    take_snapshot,
)

pytestmark = pytest.mark.integration

PROJECT = "rbsnapedge"
DB_PORT = 25620
DB = db_settings(DB_PORT)

PARTITIONED = """
CREATE TABLE measurement (id bigint NOT NULL, taken date NOT NULL, value numeric) PARTITION BY RANGE (taken);
CREATE TABLE measurement_2025 PARTITION OF measurement FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE measurement_2026 PARTITION OF measurement FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO measurement SELECT i, date '2025-06-01' + (i % 400), i * 1.5 FROM generate_series(1, 2000) i;
"""

LARGE_OBJECTS = """
CREATE TABLE document (id serial PRIMARY KEY, title text NOT NULL, body oid NOT NULL);
INSERT INTO document (title, body)
SELECT 'doc ' || i, lo_from_bytea(0, convert_to(repeat('page ' || i || ' ', 2000), 'UTF8'))
FROM generate_series(1, 5) i;
"""

# Fails every CREATE INDEX: pg_restore creates indexes in its post-data section, after the large objects.
FAIL_POST_DATA = """
CREATE SCHEMA testing;
CREATE FUNCTION testing.refuse_index() RETURNS event_trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'testing: no index may be created now'; END $$;
CREATE EVENT TRIGGER refuse_index ON ddl_command_start WHEN TAG IN ('CREATE INDEX')
EXECUTE FUNCTION testing.refuse_index();
"""


def execute(statements: str) -> None:
    with psycopg.connect(**DB, autocommit=True) as conn:
        conn.execute(statements)


def db_state() -> dict[str, object]:
    """Every public relation with its rows (sorted), the indexes, and the large objects' contents."""
    state: dict[str, object] = {}
    with psycopg.connect(**DB) as conn:
        relations = conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1").fetchall()
        state["relations"] = relations
        state["indexes"] = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1").fetchall()
        for name, _ in relations:
            state[name] = conn.execute(
                f'SELECT count(*), md5(string_agg(t::text, \',\' ORDER BY t::text)) FROM "{name}" t').fetchone()
        state["large objects"] = conn.execute(
            "SELECT m.oid, md5(lo_get(m.oid)) FROM pg_largeobject_metadata m ORDER BY 1").fetchall()
    return state


edge_stack = stack_fixture(PROJECT, DB_PORT, name="edge_stack")


@pytest.fixture(scope="module")
def seeded_once(edge_stack: Path) -> Path:
    """The database migrated and seeded once, then kept as a template: a copy takes a second."""
    manage(PROJECT, "migrate", "--noinput")
    manage(PROJECT, "seed", "--rows", "200")
    make_template(DB)
    return edge_stack


@pytest.fixture
def seeded(seeded_once: Path) -> Path:
    """A fresh copy of the migrated, seeded database (no event trigger, schema or large object of an earlier
    test: they were in the database dropped), the original project files, no artifacts."""
    reset_from_template(DB)
    reset_app(seeded_once)
    subprocess.run(["rm", "-rf", str(seeded_once / ".runbook"), str(seeded_once / "runbook.yml")], check=True)
    return seeded_once


def test_a_partitioned_table_round_trips(seeded: Path, runbook_cli: list[str]) -> None:
    execute(PARTITIONED)
    state = db_state()
    snapshot_id, output = take_snapshot(runbook_cli, seeded)
    manifest = json.loads((seeded / ".runbook" / "snapshots" / snapshot_id / "manifest.json").read_text())
    tables = manifest["database"]["tables"]
    # The rows are counted once, under the partitions that hold them.
    assert "measurement" not in tables
    assert tables["measurement_2025"]["rows"] + tables["measurement_2026"]["rows"] == 2000
    assert manifest["database"]["dumped_rows"] == sum(t["rows"] for t in tables.values())
    assert f"{manifest['database']['dumped_rows']:,} rows read back from the dump" in output

    execute("DELETE FROM measurement WHERE id % 3 = 0; UPDATE measurement SET value = 0 WHERE id < 50")
    assert db_state() != state
    proc = run_cli(runbook_cli, seeded, "restore", snapshot_id, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert db_state() == state


def test_large_objects_come_back_and_a_failed_restore_changes_nothing(seeded: Path, runbook_cli: list[str]) -> None:
    execute(LARGE_OBJECTS)
    state = db_state()
    assert len(state["large objects"]) == 5
    snapshot_id, _ = take_snapshot(runbook_cli, seeded)
    database = json.loads((seeded / ".runbook" / "snapshots" / snapshot_id / "manifest.json").read_text())["database"]
    # pg_restore wraps large objects in a transaction of its own: such a dump is hashed before it is restored.
    assert database["large_objects"] == 5 and database["transaction_blocks"] >= 1

    execute("SELECT lo_unlink(body) FROM document WHERE id > 3; DELETE FROM document WHERE id > 3;"
            "DELETE FROM customer_customer WHERE id % 2 = 0 AND id NOT IN "
            "(SELECT customer_id FROM customer_contact_customercontact)")
    damaged = db_state()
    assert damaged != state

    # The restore fails in its post-data section, after the large objects: it must all roll back.
    execute(FAIL_POST_DATA)
    try:
        proc = run_cli(runbook_cli, seeded, "restore", snapshot_id, "--yes")
    finally:
        execute("DROP EVENT TRIGGER IF EXISTS refuse_index; DROP SCHEMA IF EXISTS testing CASCADE")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("runbook: error:")]
    assert len(errors) == 1 and "the database was left as it was" in errors[0], proc.stderr
    assert db_state() == damaged

    proc = run_cli(runbook_cli, seeded, "restore", snapshot_id, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "database.dump, files.tar.gz, history.json match their sha256" in proc.stdout
    assert db_state() == state


# How manifest format 1 summed a table: md5 of each row's text, added up as two 64-bit halves.
FORMAT_1_CHECKSUM = """
SELECT md5(coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)::text || ':'
           || coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)::text)
FROM (SELECT md5(t::text) AS h FROM {} t) s
"""


def _snapshot_and_manifest(runbook_cli: list[str], stack: Path) -> tuple[str, Path, dict]:
    """Take a snapshot; return its id, its manifest's path, and the manifest for the test to edit."""
    snapshot_id, _ = take_snapshot(runbook_cli, stack)
    path = stack / ".runbook" / "snapshots" / snapshot_id / "manifest.json"
    return snapshot_id, path, json.loads(path.read_text())


def test_a_snapshot_of_manifest_format_1_still_restores_and_checks(seeded: Path, runbook_cli: list[str]) -> None:
    execute(PARTITIONED)
    state = db_state()
    snapshot_id, path, manifest = _snapshot_and_manifest(runbook_cli, seeded)
    # As runbook wrote it before format 2: md5 checksums, nothing said of the dump's own transactions.
    manifest["format"] = 1
    for key in ("compression", "large_objects", "transaction_blocks"):
        del manifest["database"][key]
    with psycopg.connect(**DB) as conn:
        for key, value in {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "IntervalStyle": "postgres",
                           "extra_float_digits": "3", "bytea_output": "hex"}.items():
            conn.execute("SELECT set_config(%s, %s, false)", (key, value))
        for name, table in manifest["database"]["tables"].items():
            [table["checksum"]] = conn.execute(
                sql.SQL(FORMAT_1_CHECKSUM).format(sql.Identifier(name))).fetchone()
    path.write_text(json.dumps(manifest))

    execute("DELETE FROM measurement WHERE id % 3 = 0; DELETE FROM customer_customer WHERE id % 2 = 0 AND id NOT IN "
            "(SELECT customer_id FROM customer_contact_customercontact)")
    proc = run_cli(runbook_cli, seeded, "restore", snapshot_id, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "database.dump, files.tar.gz, history.json match their sha256" in proc.stdout  # hashed first
    tables = len(manifest["database"]["tables"])
    assert f"checked: {tables} tables, " in proc.stdout and f"({tables} checksummed)" in proc.stdout
    assert db_state() == state


def test_a_table_without_checksum_is_counted_as_the_restore_loads_it(seeded: Path, runbook_cli: list[str]) -> None:
    execute(PARTITIONED)
    state = db_state()
    snapshot_id, path, manifest = _snapshot_and_manifest(runbook_cli, seeded)
    tables = manifest["database"]["tables"]
    # As a table over 512 MB is snapshotted: counted, no checksum. The check then reads the rows the server
    # inserted in the restore's own transaction instead of counting the table again.
    tables["measurement_2025"]["checksum"] = None
    path.write_text(json.dumps(manifest))
    execute("DELETE FROM measurement WHERE id % 3 = 0")
    proc = run_cli(runbook_cli, seeded, "restore", snapshot_id, "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (f"({len(tables) - 1} checksummed, 1 counted by the server as the restore loaded them)"
            in proc.stdout), proc.stdout
    assert db_state() == state

    tables["measurement_2025"]["rows"] += 3
    path.write_text(json.dumps(manifest))
    proc = run_cli(runbook_cli, seeded, "restore", snapshot_id, "--yes")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    rows = tables["measurement_2025"]["rows"]
    assert f"- measurement_2025: {rows - 3} rows, the snapshot had {rows}" in proc.stderr


def test_a_restore_that_differs_from_its_manifest_exits_3_and_lists_the_differences(
        seeded: Path, runbook_cli: list[str]) -> None:
    snapshot_id, _ = take_snapshot(runbook_cli, seeded)
    path = seeded / ".runbook" / "snapshots" / snapshot_id / "manifest.json"
    manifest = json.loads(path.read_text())
    tables = manifest["database"]["tables"]
    real = tables["catalog_product"]["rows"]
    # As if the manifest had been written from other data than the dump holds.
    tables["catalog_product"]["rows"] = real + 7
    tables["customer_customer"]["checksum"] = "0" * 32
    manifest["files"]["list"][0]["sha256"] = "f" * 64
    path.write_text(json.dumps(manifest))

    proc = run_cli(runbook_cli, seeded, "restore", snapshot_id, "--yes")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("runbook: error:")]
    assert len(errors) == 1 and "differs from its manifest: 3 problem(s)" in errors[0], proc.stderr
    listed = [line.strip() for line in proc.stderr.splitlines() if line.strip().startswith("- ")]
    assert listed == [f"- catalog_product: {real} rows, the snapshot had {real + 7}",
                      "- customer_customer: same row count, different contents",
                      f"- migration files differ: {manifest['files']['list'][0]['path']}"]
    assert "Traceback" not in proc.stderr


LONG_PLAYBOOK = """
name: {name}
description: One long step inside the backend container.
snapshot: {{database: false, history: true}}
steps:
  - name: long step in the container
    run: [sh, -c, "exec sleep 121"]
"""


def test_a_second_run_names_the_holder_of_the_database_lock(seeded: Path, runbook_cli: list[str]) -> None:
    name = "a-playbook-with-a-very-long-name-that-fills-the-application-name"
    (seeded / "long.yml").write_text(LONG_PLAYBOOK.format(name=name))
    first = start_cli(runbook_cli, seeded, "run", "long.yml", "--yes")
    try:
        deadline = time.monotonic() + 60
        while sleepers(PROJECT, "sleep 121") < 1:
            assert time.monotonic() < deadline, "the long step never started"
            time.sleep(0.2)
        # Another artifacts dir: the host lock file is not shared, so the database lock is what refuses.
        (seeded / "runbook.yml").write_text("artifacts: .runbook-second\n")
        second = run_cli(runbook_cli, seeded, "run", "long.yml", "--yes")
    finally:
        (seeded / "runbook.yml").unlink(missing_ok=True)
        first.terminate()
        first.communicate(timeout=60)
    assert second.returncode == 5, second.stdout + second.stderr
    [error] = [line for line in second.stderr.splitlines() if line.startswith("runbook: error:")]
    host = socket.gethostname()
    assert f"holds the database lock on shop: runbook pid {first.pid} on {host} since " in error
    assert re.search(r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ a-playbook", error), error
    assert re.search(r"\(client 127\.0\.0\.1, connected at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)", error), error
