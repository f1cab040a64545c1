"""The local target: real subprocesses, output kept apart and streamed, timeouts kill the group."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from runbook.config import Config
from runbook.errors import ConfigError, EnvironmentNotReady
from runbook.targets.base import FileAccessError, MissingFile, Target, Warnings
from runbook.targets.capture import OutputBuffer
from runbook.targets.local import LocalTarget, settings_from_config

PY = sys.executable


@pytest.fixture
def target(tmp_path) -> LocalTarget:
    return LocalTarget(Config(project_dir=tmp_path))


def test_is_a_target(target, tmp_path):
    assert isinstance(target, Target)
    assert target.describe() == {"target": "local", "workdir": str(tmp_path)}
    target.check_ready(["backend"])


def test_the_backend_runs_on_this_host_in_its_workdir(tmp_path, monkeypatch):
    (tmp_path / "app").mkdir()
    config = Config(project_dir=tmp_path)
    config.backend.workdir = "app"
    target = LocalTarget(config)
    assert target.on_this_host is True
    assert target.workdir == str(tmp_path / "app")
    monkeypatch.setenv("RUNBOOK_TEST_LOCAL_ENV", "from-this-process")
    environment = target.environment("backend")
    assert environment["RUNBOOK_TEST_LOCAL_ENV"] == "from-this-process"
    assert environment == dict(os.environ)
    environment["RUNBOOK_TEST_LOCAL_ENV"] = "changed"  # a copy: the process keeps its own
    assert os.environ["RUNBOOK_TEST_LOCAL_ENV"] == "from-this-process"
    assert isinstance(target.warnings, Warnings) and target.warnings == []
    assert target.streams_stdin() is True


def test_missing_workdir_not_ready(tmp_path):
    config = Config(project_dir=tmp_path)
    config.backend.workdir = "nowhere"
    with pytest.raises(EnvironmentNotReady):
        LocalTarget(config).check_ready(["backend"])


@pytest.mark.parametrize("code", [0, 1, 3, 77])
def test_exit_codes(target, code):
    result = target.exec("backend", [PY, "-c", f"import sys; sys.exit({code})"])
    assert result.exit_code == code
    assert result.timed_out is False and result.truncated is False
    assert result.duration > 0


def test_stdout_and_stderr_kept_apart(target):
    code = "import sys; print('to out'); print('to err', file=sys.stderr); print('more out')"
    result = target.exec("backend", [PY, "-c", code])
    assert result.stdout == "to out\nmore out\n"
    assert result.stderr == "to err\n"


def test_on_output_streams_in_order(target):
    code = (
        "import sys, time\n"
        "for i in range(3):\n"
        "    print(f'out {i}', flush=True)\n"
        "    time.sleep(0.05)\n"
        "    print(f'err {i}', file=sys.stderr, flush=True)\n"
        "    time.sleep(0.05)\n"
    )
    seen: list[tuple[str, str, float]] = []
    started = time.monotonic()
    result = target.exec("backend", [PY, "-c", code],
                         on_output=lambda stream, text: seen.append((stream, text, time.monotonic())))
    merged: list[tuple[str, str]] = []
    for stream, text, _ in seen:  # a line may come in several chunks; its stream and place may not change
        if merged and merged[-1][0] == stream:
            merged[-1] = (stream, merged[-1][1] + text)
        else:
            merged.append((stream, text))
    assert merged == [
        ("stdout", "out 0\n"), ("stderr", "err 0\n"),
        ("stdout", "out 1\n"), ("stderr", "err 1\n"),
        ("stdout", "out 2\n"), ("stderr", "err 2\n"),
    ]
    # Streamed as it came, not all at the end.
    assert seen[0][2] - started < seen[-1][2] - started - 0.1
    assert result.stdout == "out 0\nout 1\nout 2\n"


def test_multibyte_text_split_across_reads(target):
    code = ("import sys\nb = 'é€😀'.encode()\n"
            "for i in range(len(b)):\n    sys.stdout.buffer.write(b[i:i+1])\n    sys.stdout.flush()\n")
    result = target.exec("backend", [PY, "-c", code])
    assert result.stdout == "é€😀"


def test_env_is_added_to_the_environment(target, monkeypatch):
    monkeypatch.setenv("RUNBOOK_TEST_INHERITED", "kept")
    result = target.exec("backend", ["sh", "-c", 'echo "$APP_LABEL|$RUNBOOK_TEST_INHERITED"'],
                         env={"APP_LABEL": "a b; c"})
    assert result.stdout == "a b; c|kept\n"


def test_workdir_default_relative_and_absolute(target, tmp_path):
    (tmp_path / "sub").mkdir()
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert target.exec("backend", ["pwd"]).stdout.strip() == str(tmp_path)
    assert target.exec("backend", ["pwd"], workdir="sub").stdout.strip() == str(tmp_path / "sub")
    assert target.exec("backend", ["pwd"], workdir=str(other)).stdout.strip() == str(other)


def test_configured_backend_workdir(tmp_path):
    (tmp_path / "app").mkdir()
    config = Config(project_dir=tmp_path)
    config.backend.workdir = "app"
    local = LocalTarget(config)
    assert local.exec("backend", ["pwd"]).stdout.strip() == str(tmp_path / "app")


def test_relative_backend_workdir_is_applied_once(tmp_path):
    # The executor and snapshot pass backend.workdir to exec again (exec_options): it must not become app/app.
    from runbook.artifacts.snapshot import backend_root
    from runbook.frameworks.backend import exec_options

    (tmp_path / "app").mkdir()
    config = Config(project_dir=tmp_path)
    config.backend.workdir = "app"
    local = LocalTarget(config)
    options = exec_options(config, "backend")
    result = local.exec("backend", ["pwd"], env=options.env, workdir=options.workdir)
    assert (result.exit_code, result.stdout.strip()) == (0, str(tmp_path / "app"))
    assert backend_root(local, config) == str(tmp_path / "app")


def test_user_is_refused(target):
    with pytest.raises(ConfigError):
        target.exec("db", ["true"], user="postgres")


def test_stdin_is_empty(target):
    result = target.exec("backend", [PY, "-c", "import sys; print(repr(sys.stdin.read()))"])
    assert result.stdout == "''\n"


def test_command_not_found(target, tmp_path):
    result = target.exec("backend", ["runbook-no-such-command-xyz", "arg"])
    assert result.exit_code == 127
    assert result.stdout == ""
    assert "runbook-no-such-command-xyz: command not found" in result.stderr


def test_missing_workdir_is_not_reported_as_command_not_found(target, tmp_path):
    result = target.exec("backend", ["true"], workdir=str(tmp_path / "gone"))
    assert result.exit_code != 0
    assert "command not found" not in result.stderr
    assert str(tmp_path / "gone") in result.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for a reaper is dead too.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_timeout_kills_the_whole_process_group(target):
    script = "sleep 300 & echo $!; wait"
    started = time.monotonic()
    result = target.exec("backend", ["sh", "-c", script], timeout=0.5)
    elapsed = time.monotonic() - started
    assert result.timed_out is True
    assert result.exit_code == 124
    assert elapsed < 60  # a hang guard, not a speed target: without the kill it waits 300 s
    sleeper = int(result.stdout.split()[0])
    deadline = time.monotonic() + 5
    while _alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(sleeper), "the background sleep survived the timeout"


def test_no_timeout_when_fast_enough(target):
    result = target.exec("backend", ["sh", "-c", "echo done"], timeout=10)
    assert (result.exit_code, result.timed_out, result.stdout) == (0, False, "done\n")


def test_output_larger_than_the_buffer_is_truncated_with_a_note(target):
    code = "import sys; sys.stdout.write('H' * 600_000 + 'M' * 1_000_000 + 'T' * 600_000)"
    streamed = []
    result = target.exec("backend", [PY, "-c", code], on_output=lambda s, t: streamed.append(len(t)))
    assert result.exit_code == 0
    assert result.truncated is True
    assert sum(streamed) == 2_200_000, "the full output still streams past"
    assert len(result.stdout) < 1_100_000
    assert result.stdout.startswith("H" * 1000)
    assert result.stdout.endswith("T" * 1000)
    assert "characters cut by runbook" in result.stdout


def test_output_buffer_keeps_head_and_tail():
    buffer = OutputBuffer(head=10, tail=5)
    buffer.add("0123456789")
    buffer.add("abc")
    assert (buffer.truncated, buffer.text()) == (False, "0123456789abc")
    buffer.add("defghij")
    assert buffer.truncated is True
    assert buffer.dropped == 5
    assert buffer.text() == "0123456789\n[... 5 characters cut by runbook ...]\nfghij"


def test_output_buffer_one_large_chunk():
    buffer = OutputBuffer(head=4, tail=4)
    buffer.add("abcdefghijklmnop")
    assert buffer.dropped == 8
    assert buffer.text() == "abcd\n[... 8 characters cut by runbook ...]\nmnop"


def test_files_read_write_list_delete(target, tmp_path):
    target.write_file("backend", "shop/migrations/0001_initial.py", b"# one\n")
    target.write_file("backend", "shop/migrations/0002_more.py", b"# two\n")
    target.write_file("backend", "shop/migrations/__init__.py", b"")
    target.write_file("backend", str(tmp_path / "shop/migrations/0001_initial.py"), b"# replaced\n")
    assert (tmp_path / "shop/migrations/0001_initial.py").read_bytes() == b"# replaced\n"
    assert target.read_file("backend", "shop/migrations/0002_more.py") == b"# two\n"
    # No temporary file left behind by the atomic write.
    assert sorted(p.name for p in (tmp_path / "shop/migrations").iterdir()) == [
        "0001_initial.py", "0002_more.py", "__init__.py"]
    assert target.list_files("backend", "shop/migrations", "0*.py") == [
        str(tmp_path / "shop/migrations/0001_initial.py"),
        str(tmp_path / "shop/migrations/0002_more.py"),
    ]
    assert len(target.list_files("backend", "shop/migrations")) == 3
    assert target.list_files("backend", "no/such/dir") == []
    target.delete_file("backend", "shop/migrations/0002_more.py")
    target.delete_file("backend", "shop/migrations/0002_more.py")  # already gone: fine
    assert not (tmp_path / "shop/migrations/0002_more.py").exists()
    with pytest.raises(MissingFile, match="0002_more.py in backend: No such file"):
        target.read_file("backend", "shop/migrations/0002_more.py")


def test_file_errors_are_one_line_with_the_path_and_the_fix(target, tmp_path):
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FileAccessError) as read:
        target.read_file("backend", "adir")
    assert str(read.value) == f"cannot read {tmp_path / 'adir'} in backend: Is a directory " \
                              "(name a file, not a directory)"
    assert (read.value.path, read.value.service, read.value.exit_code) == (str(tmp_path / "adir"), "backend", 1)
    with pytest.raises(FileAccessError, match="cannot write .*afile/x.py in backend: File exists") as write:
        target.write_file("backend", "afile/x.py", b"y")
    assert write.value.hint == "a file stands where a directory is needed: check the path"
    with pytest.raises(FileAccessError, match=f"cannot write {tmp_path / 'adir'} in backend: Is a directory"):
        target.write_file("backend", "adir", b"y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]  # no temporary file left
    with pytest.raises(FileAccessError, match=f"cannot delete {tmp_path / 'adir'} in backend: Is a directory"):
        target.delete_file("backend", "adir")
    with pytest.raises(MissingFile) as missing:
        target.read_file("backend", str(tmp_path / "nowhere.py"))
    assert missing.value.hint == "check the path" and missing.value.path == str(tmp_path / "nowhere.py")


def test_a_url_keeps_the_socket_directory_and_sslmode(tmp_path):
    config = Config(project_dir=tmp_path)
    config.database.url = "postgresql://app:s%40cret@/shop?host=/var/run/postgresql&sslmode=require"
    settings = settings_from_config(config)
    assert (settings.host, settings.port, settings.user, settings.password, settings.dbname) == (
        "/var/run/postgresql", 5432, "app", "s@cret", "shop")
    assert settings.parameters == {"sslmode": "require"}
    info = settings.conninfo()
    assert (info["host"], info["sslmode"], info["password"]) == ("/var/run/postgresql", "require", "s@cret")


def test_a_postgres_url_with_host_and_port(tmp_path):
    config = Config(project_dir=tmp_path)
    config.database.url = "Postgres://u@db.internal:6543/x?host=/tmp&sslmode=verify-full&sslrootcert=/ca.pem"
    settings = settings_from_config(config)
    # libpq's rule: host= in the query names where to connect, over the URL's host.
    assert (settings.host, settings.port, settings.user, settings.dbname) == ("/tmp", 6543, "u", "x")
    assert settings.parameters == {"sslmode": "verify-full", "sslrootcert": "/ca.pem"}


@pytest.mark.parametrize("url", ["postgresql://u:hunter2@[::1/db", "postgresql://u:hunter2@h/db?nope=1",
                                 "postgresql://u:hunter2@h:1,h2:2/db"])
def test_a_broken_url_is_a_config_error_that_keeps_the_password_out(tmp_path, url):
    config = Config(project_dir=tmp_path)
    config.database.url = url
    with pytest.raises(ConfigError) as caught:
        settings_from_config(config)
    assert "database.url" in str(caught.value) and "hunter2" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_database_settings_from_pg_environment(target, monkeypatch):
    for key, value in {"PGHOST": "pg.local", "PGPORT": "6000", "PGUSER": "app", "PGPASSWORD": "pw"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PGDATABASE", raising=False)
    settings = target.database_settings()
    assert (settings.host, settings.port, settings.user, settings.password, settings.dbname) == (
        "pg.local", 6000, "app", "pw", "app")
