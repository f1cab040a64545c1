"""The compose target's pure parts: project name and file discovery, container choice, globs, db address."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from runbook.config import Config, DatabaseConfig
from runbook.errors import ConfigError, EnvironmentNotReady
from runbook.targets.compose import ComposeTarget
from runbook.targets.compose.project import (
    ContainerInfo,
    find_compose_file,
    glob_depth,
    group_by_service,
    match_glob,
    normalize_project_name,
    pick_container,
    read_dotenv,
    resolve_project,
    settings_from_container,
)

# --- project names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("myapp", "myapp"),
        ("My App", "myapp"),
        ("_my.app-2", "myapp-2"),
        ("--Shop_Backend", "shop_backend"),
        ("Café", "caf"),
        ("...", ""),
    ],
)
def test_normalize_project_name_follows_compose(raw: str, expected: str) -> None:
    assert normalize_project_name(raw) == expected


def _project_dir(tmp_path: Path, name: str = "My_Project", compose: str | None = "services: {}\n") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    if compose is not None:
        (directory / "compose.yaml").write_text(compose)
    return directory


def test_argument_wins_over_everything(tmp_path: Path) -> None:
    directory = _project_dir(tmp_path, compose="name: fromfile\n")
    project = resolve_project(directory, project_name="Arg", configured_name="cfg",
                              env={"COMPOSE_PROJECT_NAME": "envname"})
    assert (project.name, project.source) == ("arg", "--project-name")


def test_config_wins_over_environment(tmp_path: Path) -> None:
    directory = _project_dir(tmp_path, compose="name: fromfile\n")
    project = resolve_project(directory, configured_name="cfg", env={"COMPOSE_PROJECT_NAME": "envname"})
    assert project.name == "cfg"


def test_environment_wins_over_name_in_file(tmp_path: Path) -> None:
    directory = _project_dir(tmp_path, compose="name: fromfile\n")
    assert resolve_project(directory, env={"COMPOSE_PROJECT_NAME": "envname"}).name == "envname"


def test_dotenv_is_read_but_real_environment_wins(tmp_path: Path) -> None:
    directory = _project_dir(tmp_path)
    (directory / ".env").write_text("# comment\nexport COMPOSE_PROJECT_NAME='dotenv'\nOTHER=1\n")
    assert read_dotenv(directory)["COMPOSE_PROJECT_NAME"] == "dotenv"
    assert resolve_project(directory, env={}).name == "dotenv"
    assert resolve_project(directory, env={"COMPOSE_PROJECT_NAME": "real"}).name == "real"


def test_dotenv_follows_compose_quoting_and_comments(tmp_path: Path) -> None:
    directory = _project_dir(tmp_path)
    (directory / ".env").write_text('COMPOSE_PROJECT_NAME="shop" # the project\nBARE\nCOMPOSE_FILE=${NOWHERE:-x.yml}\n')
    assert read_dotenv(directory) == {"COMPOSE_PROJECT_NAME": "shop", "COMPOSE_FILE": "x.yml"}
    assert resolve_project(directory, env={}, compose_file="compose.yaml").name == "shop"
    assert read_dotenv(tmp_path / "no-such-dir") == {}


def test_name_in_compose_file_wins_over_directory(tmp_path: Path) -> None:
    directory = _project_dir(tmp_path, compose="name: From-File\nservices: {}\n")
    project = resolve_project(directory, env={})
    assert (project.name, project.source) == ("from-file", "name: in compose.yaml")


def test_directory_name_is_the_fallback(tmp_path: Path) -> None:
    directory = _project_dir(tmp_path, name="-My.Shop_2")
    project = resolve_project(directory, env={})
    assert project.name == "myshop_2"
    assert project.compose_file == directory / "compose.yaml"


def test_directory_name_without_any_compose_file(tmp_path: Path) -> None:
    directory = _project_dir(tmp_path, compose=None)
    project = resolve_project(directory, env={})
    assert (project.name, project.compose_file) == ("my_project", None)


def test_compose_file_is_found_in_a_parent_directory(tmp_path: Path) -> None:
    directory = _project_dir(tmp_path, name="Shop")
    sub = directory / "app" / "deep"
    sub.mkdir(parents=True)
    assert find_compose_file(sub, env={}) == directory / "compose.yaml"
    project = resolve_project(sub, env={})
    # Named after the compose file's directory, as Compose does, not the one runbook was started in.
    assert (project.name, project.compose_file) == ("shop", directory / "compose.yaml")


def test_the_nearest_compose_file_wins(tmp_path: Path) -> None:
    outer = _project_dir(tmp_path, name="outer")
    inner = outer / "inner"
    inner.mkdir()
    (inner / "docker-compose.yml").write_text("services: {}\n")
    assert find_compose_file(inner / ".", env={}) == inner / "docker-compose.yml"
    assert resolve_project(inner, env={}).name == "inner"


def test_dotenv_is_read_next_to_a_compose_file_found_above(tmp_path: Path) -> None:
    directory = _project_dir(tmp_path, name="Shop")
    (directory / ".env").write_text("COMPOSE_PROJECT_NAME=from-dotenv\n")
    sub = directory / "sub"
    sub.mkdir()
    (sub / ".env").write_text("COMPOSE_PROJECT_NAME=from-subdir\n")
    assert resolve_project(sub, env={}).name == "from-dotenv"
    assert resolve_project(sub, env={"COMPOSE_PROJECT_NAME": "real"}).name == "real"


def test_a_named_compose_file_is_not_searched_for_above(tmp_path: Path) -> None:
    directory = _project_dir(tmp_path, name="Shop")
    sub = directory / "sub"
    sub.mkdir()
    with pytest.raises(ConfigError, match="compose.yaml .*does not exist"):
        find_compose_file(sub, compose_file="compose.yaml", env={})


def test_interpolated_name_falls_back_to_directory(tmp_path: Path) -> None:
    directory = _project_dir(tmp_path, compose="name: ${PROJECT}\n")
    assert resolve_project(directory, env={}).name == "my_project"


def test_project_directory_is_the_compose_files_directory(tmp_path: Path) -> None:
    directory = _project_dir(tmp_path)
    elsewhere = tmp_path / "Deploy"
    elsewhere.mkdir()
    (elsewhere / "stack.yml").write_text("services: {}\n")
    assert resolve_project(directory, compose_file="../Deploy/stack.yml", env={}).name == "deploy"


def test_no_usable_name_is_a_config_error(tmp_path: Path) -> None:
    directory = _project_dir(tmp_path, name="...")
    with pytest.raises(ConfigError, match="--project-name"):
        resolve_project(directory, env={})


# --- compose file ----------------------------------------------------------------------------------


def test_default_file_order(tmp_path: Path) -> None:
    for name in ("docker-compose.yaml", "docker-compose.yml", "compose.yml"):
        (tmp_path / name).write_text("services: {}\n")
    assert find_compose_file(tmp_path, env={}) == tmp_path / "compose.yml"
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    assert find_compose_file(tmp_path, env={}) == tmp_path / "compose.yaml"


def test_file_argument_then_config_then_compose_file_env(tmp_path: Path) -> None:
    for name in ("a.yml", "b.yml", "c.yml", "d.yml", "compose.yaml"):
        (tmp_path / name).write_text("services: {}\n")
    env = {"COMPOSE_FILE": "c.yml:d.yml"}
    chosen = find_compose_file(tmp_path, compose_file="a.yml", configured="b.yml", env=env)
    assert chosen == tmp_path / "a.yml"
    assert find_compose_file(tmp_path, configured="b.yml", env=env) == tmp_path / "b.yml"
    assert find_compose_file(tmp_path, env=env) == tmp_path / "c.yml"
    custom = {"COMPOSE_FILE": "d.yml;c.yml", "COMPOSE_PATH_SEPARATOR": ";"}
    assert find_compose_file(tmp_path, env=custom) == tmp_path / "d.yml"


def test_missing_named_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yml \(from --compose-file\) does not exist"):
        find_compose_file(tmp_path, compose_file="nope.yml", env={})


# --- choosing containers ---------------------------------------------------------------------------


def _info(service: str, number: int = 1, state: str = "running", oneoff: bool = False) -> ContainerInfo:
    labels = {
        "com.docker.compose.project": "shop",
        "com.docker.compose.service": service,
        "com.docker.compose.container-number": str(number),
        "com.docker.compose.oneoff": "True" if oneoff else "False",
    }
    return ContainerInfo(id=f"{service}{number}", name=f"shop-{service}-{number}", state=state, labels=labels)


PROJECT = resolve_project(Path("/"), project_name="shop", env={})


def test_summary_parsing() -> None:
    info = ContainerInfo.from_summary(
        {"Id": "abc", "Names": ["/shop_db_1"], "State": "running", "Labels": {"a": "b"}}
    )
    assert (info.id, info.name, info.running, info.number) == ("abc", "shop_db_1", True, 0)
    old = ContainerInfo.from_summary({"Id": "x", "Names": ["/x"], "Status": "Exited (0) 2 hours ago"})
    assert old.state == "exited"


def test_one_off_containers_are_ignored_and_lowest_number_wins() -> None:
    services = group_by_service([_info("backend", 3), _info("backend", 2), _info("backend", 1, oneoff=True),
                                 _info("db")])
    chosen, warning = pick_container(PROJECT, "backend", services)
    assert chosen.name == "shop-backend-2"
    assert warning is not None
    assert "runs 2 containers" in warning and "--scale backend=1" in warning and "--project-name" in warning


def test_single_container_gives_no_warning() -> None:
    chosen, warning = pick_container(PROJECT, "db", group_by_service([_info("db"), _info("backend")]))
    assert (chosen.name, warning) == ("shop-db-1", None)


def test_no_containers_names_the_project_and_the_fix() -> None:
    with pytest.raises(EnvironmentNotReady) as caught:
        pick_container(PROJECT, "db", {})
    assert str(caught.value) == (
        "no Compose project 'shop' (name from --project-name) is running here "
        "(start it with `docker compose up -d` or pass --project-name)"
    )
    assert caught.value.exit_code == 4


def test_missing_service_names_the_running_ones() -> None:
    services = group_by_service([_info("web"), _info("postgres"), _info("worker", state="exited")])
    with pytest.raises(EnvironmentNotReady, match=r"no service 'db' \(running services: postgres, web\)"):
        pick_container(PROJECT, "db", services)


def test_stopped_and_paused_services_say_how_to_start_them() -> None:
    with pytest.raises(EnvironmentNotReady, match=r"'db' .* is exited.*`docker compose start db`"):
        pick_container(PROJECT, "db", group_by_service([_info("db", state="exited")]))
    with pytest.raises(EnvironmentNotReady, match=r"is paused.*`docker compose unpause db`"):
        pick_container(PROJECT, "db", group_by_service([_info("db", state="paused")]))


def test_a_running_replica_is_used_when_the_first_is_stopped() -> None:
    services = group_by_service([_info("db", 1, state="exited"), _info("db", 2)])
    assert pick_container(PROJECT, "db", services) == (services["db"][1], None)


# --- globs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "pattern", "matches"),
    [
        ("0001_initial.py", "*.py", True),
        ("0001_initial.py", "0*.py", True),
        ("__init__.py", "0*.py", False),
        ("sub/0001.py", "*.py", False),
        ("shop/migrations/0001.py", "*/migrations/*.py", True),
        ("shop/models.py", "*/migrations/*.py", False),
        ("a/b/migrations/0001.py", "**/migrations/*.py", True),
        ("migrations/0001.py", "**/migrations/*.py", True),
        ("x.txt", "*", True),
        ("x.py", "./*.py", True),
    ],
)
def test_match_glob(path: str, pattern: str, matches: bool) -> None:
    assert match_glob(path, pattern) is matches


def test_glob_depth() -> None:
    assert (glob_depth("*.py"), glob_depth("*/migrations/*.py"), glob_depth("**/*.py")) == (1, 3, None)


# --- where the database is -------------------------------------------------------------------------


def _db_container(network_mode: str = "default", ports=None, networks=None, env=()) -> SimpleNamespace:
    return SimpleNamespace(
        name="shop-db-1",
        attrs={
            "Config": {"Env": ["POSTGRES_USER=app", "POSTGRES_PASSWORD=pw", *env]},
            "HostConfig": {"NetworkMode": network_mode},
            "NetworkSettings": {"Ports": ports or {}, "Networks": networks or {}},
        },
    )


def _settings(container: SimpleNamespace, docker_host: str = "unix:///var/run/docker.sock"):
    return settings_from_container(container.attrs, container.name, docker_host)


def _target(monkeypatch: pytest.MonkeyPatch, docker_host: str | None = None, **database) -> ComposeTarget:
    if docker_host:
        monkeypatch.setenv("DOCKER_HOST", docker_host)
    else:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
    return ComposeTarget(Config(database=DatabaseConfig(**database)), client_factory=_no_docker)


def _no_docker():
    raise AssertionError("these tests must not talk to Docker")


def test_host_network(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(_db_container("host", env=["PGPORT=6000"]))
    assert (settings.host, settings.port, settings.via) == ("127.0.0.1", 6000, "host network")
    assert (settings.user, settings.password, settings.dbname) == ("app", "pw", "app")


def test_published_port_prefers_ipv4_and_loopback_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = {"5432/tcp": [{"HostIp": "::", "HostPort": "6001"}, {"HostIp": "0.0.0.0", "HostPort": "6000"}]}
    settings = _settings(_db_container(ports=ports))
    assert (settings.host, settings.port, settings.via) == ("127.0.0.1", 6000, "published port")
    ports = {"5432/tcp": [{"HostIp": "127.0.0.2", "HostPort": "6002"}]}
    settings = _settings(_db_container(ports=ports))
    assert (settings.host, settings.port) == ("127.0.0.2", 6002)


def test_container_address_then_psql_in_container(monkeypatch: pytest.MonkeyPatch) -> None:
    networks = {"shop_default": {"IPAddress": "172.18.0.2"}}
    settings = _settings(_db_container(networks=networks))
    assert (settings.host, settings.port, settings.via) == ("172.18.0.2", 5432, "container address")
    settings = _settings(_db_container("none"))
    assert settings.via == "psql-in-container"
    assert settings.extra == {"container": "shop-db-1"}


def test_remote_docker_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = {"5432/tcp": [{"HostIp": "0.0.0.0", "HostPort": "6000"}]}
    networks = {"shop_default": {"IPAddress": "172.18.0.2"}}
    settings = _settings(_db_container(ports=ports, networks=networks), "tcp://build.example:2376")
    assert (settings.host, settings.port, settings.via) == ("build.example", 6000, "published port")
    settings = _settings(_db_container(ports=ports, networks=networks), "ssh://deploy@build.example")
    assert settings.via == "psql-in-container"
    # Published on the remote host's loopback only: unreachable from here.
    loopback = {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": "6000"}]}
    settings = _settings(_db_container(ports=loopback), "tcp://build.example:2376")
    assert settings.via == "psql-in-container"


def test_configured_url_needs_no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RB_PW", "from-env")
    target = _target(monkeypatch, url="postgresql://u@db.example:6543/shop", password_env="RB_PW")
    settings = target.database_settings()
    assert (settings.host, settings.port, settings.user, settings.dbname) == ("db.example", 6543, "u", "shop")
    assert settings.password == "from-env"


def test_unreachable_docker_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")

    def refuse():
        try:
            raise FileNotFoundError(2, "No such file or directory")
        except OSError as exc:
            raise RuntimeError("Error while fetching server API version: boom") from exc

    target = ComposeTarget(Config(), project_name="shop", client_factory=refuse)
    with pytest.raises(EnvironmentNotReady) as caught:
        target.check_ready(["db"])
    assert str(caught.value) == (
        "cannot reach the Docker daemon at unix:///nonexistent.sock: No such file or directory "
        "(start Docker or set DOCKER_HOST)"
    )
