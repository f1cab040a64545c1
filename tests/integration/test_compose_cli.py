"""The compose target through the installed CLI: every error case of the issue, warnings, timeouts, fallbacks.

A stack of its own (project `rbcli`, db on 127.0.0.1:25630). Its db service runs PostgreSQL as a child of
an idle PID 1, so a test can stop or restart the server while the container keeps running.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import psycopg
import pytest
import yaml
from stack import (
    compose_command,
    db_settings,
    manage,
    report_of,
    require_docker,
    run_cli,
    service_container,
    start_cli,
    wait_for_db,
    wait_for_stack,
    write_stack,
)

pytestmark = pytest.mark.integration

PROJECT = "rbcli"
PORT = 25630
CLOSED_PORT = 25639  # nothing listens here
DB = db_settings(PORT)
POSTGRES = ["postgres-entrypoint", "-c", "fsync=off", "-c", "synchronous_commit=off"]

TRIVIAL = """
name: trivial
description: One harmless step in the backend.
snapshot: {database: false, history: false}
steps:
  - name: say where it runs
    run: [sh, -c, 'echo "in=${POSTGRES_DB:-backend}"']
"""

LONG = """
name: long
description: One long step, for killing its container under it.
snapshot: {database: false, history: false}
steps:
  - name: long step
    run: [sh, -c, "echo started; exec sleep 61"]
"""

SQL_TIMEOUT = """
name: sql-timeout
description: A SQL step slower than its timeout.
snapshot: {database: false, history: false}
steps:
  - name: sleep in SQL
    sql: SELECT pg_sleep(600)
    timeout: 1
"""

SQL_STEPS = """
name: sql-steps
description: SQL steps, whichever path reaches the server.
snapshot: {database: false, history: true}
steps:
  - name: make a table
    sql: CREATE TABLE IF NOT EXISTS fallback_probe (id int)
  - name: count it
    sql: SELECT count(*) FROM fallback_probe
    expect: {scalar: 0}
"""

REGENERATE = """
name: regenerate
description: Regenerate one app's migration files in the backend.
framework: django
snapshot: {database: false, history: false}
steps:
  - name: regenerate catalog
    action: django.regenerate-migrations
    with: {apps: [catalog]}
"""


def _compose(directory: Path, *args: str) -> None:
    done = subprocess.run([*compose_command(), *args], cwd=directory, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"docker-compose {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="module")
def cli_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_docker()
    directory = tmp_path_factory.mktemp("stacks") / PROJECT
    directory.mkdir()
    write_stack(directory, PORT)
    path = directory / "docker-compose.yml"
    spec = yaml.safe_load(path.read_text())
    spec["services"]["db"]["command"] = ["sh", "-c", " ".join(POSTGRES) + " & exec sleep infinity"]
    spec["services"]["db"]["stop_signal"] = "SIGKILL"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    for name, text in {"trivial.yml": TRIVIAL, "long.yml": LONG, "sql-timeout.yml": SQL_TIMEOUT,
                       "sql-steps.yml": SQL_STEPS, "regenerate.yml": REGENERATE}.items():
        (directory / name).write_text(text)
    _compose(directory, "down", "-v")  # leftovers of an interrupted run
    _compose(directory, "up", "-d")
    try:
        wait_for_stack(directory, DB)
        yield directory
    finally:
        subprocess.run([*compose_command(), "down", "-v"], cwd=directory, capture_output=True, timeout=300)


@pytest.fixture
def stack(cli_stack: Path) -> Iterator[Path]:
    """The stack with no runbook.yml and no artifacts; whatever a test wrote there is removed after it."""
    subprocess.run(["rm", "-rf", str(cli_stack / ".runbook")], check=True)
    yield cli_stack
    (cli_stack / "runbook.yml").unlink(missing_ok=True)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one `runbook: error:` line of a failed run; no traceback anywhere."""
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("runbook:")]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("runbook: error: ")
    return lines[0].removeprefix("runbook: error: ")


def container_names(service: str) -> list[str]:
    labels = [f"com.docker.compose.project={PROJECT}", f"com.docker.compose.service={service}"]
    found = docker.from_env().containers.list(filters={"label": labels})
    return [c.name for c in sorted(found, key=lambda c: int(c.labels["com.docker.compose.container-number"]))]


# --- the error cases -------------------------------------------------------------------------------


def test_no_docker_daemon(stack: Path, runbook_cli: list[str]) -> None:
    proc = run_cli(runbook_cli, stack, "run", "trivial.yml", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert error_line(proc) == ("cannot reach the Docker daemon at unix:///nonexistent/docker.sock: "
                                "No such file or directory (start Docker or set DOCKER_HOST)")


def test_no_such_project(stack: Path, runbook_cli: list[str]) -> None:
    proc = run_cli(runbook_cli, stack, "--project-name", "nosuchproject", "run", "trivial.yml")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert error_line(proc) == ("no Compose project 'nosuchproject' (name from --project-name) is running here "
                                "(start it with `docker compose up -d` or pass --project-name)")


def test_service_missing_names_the_running_services(stack: Path, runbook_cli: list[str]) -> None:
    proc = run_cli(runbook_cli, stack, "--backend-service", "web", "run", "trivial.yml")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert error_line(proc) == (f"Compose project '{PROJECT}' has no service 'web' (running services: backend, db) "
                                "(set services.db / services.backend in runbook.yml to the right names)")


def test_service_flags_rename_the_services(stack: Path, runbook_cli: list[str]) -> None:
    # The backend role played by the db service: the step sees the db container's POSTGRES_DB.
    proc = run_cli(runbook_cli, stack, "--backend-service", "db", "run", "trivial.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "in=shop" in proc.stdout
    assert report_of(stack, "trivial")[0]["target"]["backend"] == container_names("db")[0]
    plain = run_cli(runbook_cli, stack, "run", "trivial.yml")
    assert plain.returncode == 0 and "in=backend" in plain.stdout


def test_service_stopped(stack: Path, runbook_cli: list[str]) -> None:
    backend = service_container(PROJECT, "backend")
    backend.stop(timeout=1)
    try:
        proc = run_cli(runbook_cli, stack, "run", "trivial.yml")
    finally:
        backend.start()
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert error_line(proc) == (f"service 'backend' of Compose project '{PROJECT}' is exited, not running "
                                "(start it with `docker compose start backend`)")


def test_more_than_one_container_for_a_service(stack: Path, runbook_cli: list[str]) -> None:
    _compose(stack, "up", "-d", "--no-recreate", "--scale", "backend=2", "backend")
    try:
        first, second = container_names("backend")
        proc = run_cli(runbook_cli, stack, "run", "trivial.yml")
    finally:
        _compose(stack, "up", "-d", "--no-recreate", "--scale", "backend=1", "backend")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warning = (f"service 'backend' of Compose project '{PROJECT}' runs 2 containers ({first}, {second}); "
               f"runbook used {first}: scale it down to one (`docker compose up -d --scale backend=1`) "
               "or choose the project with --project-name")
    # On the console when it is raised, before any step runs, and again in the end-of-run summary.
    lines = proc.stdout.splitlines()
    raised = lines.index(f"   warning: {warning}")
    assert raised < lines.index("== steps")
    assert f"note: {warning}" in lines
    record, markdown = report_of(stack, "trivial")
    assert warning in record["notes"]
    assert record["target"]["backend"] == first
    assert warning in markdown


def test_database_unreachable_postgres_stopped_in_a_running_container(stack: Path, runbook_cli: list[str]) -> None:
    db = service_container(PROJECT, "db")
    code, out = db.exec_run(["sh", "-c", 'kill -INT "$(head -1 /var/lib/postgresql/data/postmaster.pid)"'],
                            user="postgres")
    assert code == 0, out
    try:
        _wait_until_down()
        assert db.reload() is None and db.status == "running"
        proc = run_cli(runbook_cli, stack, "run", "sql-steps.yml")
    finally:
        _start_postgres()
    assert proc.returncode == 4, proc.stdout + proc.stderr
    line = error_line(proc)
    assert line.startswith(f"database unreachable at 127.0.0.1:{PORT}/shop (Connection refused); psql inside the "
                           f"db service cannot connect either: connection to server on socket ")
    assert line.endswith("(is PostgreSQL running in the db service? see `docker compose logs db`)")


def test_database_url_at_a_closed_port(stack: Path, runbook_cli: list[str]) -> None:
    (stack / "runbook.yml").write_text(
        f"database:\n  url: postgresql://runbook:runbook-secret@127.0.0.1:{CLOSED_PORT}/shop\n")
    proc = run_cli(runbook_cli, stack, "run", "sql-steps.yml")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    line = error_line(proc)
    assert line.startswith(f"database unreachable at 127.0.0.1:{CLOSED_PORT}/shop as runbook: ")
    assert line.endswith("(is the db service running and accepting connections?)")
    assert "runbook-secret" not in proc.stdout + proc.stderr


def test_wrong_password(stack: Path, runbook_cli: list[str]) -> None:
    (stack / "runbook.yml").write_text("database:\n  password: not-the-password\n")
    proc = run_cli(runbook_cli, stack, "run", "sql-steps.yml")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert error_line(proc) == (f"wrong or missing database password for 127.0.0.1:{PORT}/shop as runbook "
                                "(check POSTGRES_PASSWORD of the db service or `database:` in runbook.yml)")
    assert "not-the-password" not in proc.stdout + proc.stderr


def test_killing_the_container_during_a_step_is_one_line(stack: Path, runbook_cli: list[str]) -> None:
    backend = service_container(PROJECT, "backend")
    run = start_cli(runbook_cli, stack, "run", "long.yml")
    try:
        deadline = time.monotonic() + 60
        while backend.exec_run(["pgrep", "-f", "^sleep 61$"]).exit_code != 0:
            assert time.monotonic() < deadline and run.poll() is None, "the long step never started"
            time.sleep(0.2)
        backend.kill()
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
        backend.start()
    proc = subprocess.CompletedProcess(run.args, run.returncode, out, err)
    assert proc.returncode in (1, 4), out + err
    line = error_line(proc)
    assert "long step" in line or "backend" in line, line
    record, _ = report_of(stack, "long")
    assert record["steps"][0]["status"] in ("failed", "interrupted")


# --- warnings, timeouts and fallbacks --------------------------------------------------------------


def test_a_change_off_any_volume_is_a_warning_on_the_console_and_in_the_report(stack: Path,
                                                                               runbook_cli: list[str]) -> None:
    backend = service_container(PROJECT, "backend")
    # A copy of the app in the container's own filesystem: on no bind mount and no volume.
    code, out = backend.exec_run(["sh", "-c", "rm -rf /opt/app && cp -r /srv/app /opt/app"])
    assert code == 0, out
    with psycopg.connect(**DB, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    (stack / "runbook.yml").write_text("backend:\n  workdir: /opt/app\n")
    proc = run_cli(runbook_cli, stack, "run", "regenerate.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warning = ("/opt/app/catalog/migrations/0002_product_description.py in backend is not on a bind mount "
               "or volume: the change is lost when the container is recreated")
    lines = proc.stdout.splitlines()
    assert f"   warning: {warning}" in lines
    assert lines.index(f"   warning: {warning}") < lines.index("== verify")  # when raised, not at the end
    assert f"note: {warning}" in lines
    record, markdown = report_of(stack, "regenerate")
    assert warning in record["notes"]
    assert warning in markdown
    # The bind-mounted copy was not touched, and nothing about it was worth a warning.
    assert (stack / "app" / "catalog" / "migrations" / "0002_product_description.py").exists()
    assert not any("/srv/app" in note for note in record["notes"])


def test_sql_step_timeout_stops_the_statement(stack: Path, runbook_cli: list[str]) -> None:
    started = time.monotonic()
    proc = run_cli(runbook_cli, stack, "run", "sql-timeout.yml")
    assert time.monotonic() - started < 300  # a hang guard, not a speed target: the statement sleeps 600 s
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "timed out" in error_line(proc)
    record, markdown = report_of(stack, "sql-timeout")
    assert record["steps"][0]["status"] == "failed"
    assert any("SQL timed out after 1 s" in problem for problem in record["steps"][0]["problems"])
    assert "timed out" in markdown
    with psycopg.connect(**DB) as conn:  # the server cancelled it: nothing is left sleeping
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600)%'"
                            ).fetchone()[0] == 0


def test_no_network_path_falls_back_to_psql_in_the_db_service(stack: Path, runbook_cli: list[str]) -> None:
    db = service_container(PROJECT, "db")
    db.exec_run(["sh", "-c", 'kill -INT "$(head -1 /var/lib/postgresql/data/postmaster.pid)"'], user="postgres")
    _wait_until_down()
    # The same server on its unix socket only: psql in the container reaches it, nothing on the host does.
    db.exec_run([*POSTGRES, "-c", "listen_addresses="], detach=True)
    try:
        deadline = time.monotonic() + 60
        while db.exec_run(["pg_isready", "-q", "-U", "runbook", "-d", "shop"]).exit_code != 0:
            assert time.monotonic() < deadline, "postgres did not come back on its socket"
            time.sleep(0.3)
        proc = run_cli(runbook_cli, stack, "run", "sql-steps.yml")
    finally:
        db.exec_run(["sh", "-c", 'kill -INT "$(head -1 /var/lib/postgresql/data/postmaster.pid)"'], user="postgres")
        _wait_until_socket_down(db)
        _start_postgres()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record, markdown = report_of(stack, "sql-steps")
    assert record["target"]["database_path"] == "psql-in-container"
    [note] = [n for n in record["notes"] if "no network path" in n]
    assert note.startswith(f"no network path to PostgreSQL at 127.0.0.1:{PORT} (Connection refused); ")
    assert "SQL ran through psql in the db service instead" in note
    assert f"   warning: {note}" in proc.stdout.splitlines()
    assert note in markdown
    assert [s["status"] for s in record["steps"]] == ["ok", "ok"]


def test_snapshot_and_restore_through_the_sdk_stream(stack: Path, runbook_cli: list[str]) -> None:
    with psycopg.connect(**DB, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    manage(PROJECT, "migrate", "--noinput")
    manage(PROJECT, "seed", "--rows", "2000")
    before = _row_counts()
    assert before["catalog_product"] == 2000
    forced = {"RUNBOOK_STREAM_VIA_SDK": "1"}
    since = int(time.time()) - 1
    snap = run_cli(runbook_cli, stack, "snapshot", env=forced)
    assert snap.returncode == 0, snap.stdout + snap.stderr
    [snapshot_id] = [p.name for p in (stack / ".runbook" / "snapshots").iterdir()]
    assert (stack / ".runbook" / "snapshots" / snapshot_id / "database.dump").read_bytes()[:5] == b"PGDMP"
    with psycopg.connect(**DB, autocommit=True) as conn:
        conn.execute("DELETE FROM catalog_product WHERE id % 2 = 0")
    assert _row_counts() != before
    restored = run_cli(runbook_cli, stack, "restore", snapshot_id, "--yes", env=forced)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert _row_counts() == before
    # The dump went in as a file copied into the container, not through the exec's stdin.
    # This project's containers only: another module's stack may restore at the same time, in another worker.
    events = docker.from_env().events(since=since, until=int(time.time()) + 1, decode=True,
                                      filters={"type": "container", "event": "exec_create",
                                               "label": f"com.docker.compose.project={PROJECT}"})
    actions = [event.get("Action", "") for event in events]
    assert any("RUNBOOK_STDIN_FILE" in action and "pg_restore" in action for action in actions), actions
    leftovers = service_container(PROJECT, "db").exec_run(["sh", "-c", "ls -a /tmp | grep -c '^.runbook-' || true"])
    assert leftovers.output.decode().strip() == "0"


# --- helpers ---------------------------------------------------------------------------------------


def _row_counts() -> dict[str, int]:
    with psycopg.connect(**DB) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in sorted(tables)}


def _wait_until_down() -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(**DB, connect_timeout=2).close()
        except psycopg.OperationalError:
            return
        assert time.monotonic() < deadline, "postgres did not stop"
        time.sleep(0.2)


def _wait_until_socket_down(db) -> None:
    deadline = time.monotonic() + 30
    while db.exec_run(["pg_isready", "-q", "-U", "runbook", "-d", "shop"]).exit_code == 0:
        assert time.monotonic() < deadline, "postgres did not stop"
        time.sleep(0.2)


def _start_postgres() -> None:
    service_container(PROJECT, "db").exec_run(POSTGRES, detach=True)
    wait_for_db(DB, time.monotonic() + 60)
