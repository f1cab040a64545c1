"""The recording target: records what it is asked, answers from its script, keeps its files in a dict."""

from __future__ import annotations

import pytest

from runbook.targets.base import ExecResult, MissingFile, Target
from runbook.targets.recording import Call, RecordingTarget


def test_it_is_a_target_and_answers_success_with_empty_output_by_default():
    target = RecordingTarget()
    assert isinstance(target, Target)
    result = target.exec("backend", ["python", "manage.py", "migrate"], env={"A": "1"}, workdir="/app", user="web",
                         timeout=5)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert target.calls == [Call("exec", "backend", ("python", "manage.py", "migrate"), env={"A": "1"},
                                 workdir="/app", user="web", timeout=5)]
    assert target.commands() == ["python manage.py migrate"]


def test_the_exact_line_wins_then_the_longest_scripted_start():
    target = RecordingTarget({
        "python manage.py": ExecResult(1, "", "generic\n"),
        "python manage.py migrate": ExecResult(0, "migrated\n"),
        "python manage.py migrate shop 0002": ExecResult(0, "exact\n"),
    })
    assert target.exec("backend", ["python", "manage.py", "migrate", "shop", "0002"]).stdout == "exact\n"
    assert target.exec("backend", ["python", "manage.py", "migrate", "shop"]).stdout == "migrated\n"
    assert target.exec("backend", ["python", "manage.py", "check"]).stderr == "generic\n"
    # A start matches whole words only: `python manage.pyc` is not `python manage.py ...`.
    assert target.exec("backend", ["python", "manage.pyc"]).exit_code == 0


def test_answers_in_turn_repeat_the_last_and_a_function_sees_the_call():
    target = RecordingTarget({
        "pg_isready": [ExecResult(2), ExecResult(0, "ready\n")],
        "echo": lambda call: ExecResult(0, " ".join(call.argv[1:]) + f" in {call.service}\n"),
    })
    assert [target.exec("db", ["pg_isready"]).exit_code for _ in range(3)] == [2, 0, 0]
    assert target.exec("db", ["echo", "hi", "there"]).stdout == "hi there in db\n"


def test_scripted_output_streams_to_the_callback():
    target = RecordingTarget({"cat": ExecResult(1, "out\n", "err\n")})
    seen: list[tuple[str, str]] = []
    target.exec("backend", ["cat"], on_output=lambda stream, text: seen.append((stream, text)))
    assert seen == [("stdout", "out\n"), ("stderr", "err\n")]


def test_files_live_in_a_dict_and_every_operation_is_recorded():
    target = RecordingTarget(files={"/app/shop/migrations/0001_initial.py": b"# one"}, workdir="/app")
    target.write_file("backend", "shop/migrations/0002_more.py", b"# two")
    target.write_file("backend", "/app/deep/er/migrations/0001_initial.py", b"# deep")
    target.write_file("backend", "/app/shop/models.py", b"# models")
    assert target.read_file("backend", "/app/shop/migrations/0002_more.py") == b"# two"
    assert target.list_files("backend", "/app", "**/migrations/*.py") == [
        "/app/deep/er/migrations/0001_initial.py",
        "/app/shop/migrations/0001_initial.py",
        "/app/shop/migrations/0002_more.py",
    ]
    assert target.list_files("backend", "/app/shop", "*.py") == ["/app/shop/models.py"]
    target.delete_file("backend", "shop/migrations/0001_initial.py")
    with pytest.raises(MissingFile, match="no such file"):
        target.read_file("backend", "/app/shop/migrations/0001_initial.py")
    assert [(call.operation, call.path) for call in target.calls] == [
        ("write_file", "/app/shop/migrations/0002_more.py"),
        ("write_file", "/app/deep/er/migrations/0001_initial.py"),
        ("write_file", "/app/shop/models.py"),
        ("read_file", "/app/shop/migrations/0002_more.py"),
        ("list_files", "/app"),
        ("list_files", "/app/shop"),
        ("delete_file", "/app/shop/migrations/0001_initial.py"),
        ("read_file", "/app/shop/migrations/0001_initial.py"),
    ]
    assert target.calls[0].data == b"# two"


def test_exec_to_file_puts_the_scripted_output_in_the_file_owner_only(tmp_path):
    target = RecordingTarget({"pg_dump": ExecResult(0, "-- dump\n", "")})
    dest = tmp_path / "dump.sql"
    result = target.exec_to_file("db", ["pg_dump", "shop"], dest)
    assert (result.exit_code, result.stdout) == (0, "")
    assert dest.read_text() == "-- dump\n"
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    target.exec_from_file("db", ["psql"], dest)
    assert [(call.operation, call.path) for call in target.calls] == [("exec_to_file", str(dest)),
                                                                      ("exec_from_file", str(dest))]


def test_workdir_environment_warnings_and_description():
    target = RecordingTarget(workdir="/srv/app", environments={"db": {"POSTGRES_DB": "shop"}},
                             facts={"project": "demo"})
    assert target.workdir == "/srv/app" and RecordingTarget().workdir is None
    assert target.environment("db") == {"POSTGRES_DB": "shop"} and target.environment("backend") == {}
    assert target.describe() == {"target": "recording", "project": "demo"}
    seen: list[str] = []
    target.warnings.listen(seen.append)
    target.warn("two containers")
    target.warn("two containers")
    assert target.warnings == ["two containers"] and seen == ["two containers"]
    target.check_ready(["db", "backend"])  # nothing can be down
    assert target.database_settings().via == "recording: no connection"
