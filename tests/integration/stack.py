"""The integration tests' helpers, once: Compose stacks, their containers and databases, runbook's CLI and reports.

A Compose test stack lives in a directory of its own: compose.test.yml with its own loopback port and project.
Compose names the project after the directory, so each test module picks a directory name and a port
nobody else uses (two modules may run at once, in two pytest-xdist workers); the stack is started with
plain `docker-compose up -d`, as a user would. The ports are below 32768, out of Linux's ephemeral range:
a client connection can never hold one when PostgreSQL binds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import psycopg
import pytest
import yaml
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "tests" / "projects" / "shop"
IMAGE = "runbook-test:latest"
# The shop sample's tables that hold data (the seed command fills them).
SHOP_DATA_TABLES = ["customer_customer", "customer_contact_customercontact", "catalog_category", "catalog_product"]


# ---- Docker and Compose ---------------------------------------------------------------------------------------

def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed (run scripts/install-docker.sh)")


def require_docker() -> docker.DockerClient:
    """A client of a Docker engine that has the test image; fail (never skip) without one, unless the user
    opted out with RUNBOOK_SKIP_DOCKER=1."""
    if os.environ.get("RUNBOOK_SKIP_DOCKER") == "1":
        pytest.skip("RUNBOOK_SKIP_DOCKER=1")
    try:
        client = docker.from_env()
        client.ping()
        client.images.get(IMAGE)
    except Exception as exc:
        pytest.fail(f"Docker is not usable ({exc}); run scripts/install-docker.sh and scripts/build-images.sh, "
                    "or set RUNBOOK_SKIP_DOCKER=1")
    return client


# ---- a stack's files and its life -----------------------------------------------------------------------------

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


def wait_for_db(settings: dict[str, object], deadline: float) -> None:
    while True:
        try:
            with psycopg.connect(**settings, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def wait_for_stack(directory: Path, settings: dict[str, object]) -> None:
    """Wait for the stack's PostgreSQL; when it never accepts connections, fail with the stack's own logs."""
    try:
        wait_for_db(settings, time.monotonic() + 180)
    except psycopg.OperationalError as exc:
        logs = subprocess.run([*compose_command(), "logs", "--tail", "40"], cwd=directory, capture_output=True,
                              text=True)
        pytest.fail(f"PostgreSQL of {directory.name} never accepted connections ({exc}):\n{logs.stdout}")


@contextlib.contextmanager
def compose_up(directory: Path) -> Iterator[list[str]]:
    """`up -d` the docker-compose.yml in directory, yield the compose command, and take it down with its volumes."""
    compose = compose_command()
    up = subprocess.run([*compose, "up", "-d"], cwd=directory, capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        subprocess.run([*compose, "down", "-v"], cwd=directory, capture_output=True, timeout=300)
        pytest.fail(f"docker-compose up failed in {directory.name}:\n{up.stderr}")
    try:
        yield compose
    finally:
        subprocess.run([*compose, "down", "-v"], cwd=directory, capture_output=True, timeout=300)


@contextlib.contextmanager
def running_stack(directory: Path, port: int, app: Path = SHOP, dbname: str = "shop") -> Iterator[Path]:
    """Bring the stack up in directory (created), yield it, and take it down with its volumes."""
    require_docker()
    directory.mkdir(parents=True, exist_ok=True)
    write_stack(directory, port, app, dbname)
    with compose_up(directory):
        wait_for_stack(directory, db_settings(port, dbname))
        yield directory


def stack_fixture(project: str, port: int, app: Path = SHOP, dbname: str = "shop", *,
                  name: str = "stack") -> Callable[..., Iterator[Path]]:
    """A module-scoped pytest fixture `name` yielding a running stack named `project`: assign it to that name
    in one test module (its port and project are its own)."""

    @pytest.fixture(scope="module", name=name)
    def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
        with running_stack(tmp_path_factory.mktemp("stacks") / project, port, app, dbname) as directory:
            yield directory

    return stack


@contextlib.contextmanager
def isolated_stack(directory: Path, files: dict[str, str]) -> Iterator[Path]:
    """A stack whose db has `network_mode: none` (only psql inside it reaches PostgreSQL), with `files` (name:
    text) beside its docker-compose.yml; the project is directory's name."""
    require_docker()
    directory.mkdir(parents=True)
    spec = yaml.safe_load((REPO / "compose.test.yml").read_text())
    spec["services"]["db"]["network_mode"] = "none"
    spec["services"]["db"]["environment"]["PGPORT"] = "5432"
    del spec["services"]["db"]["healthcheck"]
    spec["services"]["backend"]["volumes"] = []
    (directory / "docker-compose.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    for name, text in files.items():
        (directory / name).write_text(text)
    with compose_up(directory):
        db = service_container(directory.name, "db")
        deadline = time.monotonic() + 60
        # First start answers on its socket while it initialises, then restarts: wait for the real server.
        while not (b"starting postgres on" in db.logs()
                   and db.exec_run(["pg_isready", "-q", "-U", "runbook", "-d", "shop"]).exit_code == 0):
            if time.monotonic() > deadline:
                pytest.fail(f"the db service of {directory.name} never became ready (pg_isready failed for 60 s)")
            time.sleep(0.5)
        yield directory


# ---- databases ------------------------------------------------------------------------------------------------

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


def _maintenance(settings: dict[str, object]) -> psycopg.Connection:
    """An autocommit connection to the `postgres` database: CREATE/DROP DATABASE cannot run in a transaction."""
    return psycopg.connect(**{**settings, "dbname": "postgres"}, autocommit=True)


def recreate_database(settings: dict[str, object], dbname: str, template: str | None = None) -> None:
    """Drop dbname on the server of settings and create it again, empty or as a copy of template (a second)."""
    with _maintenance(settings) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        if template is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        else:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(dbname),
                                                                          sql.Identifier(template)))


def template_name(settings: dict[str, object]) -> str:
    return f"{settings['dbname']}_template"


def make_template(settings: dict[str, object]) -> None:
    """Copy the database of settings to <dbname>_template (replacing an older one); nobody may connect to it."""
    dbname, template = str(settings["dbname"]), template_name(settings)
    with _maintenance(settings) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template,)).fetchone():
            conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(sql.Identifier(template)))
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(template)))
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
                     " AND pid <> pg_backend_pid()", (dbname,))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(template),
                                                                      sql.Identifier(dbname)))
        # A stray connection to the template would make every later CREATE DATABASE ... TEMPLATE fail.
        conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
                     .format(sql.Identifier(template)))


def drop_template(settings: dict[str, object]) -> None:
    """Drop what make_template made, and the database of settings."""
    with _maintenance(settings) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template_name(settings),)).fetchone():
            conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(
                sql.Identifier(template_name(settings))))
        for name in (template_name(settings), str(settings["dbname"])):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def reset_from_template(settings: dict[str, object]) -> None:
    """Put the database of settings back as make_template saw it: a copy, in about a second, not a migrate."""
    recreate_database(settings, str(settings["dbname"]), template_name(settings))


def history_rows(db: dict[str, object]) -> set[tuple[str, str]]:
    """Django's history as (app, name) pairs."""
    with psycopg.connect(**db) as conn:
        return {tuple(r) for r in conn.execute("SELECT app, name FROM django_migrations")}


def shop_state(db: dict[str, object], tables: list[str] = SHOP_DATA_TABLES,
               ) -> tuple[set[tuple[str, str]], dict[str, list]]:
    """The shop sample's history rows and every row of its data tables, by id."""
    with psycopg.connect(**db) as conn:
        data = {t: conn.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(t))).fetchall()
                for t in tables}
    return history_rows(db), data


def add_users(db: dict[str, object], count: int) -> None:
    """count rows in Django's auth_user: user1, user2, ..."""
    with psycopg.connect(**db) as conn:
        conn.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff,"
            " is_active, date_joined) SELECT '!', false, 'user' || i, '', '', '', false, true, now()"
            " FROM generate_series(1, %(n)s) AS i", {"n": count})


def alembic_versions(db: dict[str, object]) -> list[str]:
    """The rows of alembic_version, sorted."""
    with psycopg.connect(**db) as conn:
        return [row[0] for row in conn.execute("SELECT version_num FROM alembic_version ORDER BY 1")]


# ---- the containers of a stack --------------------------------------------------------------------------------

def service_container(project: str, service: str):
    found = docker.from_env().containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                                 f"com.docker.compose.service={service}"]})
    assert len(found) == 1, f"expected one {service} container in {project}, found {len(found)}"
    return found[0]


def try_manage(project: str, *args: str) -> tuple[int, str]:
    """`manage.py args` in the backend: its exit code and its output (stdout and stderr together)."""
    code, output = service_container(project, "backend").exec_run(["python", "manage.py", *args],
                                                                  workdir="/srv/app")
    return code, output.decode()


def manage(project: str, *args: str) -> str:
    code, output = try_manage(project, *args)
    assert code == 0, output
    return output


def migrate_fails_with(project: str, text: str) -> None:
    """`manage.py migrate` in the backend fails, saying text."""
    code, output = try_manage(project, "migrate", "--noinput")
    assert code != 0 and text in output, output[-800:]


def in_backend(project: str, *argv: str) -> str:
    """Run argv in the backend's /srv/app; assert it succeeds and return its stdout."""
    code, (out, err) = service_container(project, "backend").exec_run(list(argv), workdir="/srv/app", demux=True)
    assert code == 0, f"{argv}: {(out or b'').decode()}{(err or b'').decode()}"
    return (out or b"").decode()


def alembic_heads(project: str) -> list[str]:
    return sorted(line.split()[0] for line in in_backend(project, "alembic", "heads").splitlines() if line.strip())


def sleepers(project: str, command: str) -> int:
    """How many processes in the backend run exactly `command`; a zombie has no command line, so it does not
    count: it is gone for our purpose."""
    _, output = service_container(project, "backend").exec_run(["pgrep", "-c", "-f", f"^{command}$"])
    return int(output.decode().strip() or 0)


# ---- the local target -----------------------------------------------------------------------------------------

def django_env(db: dict[str, object]) -> dict[str, str]:
    """The variables the sample projects' settings read their database from."""
    return {"DB_HOST": str(db["host"]), "DB_PORT": str(db["port"]), "DB_NAME": str(db["dbname"]),
            "DB_USER": str(db["user"]), "DB_PASSWORD": str(db["password"]), "PYTHONDONTWRITEBYTECODE": "1"}


def local_manage(project: Path, db: dict[str, object], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`manage.py args` of a sample project on this host, against db; with check, assert it succeeds."""
    proc = subprocess.run([sys.executable, "manage.py", *args], cwd=project, env={**os.environ, **django_env(db)},
                          capture_output=True, text=True)
    assert proc.returncode == 0 or not check, proc.stderr
    return proc


def write_local_config(project: Path, db: dict[str, object], password_env: str,
                       backend: dict[str, object] | None = None) -> None:
    """runbook.yml for the local target on db, the password in the variable password_env."""
    config: dict[str, object] = {"target": "local"}
    if backend is not None:
        config["backend"] = backend
    config["database"] = {"host": db["host"], "port": db["port"], "user": db["user"], "name": db["dbname"],
                          "password_env": password_env}
    (project / "runbook.yml").write_text(yaml.safe_dump(config))


def django_backend(db: dict[str, object], workdir: str = ".") -> dict[str, object]:
    """The backend: section for a sample Django project run with this interpreter on the local target."""
    return {"workdir": workdir, "manage": [sys.executable, "manage.py"], "env": django_env(db)}


def run_local(cli: list[str], project: Path, db: dict[str, object], *args: str,
              password_env: str = "SHOP_DB_PASSWORD", timeout: float = 600) -> subprocess.CompletedProcess:
    """run_cli in a project whose runbook.yml (write_local_config) takes db's password from password_env."""
    return run_cli(cli, project, *args, env={password_env: str(db["password"])}, timeout=timeout)


# ---- runbook's CLI --------------------------------------------------------------------------------------------

def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: none of the Compose or traceback settings of whoever runs the tests,
    plain output 200 columns wide, and extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_") and k != "RUNBOOK_TRACEBACK"}
    return {**env, "NO_COLOR": "1", "COLUMNS": "200", **extra}


def run_cli(cli: list[str], directory: Path, *args: str, env: dict | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run runbook as a user would, with no terminal on stdin."""
    return subprocess.run([*cli, *args], cwd=directory, env=user_env(**(env or {})), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def start_cli(cli: list[str], directory: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """Start runbook as run_cli does, without waiting for it: for stopping it half-way."""
    return subprocess.Popen([*cli, *args], cwd=directory, env=user_env(**(env or {})), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def pause_env(point: str, marker: Path) -> dict[str, str]:
    """The test-only hook of runbook/engine/faults.py: write marker at point, then wait for a signal."""
    return {"RUNBOOK_TEST_PAUSE_AT": point, "RUNBOOK_TEST_PAUSE_MARKER": str(marker)}


def wait_for_pause(marker: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Wait until a run started with pause_env writes its marker; fail with its output when it never does."""
    deadline = time.monotonic() + timeout
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not marker.exists():
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the run never reached its pause point (exit {proc.returncode}):\n{out[-3000:]}\n{err}")


def playbook_steps(playbook: str) -> list[dict]:
    """The steps of a built-in playbook as it is now."""
    return yaml.safe_load((REPO / "playbooks" / f"{playbook}.yml").read_text())["steps"]


def step_boundaries(playbook: str) -> list[str]:
    """Every step boundary of a built-in playbook as it is now: before the first step and after each."""
    return ["steps", *(f"after-step-{n}" for n in range(1, len(playbook_steps(playbook)) + 1))]


# ---- what a run leaves: reports and snapshots -----------------------------------------------------------------

def report_paths(directory: Path, playbook: str = "") -> list[Path]:
    """The JSON reports of playbook (of every playbook when empty), oldest first: their names start with the
    time."""
    return sorted((directory / ".runbook" / "reports").glob(f"*-{playbook}.json" if playbook else "*.json"))


def read_report(path: Path) -> tuple[dict, str]:
    """A report's JSON twin as data, and its Markdown."""
    return json.loads(path.read_text()), path.with_suffix(".md").read_text()


def report_of(directory: Path, playbook: str = "") -> tuple[dict, str]:
    """The one report of playbook (of any playbook when empty)."""
    [path] = report_paths(directory, playbook)
    return read_report(path)


def latest_report(directory: Path, playbook: str) -> tuple[dict, str]:
    return read_report(report_paths(directory, playbook)[-1])


def snapshot_ids(directory: Path) -> list[str]:
    base = directory / ".runbook" / "snapshots"
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


def take_snapshot(cli: list[str], directory: Path) -> tuple[str, str]:
    """`runbook snapshot`: the new snapshot's id, and the output that named it."""
    before = set(snapshot_ids(directory))
    proc = run_cli(cli, directory, "snapshot")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [new] = set(snapshot_ids(directory)) - before
    assert f"snapshot {new} written" in proc.stdout
    return new, proc.stdout
