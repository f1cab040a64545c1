"""When no network path reaches PostgreSQL, SQL runs through psql inside the db container.

The db service here has `network_mode: none`: nothing on the host can connect to it, yet a playbook's SQL
steps, the history rows and the report all work, and the report says which path was used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml

from runbook.database.psql import compose_client_side, parse_csv_output

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

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
def isolated_stack(tmp_path_factory) -> Iterator[Path]:
    if os.environ.get("RUNBOOK_SKIP_DOCKER") == "1":
        pytest.skip("RUNBOOK_SKIP_DOCKER=1")
    try:
        docker.from_env().ping()
    except Exception as exc:
        pytest.fail(f"Docker is not reachable ({exc}); run scripts/install-docker.sh")
    directory = tmp_path_factory.mktemp("stacks") / "rbpsql"
    directory.mkdir()
    spec = yaml.safe_load((REPO / "compose.test.yml").read_text())
    spec["services"]["db"]["network_mode"] = "none"
    spec["services"]["db"]["environment"]["PGPORT"] = "5432"
    del spec["services"]["db"]["healthcheck"]
    spec["services"]["backend"]["volumes"] = []
    (directory / "docker-compose.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (directory / "psql-path.yml").write_text(PLAYBOOK)
    compose = ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]
    up = subprocess.run([*compose, "up", "-d"], cwd=directory, capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        pytest.fail(up.stderr)
    db = docker.from_env().containers.list(filters={"label": ["com.docker.compose.project=rbpsql",
                                                              "com.docker.compose.service=db"]})[0]
    for _ in range(120):
        # First start answers on its socket while it initialises, then restarts: wait for the real server.
        if (b"starting postgres on" in db.logs()
                and db.exec_run(["pg_isready", "-q", "-U", "runbook", "-d", "shop"]).exit_code == 0):
            break
        time.sleep(0.5)
    else:
        subprocess.run([*compose, "down", "-v"], cwd=directory, capture_output=True, timeout=300)
        pytest.fail("the db service of the rbpsql stack never became ready (pg_isready failed for 60 s)")
    try:
        yield directory
    finally:
        subprocess.run([*compose, "down", "-v"], cwd=directory, capture_output=True, timeout=300)


def test_sql_steps_run_through_psql_when_no_network_path(isolated_stack: Path, runbook_cli: list[str]) -> None:
    proc = subprocess.run([*runbook_cli, "run", "psql-path.yml", "--yes"], cwd=isolated_stack,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
                          env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [report] = (isolated_stack / ".runbook" / "reports").glob("*-psql-path.json")
    record = json.loads(report.read_text())
    assert record["target"]["database_path"] == "psql-in-container"
    assert any("through psql" in note for note in record["notes"])
    assert [s["status"] for s in record["steps"]] == ["ok"] * 4
    assert "runbook-secret" not in report.read_text()
