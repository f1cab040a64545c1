"""When no network path reaches PostgreSQL, SQL runs through psql inside the db container.

The db service here has `network_mode: none`: nothing on the host can connect to it, yet a playbook's SQL
steps, the history rows and the report all work, and the report says which path was used.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stack import isolated_stack, run_cli, service_container

from runbook.database.postgres import ADVISORY_LOCK
from runbook.database.psql import compose_client_side, parse_csv_output

pytestmark = pytest.mark.integration

PLAYBOOK = """
name: psql-path
description: SQL with parameters and identifiers over psql.
snapshot: {database: false, history: true}
steps:
  - name: create a table with an awkward name
    sql: CREATE TABLE {table} (id int primary key, note text)
    identifiers: {table: "{{ table }}"}
  - name: insert a value that needs quoting
    sql: INSERT INTO {table} VALUES (1, %(note)s), (2, NULL)
    params: {note: "{{ note }}"}
    identifiers: {table: "{{ table }}"}
  - name: read it back
    sql: SELECT id, note FROM {table} ORDER BY id
    identifiers: {table: "{{ table }}"}
    keep: rows
    expect:
      rows: [[1, "it's; DROP TABLE x --"], [2, null]]
  - name: count in SQL without parameters keeps %%
    sql: SELECT 7 % 4
    expect: {scalar: 3}
verify:
  - name: the kept rows are visible to later checks
    action: assert
    with: {that: "{{ kept.rows | length == 2 }}"}
variables:
  table: {default: "odd \\"name\\""}
  note: {default: "it's; DROP TABLE x --"}
"""


def test_client_side_binding_is_quoted() -> None:
    text = compose_client_side("SELECT %(v)s FROM {t}", {"v": "a'b"}, {"t": 'x"y'})
    assert text == "SELECT 'a''b' FROM \"x\"\"y\""
    assert parse_csv_output('id,note\n1,"a,b"\n2,\\N\n') == (["id", "note"], [[1, "a,b"], [2, None]], "SELECT 2")


@pytest.fixture(scope="module")
def psql_stack(tmp_path_factory) -> Iterator[Path]:
    with isolated_stack(tmp_path_factory.mktemp("stacks") / "rbpsql", {"psql-path.yml": PLAYBOOK}) as directory:
        yield directory


def test_sql_steps_run_through_psql_when_no_network_path(psql_stack: Path, runbook_cli: list[str]) -> None:
    proc = run_cli(runbook_cli, psql_stack, "run", "psql-path.yml", "--yes", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [report] = (psql_stack / ".runbook" / "reports").glob("*-psql-path.json")
    record = json.loads(report.read_text())
    assert record["target"]["database_path"] == "psql-in-container"
    assert any("through psql" in note for note in record["notes"])
    assert [s["status"] for s in record["steps"]] == ["ok"] * 4
    assert "runbook-secret" not in report.read_text()


def test_a_run_holding_the_lock_of_another_database_does_not_hold_up_this_one(psql_stack: Path,
                                                                              runbook_cli: list[str]) -> None:
    # Advisory locks belong to one database: runbook's own, held on `postgres` of the same server by a session
    # that stays for a minute, is another project's run, not this one's.
    db = service_container("rbpsql", "db")
    holder = f"SELECT pg_advisory_lock({ADVISORY_LOCK[0]}, {ADVISORY_LOCK[1]}); SELECT pg_sleep(60)"
    db.exec_run(["psql", "-U", "runbook", "-d", "postgres", "-c", holder],
                detach=True, environment={"PGAPPNAME": "another project's run"})
    try:
        deadline = time.monotonic() + 30
        while db.exec_run(["psql", "-U", "runbook", "-d", "postgres", "-tAc",
                           "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
                           "(SELECT oid FROM pg_database WHERE datname = 'postgres')"]).output.strip() != b"1":
            assert time.monotonic() < deadline, "the other database's session never took its lock"
            time.sleep(0.2)
        proc = run_cli(runbook_cli, psql_stack, "run", "psql-path.yml", "--yes", "--var", "table=second",
                       timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        db.exec_run(["psql", "-U", "runbook", "-d", "postgres", "-c",
                     "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                     "'another project''s run'"])
