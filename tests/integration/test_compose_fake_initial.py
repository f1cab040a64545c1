"""End to end on the compose target: the sample Django project in a real Compose stack, no runbook.yml.

The stack is compose.test.yml rewritten into a directory of its own (its own loopback port, a private
copy of the project), started with plain `docker-compose up -d` so runbook must find the project the
way Compose names it: after the directory.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import psycopg
import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DB_PORT = 55452
DB = {"host": "127.0.0.1", "port": DB_PORT, "user": "runbook", "password": "runbook-secret", "dbname": "shop"}
DATA_TABLES = ["customer_customer", "customer_contact_customercontact", "catalog_category", "catalog_product"]


def _compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed (run scripts/install-docker.sh)")


def _write_stack(directory: Path) -> None:
    """compose.test.yml with its own port and the project copy beside it."""
    spec = yaml.safe_load((REPO / "compose.test.yml").read_text())
    spec["services"]["db"]["environment"]["PGPORT"] = str(DB_PORT)
    spec["services"]["backend"]["environment"]["DB_PORT"] = str(DB_PORT)
    spec["services"]["backend"]["volumes"] = ["./app:/srv/app"]
    (directory / "docker-compose.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copytree(REPO / "tests" / "projects" / "shop", directory / "app",
                    ignore=shutil.ignore_patterns("__pycache__"))


def _wait_for_db(deadline: float) -> None:
    while True:
        try:
            with psycopg.connect(**DB, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture(scope="session")
def shop_stack(tmp_path_factory) -> Iterator[Path]:
    if os.environ.get("RUNBOOK_SKIP_DOCKER") == "1":
        pytest.skip("RUNBOOK_SKIP_DOCKER=1")
    try:
        docker.from_env().ping()
    except Exception as exc:
        pytest.fail(f"Docker is not reachable ({exc}); run scripts/install-docker.sh or set RUNBOOK_SKIP_DOCKER=1")
    directory = tmp_path_factory.mktemp("stacks") / "rbshop"
    directory.mkdir()
    _write_stack(directory)
    compose = _compose_command()
    up = subprocess.run([*compose, "up", "-d"], cwd=directory, capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        pytest.fail(f"docker-compose up failed:\n{up.stderr}")
    try:
        _wait_for_db(time.monotonic() + 90)
        yield directory
    finally:
        subprocess.run([*compose, "down", "-v"], cwd=directory, capture_output=True, timeout=300)


def _backend(directory: Path):
    client = docker.from_env()
    found = client.containers.list(filters={"label": ["com.docker.compose.project=rbshop",
                                                      "com.docker.compose.service=backend"]})
    assert len(found) == 1
    return found[0]


def _manage(directory: Path, *args: str) -> str:
    code, output = _backend(directory).exec_run(["python", "manage.py", *args], workdir="/srv/app")
    assert code == 0, output.decode()
    return output.decode()


def _reset_database(directory: Path) -> None:
    with psycopg.connect(**DB, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    shutil.rmtree(directory / ".runbook", ignore_errors=True)
    _manage(directory, "migrate", "--noinput")
    _manage(directory, "seed", "--rows", "60")


def _state() -> tuple[set[tuple[str, str]], dict[str, list]]:
    with psycopg.connect(**DB) as conn:
        rows = {tuple(r) for r in conn.execute("SELECT app, name FROM django_migrations")}
        data = {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in DATA_TABLES}
    return rows, data


def _runbook(cli: list[str], directory: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    full_env.update({"NO_COLOR": "1", **(env or {})})
    return subprocess.run([*cli, *args], cwd=directory, env=full_env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=600)


def test_fake_initial_in_compose_with_no_config(shop_stack: Path, runbook_cli: list[str]) -> None:
    _reset_database(shop_stack)
    rows_before, data_before = _state()
    with psycopg.connect(**DB) as conn:
        conn.execute("DELETE FROM django_migrations WHERE app IN ('customer', 'customer_contact')")
    assert not (shop_stack / "runbook.yml").exists()

    proc = _runbook(runbook_cli, shop_stack, "run", "fake-initial", "--yes")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "customer.0001_initial... FAKED" in proc.stdout  # streamed from the container

    rows_after, data_after = _state()
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


def test_dry_run_touches_nothing(shop_stack: Path, runbook_cli: list[str]) -> None:
    shutil.rmtree(shop_stack / ".runbook", ignore_errors=True)
    proc = _runbook(runbook_cli, shop_stack, "run", "fake-initial", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "backend would run:" in proc.stdout
    assert "python manage.py migrate --fake-initial --noinput" in proc.stdout
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
        proc = _runbook(runbook_cli, shop_stack, "run", "fake-initial", "--yes", env=env)
    finally:
        config.unlink(missing_ok=True)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("runbook:")]
    assert len(error_lines) == 1 and expected in error_lines[0], proc.stderr
    assert "not-the-password" not in proc.stdout + proc.stderr


def test_stopped_backend_exits_4_and_names_the_fix(shop_stack: Path, runbook_cli: list[str]) -> None:
    backend = _backend(shop_stack)
    backend.stop(timeout=5)
    try:
        proc = _runbook(runbook_cli, shop_stack, "run", "fake-initial", "--yes")
    finally:
        backend.start()
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "start backend" in proc.stderr and "Traceback" not in proc.stderr


def test_diagnose_names_the_fake_and_its_line_repairs(shop_stack: Path, runbook_cli: list[str]) -> None:
    _reset_database(shop_stack)
    rows_before, data_before = _state()
    with psycopg.connect(**DB) as conn:
        conn.execute("DELETE FROM django_migrations WHERE app IN ('customer', 'customer_contact')")
    found = _runbook(runbook_cli, shop_stack, "diagnose", "--json")
    assert found.returncode == 3, found.stdout + found.stderr
    [finding] = json.loads(found.stdout)["findings"]
    assert finding["kind"] == "safe-to-fake"
    # customer_contact.0002 is not an initial migration: --fake-initial would run it; the guarded fake proves it.
    assert finding["command"] == (
        "runbook run fake-migrations --var migrations=customer.0001_initial,customer_contact.0001_initial,"
        "customer_contact.0002_alter_customercontact_customer --yes")
    proc = _runbook(runbook_cli, shop_stack, *shlex.split(finding["command"])[1:])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _state() == (rows_before, data_before)
    assert _runbook(runbook_cli, shop_stack, "diagnose").returncode == 0
