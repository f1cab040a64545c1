"""Executor.run end to end against the recording target and a recording database: every way a run can end.

Nothing is mocked inside the executor: the lock, the report and the put-back are the real ones, on a
temporary project directory; only what would reach Docker, a process or PostgreSQL is recorded instead.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runbook.artifacts.lock import RunLock
from runbook.config import Config
from runbook.engine.dryrun import RecordingDatabase
from runbook.engine.executor import Executor, signals_held
from runbook.errors import EnvironmentNotReady, StepFailed
from runbook.frameworks.actions import ACTIONS, ActionResult
from runbook.playbook.model import parse_playbook
from runbook.playbook.plan import build_plan
from runbook.playbook.variables import resolve_variables
from runbook.redact import MASK
from runbook.results import RunResult
from runbook.targets.base import DatabaseSettings, ExecResult
from runbook.targets.recording import Call, RecordingTarget

THREE_STEPS = """\
name: three
description: Three steps and a check.
snapshot: {database: false, history: false}
steps:
  - name: first
    run: [echo, one]
  - name: second
    run: [echo, two]
  - name: third
    run: [echo, three]
verify:
  - name: still fine
    run: [echo, check]
"""


@dataclass
class Ran:
    """What one run left: its result, its report, and everything the stack was asked."""

    result: RunResult
    report: Path | None
    target: RecordingTarget
    databases: list[RecordingDatabase]
    events: list[tuple[str, dict]] = field(default_factory=list)

    def stages(self) -> list[str]:
        return [data["name"] for kind, data in self.events if kind == "stage"]

    def report_json(self) -> dict:
        assert self.report is not None
        return json.loads(self.report.with_suffix(".json").read_text())


def run(tmp_path: Path, playbook: str, *, answers=None, sql=None, variables=None, settings=None,
        open_database=None, **options) -> Ran:
    pb = parse_playbook(playbook, "t.yml")
    plan = build_plan(pb, resolve_variables(pb, variables or {}))
    target = RecordingTarget(answers, settings=settings)
    databases: list[RecordingDatabase] = []

    def record_database(target, settings, application_name):
        databases.append(RecordingDatabase(settings, application_name, answers=sql))
        return databases[-1]

    events: list[tuple[str, dict]] = []
    executor = Executor(Config(project_dir=tmp_path), target, on_event=lambda kind, data: events.append((kind, data)),
                        open_database=open_database or record_database, **options)
    result, report = executor.run(plan)
    return Ran(result, report, target, databases, events)


def statuses(records) -> list[str]:
    return [record.status for record in records]


def lock_is_free(tmp_path: Path) -> bool:
    lock = RunLock(tmp_path / ".runbook", "probe")
    lock.acquire()  # raises LockHeld when the run kept it
    lock.release()
    return True


def test_a_run_that_succeeds_runs_every_step_then_verifies(tmp_path):
    ran = run(tmp_path, THREE_STEPS)
    assert (ran.result.status, ran.result.exit_code, ran.result.error) == ("done", 0, "")
    assert statuses(ran.result.steps) == ["ok", "ok", "ok"] and statuses(ran.result.checks) == ["ok"]
    assert ran.target.commands() == ["pwd", "echo one", "echo two", "echo three", "echo check"]
    assert ran.stages() == ["snapshot", "steps", "verify"]
    [database] = ran.databases
    assert database.locked and database.closed
    assert ran.report_json()["status"] == "done"
    assert lock_is_free(tmp_path)
    assert not ran.result.putback  # a success puts nothing back


def test_a_step_runs_with_the_backend_settings(tmp_path):
    pb = THREE_STEPS.replace("run: [echo, one]", "run: [echo, one]\n    env: {MODE: repair}\n    timeout: 9")
    pb = pb.replace("run: [echo, two]", "run: [psql, -c, select]\n    service: db")
    pb = pb.replace("run: [echo, three]", "manage: [showmigrations]")
    ran = run(tmp_path, pb)
    first, second, third = [call for call in ran.target.calls if call.argv and call.argv[0] != "pwd"][:3]
    assert (first.service, dict(first.env), first.timeout) == ("backend", {"MODE": "repair"}, 9)
    assert (second.service, second.argv) == ("db", ("psql", "-c", "select"))
    assert third.argv == ("python", "manage.py", "showmigrations")


def test_a_failing_step_stops_the_run_with_exit_1_and_puts_the_history_back(tmp_path):
    ran = run(tmp_path, THREE_STEPS, answers={"echo two": ExecResult(1, "", "boom\n")})
    assert (ran.result.status, ran.result.exit_code) == ("failed", 1)
    assert ran.result.error == "step 2 (second) failed: exit code 1, expected 0"
    assert statuses(ran.result.steps) == ["ok", "failed", "not-run"]
    assert statuses(ran.result.checks) == ["not-run"]
    assert "echo three" not in ran.target.commands() and "echo check" not in ran.target.commands()
    assert ran.result.steps[1].stderr == "boom\n"
    # The put-back ran: the history rows were compared (none here); without a snapshot the files cannot be.
    assert "put back" in ran.stages()
    assert ran.result.putback["restored"] == ["history rows (unchanged)"]
    assert ran.result.putback["problems"] == [
        "the migration files could not be put back: the playbook takes no snapshot"]
    assert ran.report_json()["status"] == "failed"
    assert lock_is_free(tmp_path)


def test_a_failed_check_is_exit_3_and_the_steps_changes_stay(tmp_path):
    pb = THREE_STEPS.replace("run: [echo, check]\n", "run: [echo, check]\n    expect: {stdout_contains: fine}\n")
    ran = run(tmp_path, pb, answers={"echo check": ExecResult(0, "not good\n")})
    assert (ran.result.status, ran.result.exit_code) == ("verify-failed", 3)
    assert ran.result.error == "verification failed: still fine"
    assert statuses(ran.result.steps) == ["ok", "ok", "ok"] and statuses(ran.result.checks) == ["failed"]
    assert "verification failed: the steps' changes stay" in ran.result.notes
    assert not ran.result.putback
    assert ran.report_json()["status"] == "verify-failed"


def test_a_step_that_refuses_the_state_is_exit_2(tmp_path, monkeypatch):
    import runbook.frameworks.builtin  # noqa: F401  (registers the real actions before the test's own)

    monkeypatch.setitem(ACTIONS, "test.refuse", lambda ctx, args: ActionResult(
        2, "", "", problems=["the history is not what this playbook repairs"], refused=True))
    pb = THREE_STEPS.replace("run: [echo, two]", "action: test.refuse")
    ran = run(tmp_path, pb)
    assert (ran.result.status, ran.result.exit_code) == ("refused", 2)
    assert ran.result.error == ("step 2 (second) refused: exit code 2, expected 0; "
                                "the history is not what this playbook repairs")
    assert statuses(ran.result.steps) == ["ok", "failed", "not-run"]
    assert ran.report_json()["status"] == "refused"


def test_a_run_that_finds_the_lock_held_is_refused_and_runs_nothing(tmp_path):
    other = RunLock(tmp_path / ".runbook", "other")
    other.acquire()
    try:
        ran = run(tmp_path, THREE_STEPS)
    finally:
        other.release()
    assert (ran.result.status, ran.result.exit_code) == ("refused", 5)
    assert ran.result.error.startswith("another runbook run holds the lock: playbook other")
    assert ran.target.calls == [] and ran.databases == []
    assert ran.report_json()["status"] == "refused"


def interrupt(call: Call) -> ExecResult:
    """What a command answers when Ctrl-C arrives while it runs."""
    raise KeyboardInterrupt


def test_ctrl_c_in_a_step_is_exit_130_and_the_step_is_interrupted(tmp_path):
    ran = run(tmp_path, THREE_STEPS, answers={"echo two": interrupt})
    assert (ran.result.status, ran.result.exit_code) == ("interrupted", 130)
    assert ran.result.error == "interrupted by the user (Ctrl-C or SIGTERM)"
    assert statuses(ran.result.steps) == ["ok", "interrupted", "not-run"]
    assert "put back" in ran.stages()
    assert ran.databases[0].closed
    assert ran.report_json()["status"] == "interrupted"
    assert lock_is_free(tmp_path)


def test_when_conditions_skip_or_run_steps(tmp_path):
    pb = """\
name: conditions
description: d
snapshot: {database: false, history: false}
variables:
  greet: {type: bool, default: false}
steps:
  - name: look
    run: [inspect]
    parse: json
    keep: found
  - name: greet
    when: greet
    run: [echo, hello]
  - name: repair
    when: kept.found.broken
    run: [repair]
  - name: celebrate
    when: not kept.found.broken
    run: [echo, healthy]
"""
    ran = run(tmp_path, pb, answers={"inspect": ExecResult(0, '{"broken": true}')})
    assert statuses(ran.result.steps) == ["ok", "skipped", "ok", "skipped"]
    assert ran.result.steps[1].note == "skipped: `greet` is false"
    assert ran.result.steps[3].note == "skipped: `not kept.found.broken` is false"
    assert ran.target.commands() == ["pwd", "inspect", "repair"]
    assert ran.result.status == "done"


def test_outputs_kept_by_a_step_reach_the_later_steps(tmp_path):
    pb = """\
name: outputs
description: d
snapshot: {database: false, history: false}
steps:
  - name: read the apps
    sql: SELECT app FROM django_migrations
    keep: apps
  - name: read the plan
    run: [plan]
    parse: json
    keep: plan
  - name: use them
    run: [fix, "{{ kept.apps[0][0] }}", "{{ kept.plan.target }}"]
"""
    ran = run(tmp_path, pb, answers={"plan": ExecResult(0, '{"target": "0002_more"}')},
              sql={"SELECT app FROM": (["app"], [["shop"], ["billing"]], "SELECT 2")})
    assert ran.result.status == "done", ran.result.error
    assert ran.target.commands()[-1] == "fix shop 0002_more"
    assert ran.result.steps[0].stdout == "app\nshop\nbilling\n(2 rows)\n"
    assert ran.result.steps[2].command == "fix shop 0002_more"  # the report shows it as it ran


def test_a_failed_sql_statement_fails_its_step(tmp_path):
    pb = THREE_STEPS.replace("run: [echo, two]", "sql: DELETE FROM django_migrations")
    ran = run(tmp_path, pb, sql={"DELETE": StepFailed('SQL failed: relation "django_migrations" does not exist')})
    assert (ran.result.status, ran.result.exit_code) == ("failed", 1)
    assert ran.result.steps[1].problems[-1] == 'SQL failed: relation "django_migrations" does not exist'


def test_a_database_that_cannot_be_reached_is_exit_4_and_no_step_runs(tmp_path):
    def unreachable(target, settings, application_name):
        raise EnvironmentNotReady("database unreachable at 127.0.0.1:1/postgres as postgres: refused")

    ran = run(tmp_path, THREE_STEPS, open_database=unreachable)
    assert (ran.result.status, ran.result.exit_code) == ("error", 4)
    assert statuses(ran.result.steps) == ["not-run"] * 3
    assert ran.target.commands() == []
    assert ran.report_json()["error"].startswith("database unreachable")


def test_a_bug_still_writes_the_report_then_raises(tmp_path):
    def bug(call: Call) -> ExecResult:
        raise ZeroDivisionError("division by zero")

    with pytest.raises(ZeroDivisionError):
        run(tmp_path, THREE_STEPS, answers={"echo one": bug})
    [twin] = (tmp_path / ".runbook" / "reports").glob("*-three.json")
    data = json.loads(twin.read_text())
    assert (data["status"], data["exit_code"]) == ("error", 1)
    assert data["error"] == "internal error: ZeroDivisionError: division by zero"
    assert data["steps"][0]["status"] == "failed"
    assert lock_is_free(tmp_path)


def test_a_report_is_written_on_every_end(tmp_path):
    ends = {
        "done": {},
        "failed": {"answers": {"echo one": ExecResult(1)}},
        "verify-failed": {"answers": {"echo check": ExecResult(1)}},
        "interrupted": {"answers": {"echo two": interrupt}},
    }
    for status, options in ends.items():
        project = tmp_path / status
        project.mkdir()
        ran = run(project, THREE_STEPS, **options)
        assert ran.result.status == status
        assert ran.report is not None and ran.report.is_file(), status
        assert ran.report_json()["status"] == status
        assert oct(ran.report.stat().st_mode & 0o777) == "0o600"


def test_the_database_password_and_target_warnings_reach_the_report_masked(tmp_path):
    target = RecordingTarget(settings=DatabaseSettings(password="pw-from-the-container"))

    def warn_and_print(call: Call) -> ExecResult:
        target.warn("two containers run service backend; using the newest")
        return ExecResult(0, "connecting with pw-from-the-container\n")

    target.answers["echo two"] = warn_and_print
    events: list[tuple[str, dict]] = []
    executor = Executor(Config(project_dir=tmp_path), target, on_event=lambda kind, data: events.append((kind, data)),
                        open_database=lambda target, settings, name: RecordingDatabase(settings, name))
    result, report = executor.run(build_plan(parse_playbook(THREE_STEPS, "t.yml"), {}))
    assert result.status == "done"
    assert ("warning", {"text": "two containers run service backend; using the newest"}) in events
    assert "two containers run service backend; using the newest" in result.notes
    shown = "".join(data["text"] for kind, data in events if kind == "output")
    assert "pw-from-the-container" not in shown and MASK in shown
    assert report is not None and "pw-from-the-container" not in report.read_text()


def test_signals_are_held_while_the_run_cleans_up_and_restored_after():
    def on_term(signum, frame):
        raise AssertionError("SIGTERM reached its handler inside the block")

    before_int = signal.getsignal(signal.SIGINT)
    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)  # would raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
        assert signal.getsignal(signal.SIGINT) is before_int
        assert signal.getsignal(signal.SIGTERM) is on_term
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, old_term)
