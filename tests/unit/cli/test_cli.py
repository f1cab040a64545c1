"""The command line: output through typer's runner, exit codes through the installed script."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import runbook
from runbook.cli.app import app, console, err_console

SCRIPT = Path(sys.executable).parent / "runbook"
# The script must run the code under test, even when the venv holds a plain (non-editable) install.
CODE_ROOT = Path(runbook.__file__).resolve().parent.parent

GOOD = """\
name: good
description: A harmless playbook.
variables:
  who: {default: world}
steps:
  - name: greet
    run: [echo, "hello {{ who }}"]
"""

BROKEN = """\
name: broken
description: d
steps:
  - name: one
    run: [echo]
    bogus: 1
"""


def run_cli(*args: str, cwd: Path, stdin: str | None = "", env: dict[str, str] | None = None,
            path: list[Path] = ()) -> subprocess.CompletedProcess:
    """Run the installed console script: the only place errors become exit codes."""
    if not SCRIPT.exists():
        pytest.fail(f"no runbook console script at {SCRIPT}; install the package (scripts/setup-venv.sh does)")
    env = {**{k: v for k, v in os.environ.items() if k != "RUNBOOK_TRACEBACK"}, **(env or {})}
    env["COLUMNS"] = "200"
    env["PYTHONPATH"] = os.pathsep.join([*map(str, path), str(CODE_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, input=stdin, capture_output=True, text=True,
                          env=env, timeout=60)


def assert_no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout


def set_width(monkeypatch: pytest.MonkeyPatch, columns: int) -> None:
    """Make the app's consoles `columns` wide for one test, whatever the environment.

    rich fixes a console's width when it is made with COLUMNS set, as in a pytest-xdist worker (COLUMNS=80):
    after that, COLUMNS in invoke's env no longer counts, so the width is set on the consoles themselves.
    """
    for each in (console, err_console):
        monkeypatch.setattr(each, "_width", columns)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    set_width(monkeypatch, 200)
    return CliRunner()


def test_list_shows_fake_initial(runner, tmp_path):
    result = runner.invoke(app, ["--project-dir", str(tmp_path), "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "fake-initial" in line)
    assert "django" in line and "built-in" in line


def test_list_shows_the_project_playbooks(runner, tmp_path, monkeypatch):
    set_width(monkeypatch, 250)  # the project's playbooks come from a long tmp path, in a column never wrapped
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "good.yml").write_text(GOOD)
    (tmp_path / "ops" / "broken.yml").write_text(BROKEN)
    (tmp_path / "runbook.yml").write_text("playbook_dirs: [ops]\n")
    result = runner.invoke(app, ["--project-dir", str(tmp_path), "list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("good" in line and "A harmless playbook." in line for line in lines)
    assert any("broken" in line and "invalid" in line for line in lines)


def test_show(runner, tmp_path):
    result = runner.invoke(app, ["--project-dir", str(tmp_path), "show", "fake-initial"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "fake-initial" in result.output and "destructive" in result.output
    assert "1. check every unapplied migration against the schema and plan" in result.output


def test_show_masks_secret_defaults(runner, tmp_path):
    (tmp_path / "p.yml").write_text(
        "name: p\ndescription: d\nvariables:\n  db_password: {default: pw-default-1}\n"
        "  key: {default: key-default-2, secret: true}\n  app: {default: shop}\n"
        "steps:\n  - name: s\n    run: [echo]\n")
    result = runner.invoke(app, ["--project-dir", str(tmp_path), "show", str(tmp_path / "p.yml")],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "pw-default-1" not in result.output and "key-default-2" not in result.output
    assert result.output.count("******") == 2 and "'shop'" in result.output


def test_plan_prints_rendered_commands(runner, tmp_path):
    result = runner.invoke(app, ["--project-dir", str(tmp_path), "plan", "fake-initial", "--var", "app=shop"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "var app = 'shop'" in result.output
    assert "django.plan-fake-initial" in result.output and "shop" in result.output


def test_validate_good_file(tmp_path):
    (tmp_path / "good.yml").write_text(GOOD)
    result = run_cli("validate", "good.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "good.yml: ok"
    assert result.stderr == ""


def test_validate_builtin(tmp_path):
    builtin = Path(__file__).resolve().parents[3] / "playbooks" / "fake-initial.yml"
    result = run_cli("validate", str(builtin), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{builtin}: ok"


def test_validate_broken_file(tmp_path):
    (tmp_path / "good.yml").write_text(GOOD)
    (tmp_path / "broken.yml").write_text(BROKEN)
    result = run_cli("validate", "good.yml", "broken.yml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "broken.yml:6: steps.0.bogus: unknown key"
    assert "good.yml: ok" in result.stdout
    assert_no_traceback(result)


def test_validate_unknown_template_name(tmp_path):
    (tmp_path / "p.yml").write_text(GOOD.replace("{{ who }}", "{{ whom }}"))
    result = run_cli("validate", "p.yml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("p.yml:6: step 1 (greet): unknown variable whom in 'hello {{ whom }}' "
                                     "(declare it under `variables:` in the playbook)")
    assert_no_traceback(result)


def test_validate_points_at_the_line_of_every_kind_of_error(tmp_path):
    (tmp_path / "syntax.yml").write_text(GOOD.replace("{{ who }}", "{{ who }"))
    (tmp_path / "default.yml").write_text(GOOD.replace("who: {default: world}", "who: {type: int, default: many}"))
    (tmp_path / "choice.yml").write_text(GOOD.replace("who: {default: world}",
                                                      "who:\n    choices: [a, b]\n    default: c"))
    (tmp_path / "twice.yml").write_text(GOOD + "    run: [echo, again]\n")
    result = run_cli("validate", "syntax.yml", "default.yml", "choice.yml", "twice.yml", cwd=tmp_path)
    assert result.returncode == 2
    assert_no_traceback(result)
    syntax, default, choice, twice = result.stderr.strip().splitlines()
    assert syntax.startswith("syntax.yml:6: step 1 (greet): template 'hello {{ who }': ")
    assert default == "default.yml:4: variables.who.default: variable who must be a whole number, got 'many'"
    assert choice == "choice.yml:6: variables.who.default: variable who must be one of a, b, got 'c'"
    assert twice == "twice.yml:8: steps.0.run: duplicate key (first given on line 7)"


def test_plan_unknown_variable_is_one_line_exit_2(tmp_path):
    result = run_cli("plan", "fake-initial", "--var", "nope=1", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("runbook: error: unknown variable nope for playbook fake-initial")
    assert "it takes: app" in lines[0]
    assert_no_traceback(result)


def test_unknown_playbook_exit_2(tmp_path):
    result = run_cli("plan", "no-such-playbook", cwd=tmp_path)
    assert result.returncode == 2
    assert "no playbook named 'no-such-playbook'" in result.stderr
    assert "fake-initial" in result.stderr
    assert_no_traceback(result)


def test_destructive_run_without_tty_and_yes_is_refused(tmp_path):
    result = run_cli("run", "fake-initial", cwd=tmp_path, stdin="y\n")
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert "destructive" in result.stderr
    assert_no_traceback(result)
    assert not (tmp_path / ".runbook").exists()


def test_dry_run_prints_commands_and_writes_nothing(tmp_path):
    result = run_cli("run", "fake-initial", "--dry-run", "--var", "app=shop", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "django.plan-fake-initial" in result.stdout
    assert "python manage.py showmigrations --list" in result.stdout
    assert "nothing was run" in result.stdout
    assert not (tmp_path / ".runbook").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_dry_run_goes_through_the_run_and_runs_no_command(tmp_path):
    (tmp_path / "touch.yml").write_text("name: touch\ndescription: d\nsteps:\n  - name: make a file\n"
                                        "    run: [touch, made-by-the-step]\n")
    result = run_cli("--target", "local", "run", "touch.yml", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert any(line.startswith("touch: dry run (exit 0, ") for line in lines)
    assert "steps: 1 not run" in lines
    assert any(line.startswith("   not run (") and line.endswith(" s) dry run") for line in lines)
    assert lines[-1] == "dry run: nothing was run, nothing was changed, nothing was written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["touch.yml"]


def test_dry_run_keeps_its_report_only_where_asked(tmp_path):
    (tmp_path / "touch.yml").write_text("name: touch\ndescription: d\nsteps:\n  - name: make a file\n"
                                        "    run: [touch, made-by-the-step]\n")
    result = run_cli("--target", "local", "run", "touch.yml", "--dry-run", "--report", "dry.md", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == ("dry run: nothing was run, nothing was changed; "
                                              "the only file written is the report: dry.md")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dry.md", "touch.yml"]
    assert (tmp_path / "dry.md").read_text().startswith("# 📝 DRY RUN: touch")
    result = run_cli("--target", "local", "run", "touch.yml", "--dry-run", "--report", "missing/dry.md",
                     cwd=tmp_path)
    assert result.returncode == 2
    assert one_error_line(result) == ("runbook: error: cannot write the dry run's report to missing/dry.md "
                                      "(the reason is in the note above)")
    assert "could not write the report: [Errno 2] No such file or directory" in result.stdout


def test_project_dir_option(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    result = run_cli("--project-dir", str(project), "run", "fake-initial", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (project / ".runbook").exists() and not (tmp_path / ".runbook").exists()
    result = run_cli("--project-dir", str(tmp_path / "missing"), "list", cwd=tmp_path)
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert_no_traceback(result)


def test_bad_target_is_a_usage_error(tmp_path):
    result = run_cli("--target", "bogus", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert "must be compose or local" in result.stderr
    assert_no_traceback(result)


def test_missing_argument_is_a_usage_error(tmp_path):
    result = run_cli("plan", cwd=tmp_path)
    assert result.returncode == 2
    assert "Missing argument" in result.stderr
    assert_no_traceback(result)


def test_broken_config_is_one_line_exit_2(tmp_path):
    (tmp_path / "runbook.yml").write_text("target: local\nservices:\n  cache: redis\n")
    result = run_cli("list", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"runbook: error: {tmp_path / 'runbook.yml'}:3: services.cache: ")
    assert_no_traceback(result)


def test_broken_project_playbook_lists_every_problem(tmp_path):
    (tmp_path / "bad.yml").write_text("name: Bad\nsteps: []\n")
    result = run_cli("plan", "bad.yml", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "bad.yml:1: name: use lower-case letters, digits, '-', '_' or '.'",
        "bad.yml:1: description: Field required",
        "bad.yml:2: steps: List should have at least 1 item after validation, not 0",
    ]


def test_run_without_database_exits_4_and_still_writes_a_report(tmp_path, monkeypatch):
    # Nothing listens on port 1: the run cannot reach PostgreSQL, which is exit 4 (environment not ready).
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", "1")
    (tmp_path / "local.yml").write_text(
        "name: local\ndescription: d\nsnapshot: {database: false, history: false}\n"
        "steps:\n  - name: greet\n    run: [echo, hi]\n"
    )
    result = run_cli("--target", "local", "run", "local.yml", "--yes", cwd=tmp_path)
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert "database unreachable at 127.0.0.1:1" in result.stdout + result.stderr
    assert_no_traceback(result)
    assert len(list((tmp_path / ".runbook" / "reports").glob("*-local.md"))) == 1


LOCAL = ("name: local\ndescription: d\nsnapshot: {database: false, history: false}\n"
         "steps:\n  - name: greet\n    run: [echo, hi]\n")


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """Return the only stderr line; fail on a traceback or more lines."""
    assert_no_traceback(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_non_utf8_playbook_is_one_line_exit_2(tmp_path):
    (tmp_path / "latin.yml").write_bytes(GOOD.replace("A harmless", "Caf\u00e9").encode("latin-1"))
    for command in (["validate", "latin.yml"], ["plan", "latin.yml"]):
        result = run_cli(*command, cwd=tmp_path)
        assert result.returncode == 2
        assert "latin.yml: not UTF-8 text" in one_error_line(result)


def test_non_utf8_config_is_one_line_exit_2(tmp_path):
    (tmp_path / "runbook.yml").write_bytes("target: local  # caf\u00e9\n".encode("latin-1"))
    result = run_cli("list", cwd=tmp_path)
    assert result.returncode == 2
    assert one_error_line(result).startswith(f"runbook: error: {tmp_path / 'runbook.yml'}: not UTF-8 text")


def test_bad_pgport_is_one_line_exit_2(tmp_path):
    (tmp_path / "local.yml").write_text(LOCAL)
    result = run_cli("--target", "local", "run", "local.yml", "--yes", cwd=tmp_path, env={"PGPORT": "54x"})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert one_error_line(result) == "runbook: error: PGPORT must be a port number, got '54x' (fix or unset PGPORT)"


def test_unwritable_artifacts_dir_is_one_line_exit_4(tmp_path):
    # `.runbook` cannot be created (a file holds its name): the lock cannot be taken, nothing runs.
    (tmp_path / "local.yml").write_text(LOCAL)
    (tmp_path / ".runbook").write_text("not a directory")
    result = run_cli("--target", "local", "run", "local.yml", "--yes", cwd=tmp_path)
    assert result.returncode == 4, (result.stdout, result.stderr)
    line = one_error_line(result)
    assert line.startswith(f"runbook: error: cannot create the run lock {tmp_path / '.runbook' / 'run.lock'}")
    assert "set `artifacts:` in runbook.yml" in line


def test_report_copy_into_a_missing_dir_keeps_the_run_exit_code(tmp_path):
    (tmp_path / "local.yml").write_text(LOCAL)
    result = run_cli("--target", "local", "run", "local.yml", "--yes", "--report", "missing/report.md",
                     cwd=tmp_path, env={"PGHOST": "127.0.0.1", "PGPORT": "1"})
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert_no_traceback(result)
    [report] = (tmp_path / ".runbook" / "reports").glob("*-local.md")
    copy_line, run_line = result.stderr.strip().splitlines()
    assert copy_line.startswith("runbook: error: cannot copy the report to missing/report.md: No such file")
    assert copy_line.endswith(f"(the report is still at {report})")
    assert run_line.startswith("runbook: error: database unreachable")


INJECT_FAULT = """\
import runbook.targets.local


def check_ready(self, services):
    raise RuntimeError("injected fault\\nsecond line")


runbook.targets.local.LocalTarget.check_ready = check_ready
"""


def test_an_unexpected_exception_is_one_line_exit_1_and_the_report_is_written(tmp_path):
    # A bug stand-in: sitecustomize makes the target raise what no code path expects.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(INJECT_FAULT)
    project = tmp_path / "project"
    project.mkdir()
    (project / "local.yml").write_text(LOCAL)
    result = run_cli("--target", "local", "run", "local.yml", "--yes", cwd=project, path=[hook])
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert one_error_line(result) == ("runbook: internal error: RuntimeError: injected fault second line "
                                      "(set RUNBOOK_TRACEBACK=1 for details)")
    [twin] = (project / ".runbook" / "reports").glob("*-local.json")
    data = json.loads(twin.read_text())
    assert (data["status"], data["exit_code"]) == ("error", 1)
    assert data["error"].startswith("internal error: RuntimeError: injected fault")
    result = run_cli("--target", "local", "run", "local.yml", "--yes", cwd=project, path=[hook],
                     env={"RUNBOOK_TRACEBACK": "1"})
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_sigterm_stops_diagnose_with_exit_130(tmp_path):
    # The backend's python is a shell that sleeps: diagnose waits in its first inspection.
    (tmp_path / "manage.py").write_text("")
    (tmp_path / "runbook.yml").write_text(
        "target: local\nbackend:\n  manage: [sh, -c, 'touch started; sleep 30', sh, manage.py]\n")
    env = {k: v for k, v in os.environ.items() if k != "RUNBOOK_TRACEBACK"}
    env["PYTHONPATH"] = str(CODE_ROOT)
    proc = subprocess.Popen([str(SCRIPT), "diagnose"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "started").exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert err.strip() == "runbook: interrupted"


def test_the_installed_package_ships_the_builtin_playbooks(tmp_path):
    # Look in the installed distribution itself: registry.builtin_dir() may fall back to the source tree.
    import sysconfig
    from importlib.metadata import distribution

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    shipped = {Path(str(f)).name: Path(distribution("runbook").locate_file(f)).resolve()
               for f in distribution("runbook").files or [] if str(f).startswith("runbook/playbooks/")}
    in_repo = {p.name for p in (Path(__file__).resolve().parents[3] / "playbooks").glob("*.yml")}
    assert "fake-initial.yml" in in_repo
    assert set(shipped) >= in_repo
    for path in shipped.values():
        assert path.is_file() and path.is_relative_to(site), path
    # And the console script finds them there.
    result = run_cli("show", "fake-initial", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    source = Path(next(line for line in result.stdout.splitlines() if line.startswith("source: "))[8:])
    assert source.resolve() == shipped["fake-initial.yml"]
