"""The command line: output through typer's runner, exit codes through the installed script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import runbook
from runbook.cli import app

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


def run_cli(*args: str, cwd: Path, stdin: str | None = "") -> subprocess.CompletedProcess:
    """Run the installed console script: the only place errors become exit codes."""
    if not SCRIPT.exists():
        pytest.skip(f"no runbook script next to {sys.executable}")
    env = {k: v for k, v in os.environ.items() if k != "RUNBOOK_TRACEBACK"}
    env["COLUMNS"] = "200"
    env["PYTHONPATH"] = os.pathsep.join([str(CODE_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, input=stdin, capture_output=True, text=True,
                          env=env, timeout=60)


def assert_no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_list_shows_fake_initial(runner, tmp_path):
    result = runner.invoke(app, ["--project-dir", str(tmp_path), "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "fake-initial" in line)
    assert "django" in line and "built-in" in line


def test_list_shows_the_project_playbooks(runner, tmp_path):
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
    builtin = Path(__file__).resolve().parents[2] / "playbooks" / "fake-initial.yml"
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
    assert "unknown variable whom" in result.stderr
    assert_no_traceback(result)


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
