"""The compose target against a real Docker engine and a real Compose (v1 or v2) project of its own.

The stack (tests/integration/compose-target.yml) runs as project `rbtest-compose`, db on 127.0.0.1:25442,
so it never touches the shared `runbook-test` project. Without Docker these tests fail, unless
RUNBOOK_SKIP_DOCKER=1 says to skip them.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import psycopg
import pytest
from stack import compose_command, db_settings, require_docker, wait_for_db

from runbook.config import Config, DatabaseConfig, ServiceNames
from runbook.errors import EnvironmentNotReady, StepFailed
from runbook.targets.base import MissingFile, Target
from runbook.targets.compose import ComposeTarget

pytestmark = pytest.mark.integration

PROJECT = "rbtest-compose"
COMPOSE_FILE = Path(__file__).with_name("compose-target.yml")
DB_PORT = 25442


def compose(*args: str, app_dir: Path) -> None:
    env = {**os.environ, "RBTEST_APP_DIR": str(app_dir)}
    cmd = [*compose_command(), "-f", str(COMPOSE_FILE), "-p", PROJECT, *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="module")
def docker_client() -> docker.DockerClient:
    return require_docker()


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rbtest-app")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def stack(docker_client: docker.DockerClient, app_dir: Path) -> Iterator[None]:
    compose("down", "-v", "--remove-orphans", app_dir=app_dir)  # leftovers of an interrupted run
    compose("up", "-d", app_dir=app_dir)
    wait_for_db(db_settings(DB_PORT), time.monotonic() + 90)
    yield
    compose("down", "-v", "--remove-orphans", app_dir=app_dir)


@pytest.fixture
def target(stack: None, tmp_path: Path) -> ComposeTarget:
    return ComposeTarget(Config(project_dir=tmp_path), project_name=PROJECT)


def container_name(client: docker.DockerClient, service: str, number: int = 1) -> str:
    """The name Compose gave a container (v1: `p_s_1`, v2: `p-s-1`), found by its labels."""
    labels = [f"com.docker.compose.project={PROJECT}", f"com.docker.compose.service={service}",
              f"com.docker.compose.container-number={number}"]
    [container] = client.containers.list(all=True, filters={"label": labels})
    return container.name


def _processes(target: ComposeTarget, service: str = "backend") -> str:
    return target.exec(service, ["ps", "-eo", "stat,args"]).stdout


def _live_processes(target: ComposeTarget, needle: str) -> list[str]:
    """Lines of `ps` naming needle, leaving out zombies (PID 1 `sleep infinity` never reaps them)."""
    return [line for line in _processes(target).splitlines() if needle in line and not line.startswith("Z")]


# --- commands --------------------------------------------------------------------------------------


def test_is_a_target(target: ComposeTarget) -> None:
    assert isinstance(target, Target)
    assert target.name == "compose"


def test_exit_code_and_separate_streams(target: ComposeTarget) -> None:
    result = target.exec("backend", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.timed_out and not result.truncated
    assert target.exec("backend", ["true"]).exit_code == 0
    missing = target.exec("backend", ["no-such-command-rb"])
    assert missing.exit_code == 127 and "not found" in missing.stderr


def test_arguments_are_not_reparsed_by_a_shell(target: ComposeTarget) -> None:
    argv = ["printf", "%s|", "a b", "$HOME", "'q'", "`id`", "; rm -rf /"]
    assert target.exec("backend", argv).stdout == "a b|$HOME|'q'|`id`|; rm -rf /|"


def test_output_streams_in_order_as_it_arrives(target: ComposeTarget) -> None:
    seen: list[tuple[float, str, str]] = []
    result = target.exec(
        "backend",
        ["sh", "-c", "echo one; sleep 0.4; echo two >&2; sleep 0.4; echo three"],
        on_output=lambda stream, text: seen.append((time.monotonic(), stream, text)),
    )
    assert [(s, t) for _, s, t in seen] == [("stdout", "one\n"), ("stderr", "two\n"), ("stdout", "three\n")]
    # Streamed, not collected at the end: the chunks arrive as far apart as the command's sleeps.
    assert seen[1][0] - seen[0][0] > 0.3 and seen[2][0] - seen[1][0] > 0.3
    assert (result.stdout, result.stderr) == ("one\nthree\n", "two\n")


def test_env_workdir_and_user(target: ComposeTarget) -> None:
    result = target.exec(
        "backend", ["sh", "-c", 'echo "$GREETING|$(pwd)|$(id -un)"'],
        env={"GREETING": "hello world"}, workdir="/tmp", user="nobody",
    )
    assert result.stdout == "hello world|/tmp|nobody\n"
    target.exec("backend", ["mkdir", "-p", "/srv/app/sub"])
    assert target.exec("backend", ["pwd"], workdir="sub").stdout == "/srv/app/sub\n"
    # Defaults: the container's working_dir and user.
    assert target.exec("backend", ["sh", "-c", 'echo "$(pwd)|$(id -un)"']).stdout == "/srv/app|root\n"


def test_bad_user_or_workdir_is_a_result_that_says_why(target: ComposeTarget) -> None:
    for _ in range(5):  # Docker itself sometimes drops its message; runbook then writes one
        result = target.exec("backend", ["id"], user="no-such-user-rb")
        assert result.exit_code == 126
        assert "no-such-user-rb" in result.stdout + result.stderr
    result = target.exec("backend", ["pwd"], workdir="/no/such/dir")
    assert result.exit_code == 126 and "/no/such/dir" in result.stdout + result.stderr


def test_multibyte_text_split_across_chunks_decodes_cleanly(target: ComposeTarget) -> None:
    pieces: list[str] = []
    result = target.exec("backend", ["python3", "-c", "print('é€😀' * 200000)"],
                         on_output=lambda stream, text: pieces.append(text))
    expected = "é€😀" * 200000 + "\n"
    assert "".join(pieces) == expected
    assert "\ufffd" not in result.stdout
    assert len(pieces) > 1


def test_large_output_is_bounded_but_fully_streamed(target: ComposeTarget) -> None:
    streamed = 0

    def count(stream: str, text: str) -> None:
        nonlocal streamed
        streamed += len(text)

    size = 5 * 1024 * 1024
    result = target.exec("backend", ["python3", "-c", f"import sys; sys.stdout.write('x' * {size})"],
                         on_output=count)
    assert streamed == size
    assert result.truncated
    assert len(result.stdout) < 1.1 * 1024 * 1024
    assert "characters cut by runbook" in result.stdout


def test_timeout_stops_the_command_in_the_container(target: ComposeTarget) -> None:
    started = time.monotonic()
    # A child in the background (re-parented away from the wrapper) and one in the foreground.
    result = target.exec("backend", ["sh", "-c", "(sleep 988 &); echo started; sleep 987"], timeout=1)
    elapsed = time.monotonic() - started
    assert result.timed_out and result.exit_code == 124
    assert result.stdout == "started\n"
    assert elapsed < 60, elapsed  # a hang guard, not a speed target: without the timeout it waits 987 s
    assert _live_processes(target, "sleep 98") == []


def test_timeout_as_another_user_in_the_db_service(target: ComposeTarget) -> None:
    result = target.exec("db", ["sh", "-c", "sleep 983"], user="postgres", timeout=0.5)
    assert result.timed_out and result.duration < 3
    assert "sleep 983" not in _processes(target, "db")


def test_timeout_kills_a_command_that_ignores_sigterm(target: ComposeTarget) -> None:
    result = target.exec("backend", ["sh", "-c", "trap '' TERM; sleep 986"], timeout=0.5)
    assert result.timed_out and result.duration < 8
    assert _live_processes(target, "sleep 986") == []


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt here even when pytest was started with SIGINT ignored, as `cmd &` in a
    script starts it: the test would otherwise wait for its 985-second command to end."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_the_command_and_propagates(target: ComposeTarget, ctrl_c_raises: None) -> None:
    timer = threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            target.exec("backend", ["sh", "-c", "echo waiting; sleep 985"])
    finally:
        timer.cancel()
    assert _live_processes(target, "sleep 985") == []


def test_interrupt_from_the_output_callback_stops_the_command(target: ComposeTarget) -> None:
    def interrupt(stream: str, text: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        target.exec("backend", ["sh", "-c", "echo go; sleep 984"], on_output=interrupt)
    assert _live_processes(target, "sleep 984") == []


def test_no_pid_files_are_left_behind(target: ComposeTarget) -> None:
    target.exec("backend", ["true"])
    target.exec("backend", ["sleep", "5"], timeout=0.3)
    listing = target.exec("backend", ["sh", "-c", "ls -a /tmp | grep -c runbook- || true"]).stdout
    assert listing.strip() == "0"  # the stopper finds commands by their marker: no pid files at all


def test_exec_latency(target: ComposeTarget) -> None:
    target.exec("backend", ["true"])
    runs = 10
    started = time.monotonic()
    for _ in range(runs):
        target.exec("backend", ["true"])
    per_call = (time.monotonic() - started) / runs
    print(f"compose target exec latency: {per_call * 1000:.0f} ms per call")
    assert per_call < 1.0


# --- files -----------------------------------------------------------------------------------------


def test_write_read_list_delete_round_trip(target: ComposeTarget, app_dir: Path) -> None:
    base = "/srv/app/roundtrip"
    files = ["shop/migrations/0001_initial.py", "shop/migrations/0002_more.py", "shop/migrations/__init__.py",
             "billing/migrations/0001_initial.py", "shop/models.py"]
    for name in files:
        target.write_file("backend", f"{base}/{name}", f"# {name} é\n".encode())
    assert target.read_file("backend", f"{base}/shop/models.py") == "# shop/models.py é\n".encode()
    # Through the bind mount: a new file is 0644, its new parents exist.
    on_host = app_dir / "roundtrip/shop/migrations/0002_more.py"
    assert on_host.read_text() == "# shop/migrations/0002_more.py é\n"
    assert on_host.stat().st_mode & 0o777 == 0o644

    migrations = f"{base}/shop/migrations"
    assert target.list_files("backend", migrations, "0*.py") == [
        f"{migrations}/0001_initial.py", f"{migrations}/0002_more.py"]
    assert len(target.list_files("backend", migrations, "*.py")) == 3
    assert target.list_files("backend", base, "*/migrations/0001_*.py") == [
        f"{base}/billing/migrations/0001_initial.py", f"{base}/shop/migrations/0001_initial.py"]
    assert len(target.list_files("backend", base, "**/*.py")) == 5
    assert target.list_files("backend", base, "*.py") == []
    assert target.list_files("backend", "/srv/app/does-not-exist", "*.py") == []
    # Relative to the container's working directory, results absolute.
    assert target.list_files("backend", "roundtrip/shop", "*.py") == [f"{base}/shop/models.py"]

    target.delete_file("backend", f"{migrations}/0002_more.py")
    target.delete_file("backend", f"{migrations}/0002_more.py")  # already gone: fine, like rm -f
    assert not on_host.exists()
    with pytest.raises(MissingFile, match="0002_more.py in backend: No such file"):
        target.read_file("backend", f"{migrations}/0002_more.py")
    assert target.warnings == []


def test_replacing_a_file_keeps_its_mode_and_owner(target: ComposeTarget) -> None:
    path = "/srv/app/script.sh"
    target.write_file("backend", path, b"#!/bin/sh\necho v1\n")
    target.exec("backend", ["sh", "-c", f"chmod 0750 {path} && chown nobody:nogroup {path}"])
    target.write_file("backend", path, b"#!/bin/sh\necho v2\n")
    assert target.exec("backend", ["stat", "-c", "%a %U", path]).stdout == "750 nobody\n"
    assert target.exec("backend", [path]).stdout == "v2\n"


def test_delete_failure_is_an_error(target: ComposeTarget) -> None:
    target.exec("backend", ["mkdir", "-p", "/srv/app/a-directory"])
    with pytest.raises(Exception, match="cannot delete /srv/app/a-directory in backend"):
        target.delete_file("backend", "/srv/app/a-directory")


def test_persistent_and_non_persistent_paths(target: ComposeTarget) -> None:
    assert target.files.is_persistent("backend", "/srv/app/x.py")
    assert target.files.is_persistent("backend", "relative/x.py")  # under working_dir /srv/app
    assert not target.files.is_persistent("backend", "/srv/application.py")
    assert target.files.is_persistent("db", "/var/lib/postgresql/data/PG_VERSION")  # named volume
    assert not target.files.is_persistent("db", "/etc/hostname-copy")
    assert not target.files.is_persistent("backend", "/srv/scratch/x.py")  # tmpfs: a mount, gone with the container
    # Docker's archive API cannot see into a tmpfs mount: a clear error, not a write that silently vanishes.
    with pytest.raises(StepFailed, match="cannot write into /srv/scratch in backend: it is on the tmpfs mount"):
        target.write_file("backend", "/srv/scratch/x.py", b"x = 1\n")
    with pytest.raises(StepFailed, match="cannot read /srv/scratch/x.py in backend: it is on the tmpfs mount"):
        target.read_file("backend", "/srv/scratch/x.py")

    target.write_file("backend", "/opt/rbtest/note.txt", b"gone after a recreate\n")
    assert target.read_file("backend", "/opt/rbtest/note.txt") == b"gone after a recreate\n"
    target.delete_file("backend", "/opt/rbtest/note.txt")
    assert target.warnings == [
        "/opt/rbtest/note.txt in backend is not on a bind mount or volume: "
        "the change is lost when the container is recreated"
    ]


# --- the database ----------------------------------------------------------------------------------


def test_database_settings_from_postgres_environment(target: ComposeTarget) -> None:
    settings = target.database_settings()
    assert (settings.host, settings.port, settings.via) == ("127.0.0.1", DB_PORT, "host network")
    assert (settings.user, settings.password, settings.dbname) == ("runbook", "runbook-secret", "shop")
    with psycopg.connect(**settings.conninfo()) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("runbook", "shop")


def test_credentials_from_config_with_the_containers_address(stack: None, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RBTEST_DB_PASSWORD", "runbook-secret")
    config = Config(project_dir=tmp_path, database=DatabaseConfig(password_env="RBTEST_DB_PASSWORD"))
    settings = ComposeTarget(config, project_name=PROJECT).database_settings()
    assert (settings.port, settings.password, settings.via) == (DB_PORT, "runbook-secret", "host network")


def test_describe(target: ComposeTarget, docker_client: docker.DockerClient) -> None:
    assert target.describe() == {
        "target": "compose", "project": PROJECT, "compose_file": "", "docker_host": target.containers.docker_host,
        "db": container_name(docker_client, "db"), "backend": container_name(docker_client, "backend"),
    }


def test_describe_without_docker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    info = ComposeTarget(Config(project_dir=tmp_path), project_name=PROJECT).describe()
    assert info["project"] == PROJECT
    assert info["db"] == info["backend"]
    assert info["db"].startswith("(unavailable: cannot reach the Docker daemon")


# --- finding the project ---------------------------------------------------------------------------


def test_project_found_from_the_directory_name(stack: None, tmp_path: Path) -> None:
    directory = tmp_path / "RBTest-Compose"
    directory.mkdir()
    target = ComposeTarget(Config(project_dir=directory))
    target.check_ready(["db", "backend"])
    assert target.containers.project.name == PROJECT


def test_project_found_from_the_compose_file_name(stack: None, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    (tmp_path / "compose.yaml").write_text(f"name: {PROJECT}\nservices: {{}}\n")
    target = ComposeTarget(Config(project_dir=tmp_path))
    target.check_ready(["db"])
    assert target.describe()["compose_file"] == str((tmp_path / "compose.yaml").resolve())


def test_service_names_are_mapped(stack: None, tmp_path: Path) -> None:
    config = Config(project_dir=tmp_path, services=ServiceNames(db="backend", backend="db"))
    target = ComposeTarget(config, project_name=PROJECT)
    assert "postgres" in target.exec("backend", ["ps", "-eo", "args"]).stdout


# --- errors ----------------------------------------------------------------------------------------


def test_docker_unreachable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    target = ComposeTarget(Config(project_dir=tmp_path), project_name=PROJECT)
    with pytest.raises(EnvironmentNotReady) as caught:
        target.check_ready(["db"])
    assert caught.value.exit_code == 4
    assert str(caught.value) == ("cannot reach the Docker daemon at unix:///nonexistent.sock: "
                                 "No such file or directory (start Docker or set DOCKER_HOST)")


def test_unknown_project(stack: None, tmp_path: Path) -> None:
    target = ComposeTarget(Config(project_dir=tmp_path), project_name="rbtest-nothing-here")
    with pytest.raises(EnvironmentNotReady) as caught:
        target.check_ready(["db"])
    assert caught.value.exit_code == 4
    assert str(caught.value) == ("no Compose project 'rbtest-nothing-here' (name from --project-name) is running "
                                 "here (start it with `docker compose up -d` or pass --project-name)")


def test_missing_service_names_the_running_ones(stack: None, tmp_path: Path) -> None:
    config = Config(project_dir=tmp_path, services=ServiceNames(backend="web"))
    target = ComposeTarget(config, project_name=PROJECT)
    with pytest.raises(EnvironmentNotReady, match=r"no service 'web' \(running services: backend, db\)") as caught:
        target.check_ready(["db", "backend"])
    assert caught.value.exit_code == 4


def test_stopped_service(target: ComposeTarget, docker_client: docker.DockerClient) -> None:
    container = docker_client.containers.get(container_name(docker_client, "backend"))
    target.check_ready(["backend"])
    container.stop(timeout=1)
    try:
        stopped = r"'backend' .* is exited.*docker compose start backend"
        with pytest.raises(EnvironmentNotReady, match=stopped):
            target.exec("backend", ["true"])  # cached container gone stale: looked up again
        with pytest.raises(EnvironmentNotReady, match=stopped):
            target.list_files("backend", "/srv/app")
        with pytest.raises(EnvironmentNotReady, match="docker compose start backend") as caught:
            target.check_ready(["backend"])
        assert caught.value.exit_code == 4
    finally:
        container.start()
    target.check_ready(["backend"])
    assert target.exec("backend", ["true"]).exit_code == 0


def test_two_containers_for_one_service(target: ComposeTarget, app_dir: Path,
                                       docker_client: docker.DockerClient) -> None:
    compose("up", "-d", "--no-recreate", "--scale", "backend=2", "backend", app_dir=app_dir)
    try:
        target.check_ready(["db", "backend"])
        assert target.containers.container("backend").name == container_name(docker_client, "backend", 1)
        assert container_name(docker_client, "backend", 2) in target.warnings[0]
        assert len(target.warnings) == 1
        assert "runs 2 containers" in target.warnings[0]
        assert "--scale backend=1" in target.warnings[0] and "--project-name" in target.warnings[0]
        assert target.exec("backend", ["true"]).exit_code == 0
    finally:
        compose("up", "-d", "--no-recreate", "--scale", "backend=1", "backend", app_dir=app_dir)


def test_a_container_stopped_between_create_and_start_is_one_line(target: ComposeTarget,
                                                                   docker_client: docker.DockerClient) -> None:
    container = docker_client.containers.get(container_name(docker_client, "backend"))
    _, exec_id = target.execs.create("backend", ["true"], None, None, None)
    container.stop(timeout=1)
    try:
        # The daemon answers 404 or 409 to starting it now: that is the step's service gone, not a traceback.
        with pytest.raises(EnvironmentNotReady) as caught:
            target.execs.collect(exec_id, "true in backend", "backend", 10)
    finally:
        container.start()
    assert caught.value.exit_code == 4
    message = str(caught.value)
    assert message.startswith("service backend stopped during the step (")
    assert message.endswith("(start it with `docker compose up -d backend`)") and "\n" not in message
    assert target.exec("backend", ["true"]).exit_code == 0  # looked up again, not the stale container


def test_files_stream_through_the_sdk_path_that_ssh_takes(stack: None, tmp_path: Path) -> None:
    target = ComposeTarget(Config(project_dir=tmp_path), project_name=PROJECT, stream_via_sdk=True)
    assert not target.execs.hijack_supported(stdin=True) and not target.execs.hijack_supported(stdin=False)
    assert ComposeTarget(Config(project_dir=tmp_path), project_name=PROJECT).execs.hijack_supported(stdin=True)
    payload = os.urandom(3 * 1024 * 1024 + 17)  # not a multiple of the tar block or the chunk size
    source = tmp_path / "payload.bin"
    source.write_bytes(payload)
    # stdin: copied in with put_archive, read from there by the command, removed afterwards.
    result = target.exec_from_file("db", ["sh", "-c", "sha256sum; echo to-stderr >&2"], source)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split()[0] == hashlib.sha256(payload).hexdigest()
    assert result.stderr == "to-stderr\n"
    leftovers = target.exec("db", ["sh", "-c", "ls -a /tmp | grep -c '^.runbook-' || true"]).stdout
    assert leftovers.strip() == "0"
    # stdout: the SDK's demuxed stream written to the file chunk by chunk; stderr kept apart.
    dest = tmp_path / "out.bin"
    result = target.exec_to_file("db", ["sh", "-c", "head -c 4000000 /dev/zero; echo done >&2"], dest)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "done\n")
    assert dest.read_bytes() == b"\0" * 4000000
    assert dest.stat().st_mode & 0o777 == 0o600
    # A failing command keeps its exit code on this path too.
    assert target.exec_to_file("db", ["sh", "-c", "exit 7"], tmp_path / "none.bin").exit_code == 7


def test_one_container_list_and_one_inspect_per_service_before_the_steps(stack: None, tmp_path: Path) -> None:
    calls: dict[str, int] = {"containers": 0, "inspect_container": 0}

    def counting_client() -> docker.DockerClient:
        client = docker.from_env()
        for name in calls:
            real = getattr(client.api, name)

            def counted(*args, _real=real, _name=name, **kwargs):
                calls[_name] += 1
                return _real(*args, **kwargs)

            setattr(client.api, name, counted)
        return client

    target = ComposeTarget(Config(project_dir=tmp_path), project_name=PROJECT, client_factory=counting_client)
    # What the executor does before the first step.
    target.describe()
    target.check_ready(["db", "backend"])
    target.database_settings()
    assert calls == {"containers": 1, "inspect_container": 2}
    for _ in range(3):
        assert target.exec("backend", ["true"]).exit_code == 0
    assert calls == {"containers": 1, "inspect_container": 2}  # steps reuse what was found
    time.sleep(1.1)
    target.check_ready(["db", "backend"])  # later, a check lists again but need not inspect again
    assert calls == {"containers": 2, "inspect_container": 2}
