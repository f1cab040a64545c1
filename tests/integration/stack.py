"""A Compose test stack in a directory of its own: compose.test.yml with its own loopback port and project.

Compose names the project after the directory, so each test module picks a directory name and a port
nobody else uses; the stack is started with plain `docker-compose up -d`, as a user would. The ports are
below 32768, out of Linux's ephemeral range: a client connection can never hold one when PostgreSQL binds it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import psycopg
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "tests" / "projects" / "shop"


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed (run scripts/install-docker.sh)")


def db_settings(port: int, dbname: str = "shop") -> dict[str, object]:
    return {"host": "127.0.0.1", "port": port, "user": "runbook", "password": "runbook-secret", "dbname": dbname}


def write_stack(directory: Path, port: int, app: Path = SHOP, dbname: str = "shop") -> None:
    """compose.test.yml with its own port, and a private copy of a sample project mounted at /srv/app."""
    spec = yaml.safe_load((REPO / "compose.test.yml").read_text())
    spec["services"]["db"]["environment"].update(PGPORT=str(port), POSTGRES_DB=dbname)
    spec["services"]["backend"]["environment"].update(DB_PORT=str(port), DB_NAME=dbname)
    spec["services"]["backend"]["volumes"] = ["./app:/srv/app"]
    (directory / "docker-compose.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    reset_app(directory, app)


def reset_app(directory: Path, source: Path = SHOP) -> None:
    """Put the sample project back in directory/app, in place: a running backend has it bind-mounted."""
    app = directory / "app"
    if app.is_dir():
        for child in app.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    shutil.copytree(source, app, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)


def empty_database(settings: dict[str, object]) -> None:
    """Drop everything in the public schema: each test starts from an empty database on a running stack."""
    with psycopg.connect(**settings, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def clean_stack(directory: Path, settings: dict[str, object]) -> Path:
    """Give a test an empty database, the original project files and no reports of earlier tests."""
    empty_database(settings)
    reset_app(directory)
    for path in (directory / ".runbook").glob("reports/*"):
        path.unlink()
    return directory


def wait_for_db(settings: dict[str, object], deadline: float) -> None:
    while True:
        try:
            with psycopg.connect(**settings, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def require_docker() -> None:
    """Fail (never skip) when Docker does not answer, unless the user opted out with RUNBOOK_SKIP_DOCKER=1."""
    if os.environ.get("RUNBOOK_SKIP_DOCKER") == "1":
        pytest.skip("RUNBOOK_SKIP_DOCKER=1")
    try:
        docker.from_env().ping()
    except Exception as exc:
        pytest.fail(f"Docker is not reachable ({exc}); run scripts/install-docker.sh or set RUNBOOK_SKIP_DOCKER=1")


def wait_for_stack(directory: Path, settings: dict[str, object]) -> None:
    """Wait for the stack's PostgreSQL; when it never accepts connections, fail with the stack's own logs."""
    try:
        wait_for_db(settings, time.monotonic() + 180)
    except psycopg.OperationalError as exc:
        logs = subprocess.run([*compose_command(), "logs", "--tail", "40"], cwd=directory, capture_output=True,
                              text=True)
        pytest.fail(f"PostgreSQL of {directory.name} never accepted connections ({exc}):\n{logs.stdout}")


@contextlib.contextmanager
def running_stack(directory: Path, port: int, app: Path = SHOP, dbname: str = "shop") -> Iterator[Path]:
    """Bring the stack up in directory (created), yield it, and take it down with its volumes."""
    require_docker()
    directory.mkdir(parents=True, exist_ok=True)
    write_stack(directory, port, app, dbname)
    compose = compose_command()
    up = subprocess.run([*compose, "up", "-d"], cwd=directory, capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        pytest.fail(f"docker-compose up failed:\n{up.stderr}")
    try:
        wait_for_stack(directory, db_settings(port, dbname))
        yield directory
    finally:
        subprocess.run([*compose, "down", "-v"], cwd=directory, capture_output=True, timeout=300)


def service_container(project: str, service: str):
    found = docker.from_env().containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                                 f"com.docker.compose.service={service}"]})
    assert len(found) == 1, f"expected one {service} container in {project}, found {len(found)}"
    return found[0]


def manage(project: str, *args: str) -> str:
    code, output = service_container(project, "backend").exec_run(["python", "manage.py", *args],
                                                                  workdir="/srv/app")
    assert code == 0, output.decode()
    return output.decode()


def run_cli(cli: list[str], directory: Path, *args: str, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run runbook as a user would, with no terminal on stdin."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    full_env.update({"NO_COLOR": "1", "COLUMNS": "200", **(env or {})})
    return subprocess.run([*cli, *args], cwd=directory, env=full_env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)
