"""A dry run goes through Executor.run against the recording target: status dry-run, nothing run, nothing kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbook.config import Config
from runbook.engine.dryrun import RecordingDatabase, dry_run, recording_target, report_writer
from runbook.engine.executor import Executor
from runbook.frameworks.actions import ACTIONS
from runbook.playbook.model import parse_playbook
from runbook.playbook.plan import build_plan
from runbook.playbook.registry import find
from runbook.playbook.variables import resolve_variables
from runbook.redact import MASK

PLAYBOOK = """\
name: mixed
description: Every kind of step.
fits: [safe-to-fake]
variables:
  app: {default: shop}
  verbose: {type: bool, default: false}
  db_password: {default: s3cret-value}
steps:
  - name: look
    action: test.must-not-run
    keep: found
  - name: only when verbose
    when: verbose
    run: [echo, loud]
  - name: only when broken
    when: kept.found.broken
    run: [repair, "{{ app }}"]
  - name: fix the named one
    run: [fix, "{{ kept.found.name }}"]
  - name: migrate
    manage: [migrate, "{{ app }}"]
    env: {PGPASSWORD: "{{ db_password }}"}
  - name: count
    sql: SELECT count(*) FROM django_migrations WHERE app = %(app)s
    params: {app: "{{ app }}"}
verify:
  - name: consistent
    action: test.must-not-run
"""


@pytest.fixture
def no_action_may_run(monkeypatch):
    import runbook.frameworks.builtin  # noqa: F401  (registers the real actions before the test's own)

    def must_not_run(ctx, args):
        raise AssertionError("a dry run called an action")

    monkeypatch.setitem(ACTIONS, "test.must-not-run", must_not_run)


def plan_of(text: str, **given: str):
    playbook = parse_playbook(text, "mixed.yml")
    return build_plan(playbook, resolve_variables(playbook, given))


def dry(tmp_path: Path, plan, report: Path | None = None):
    events: list[tuple[str, dict]] = []
    result, report_path = dry_run(Config(project_dir=tmp_path, target="local"), plan,
                                  on_event=lambda kind, data: events.append((kind, data)), report=report)
    return result, report_path, events


def test_a_dry_run_has_status_dry_run_and_runs_nothing(tmp_path, no_action_may_run):
    result, report_path, events = dry(tmp_path, plan_of(PLAYBOOK))
    assert (result.status, result.exit_code, result.error) == ("dry-run", 0, "")
    assert [s.status for s in result.steps] == ["not-run", "skipped", "not-run", "not-run", "not-run", "not-run"]
    assert [c.status for c in result.checks] == ["not-run"]
    assert [s.exit_code for s in result.steps] == [None] * 6
    notes = [s.note for s in result.steps]
    assert notes[0] == "dry run; an action reads the live state, so it is not called"
    assert notes[1] == "skipped: `verbose` is false"
    assert notes[2] == "dry run; runs only if `kept.found.broken` holds, which reads an earlier step's output"
    assert notes[3] == "dry run; its command is filled in from an earlier step's output"
    assert notes[4] == notes[5] == "dry run"
    # Nothing written: no lock, no snapshot, no report in the project.
    assert report_path is None
    assert list(tmp_path.iterdir()) == []
    assert [data["name"] for kind, data in events if kind == "stage"] == ["fit", "snapshot", "steps", "verify"]
    assert result.snapshot == {"would snapshot": "database dump, history rows, migration files",
                               "taken": "no: a dry run takes no snapshot"}
    assert result.notes[0].startswith("dry run: nothing was run and nothing was changed")


def test_a_dry_run_sends_the_real_commands_to_the_recording_target(tmp_path, no_action_may_run):
    # The pieces dry_run() puts together, kept at hand to read what they were sent.
    config = Config(project_dir=tmp_path, target="local")
    target = recording_target(config)
    databases: list[RecordingDatabase] = []

    def record_database(target, settings, application_name):
        databases.append(RecordingDatabase(settings, application_name))
        return databases[-1]

    executor = Executor(config, target, dry_run=True, open_database=record_database,
                        report_writer=report_writer(None))
    result, _ = executor.run(plan_of(PLAYBOOK))
    assert result.status == "dry-run"
    # Every command a real run may send that needs no earlier output, exactly as it would send it.
    assert target.commands() == ["repair shop", "python manage.py migrate shop"]
    repair, migrate = target.calls
    assert (repair.service, repair.workdir, repair.user) == ("backend", None, None)
    assert (migrate.service, migrate.env["PGPASSWORD"]) == ("backend", "s3cret-value")
    [database] = databases
    [query] = database.queries
    assert query.text.startswith("SELECT count(*)") and query.params == {"app": "shop"}
    assert database.locked and database.closed
    assert result.target["target"] == "dry run: nothing runs (a real run uses the local target)"
    assert result.target["database_path"] == "none: a dry run opens no connection"
    assert result.steps[4].command == "python manage.py migrate shop"


def test_a_dry_run_report_goes_only_where_asked(tmp_path, no_action_may_run):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    result, report_path, _ = dry(project, plan_of(PLAYBOOK), report=elsewhere / "dry.md")
    assert report_path == elsewhere / "dry.md"
    text = report_path.read_text()
    assert text.startswith("# 📝 DRY RUN: mixed")
    assert "s3cret-value" not in text and MASK in text
    assert oct(report_path.stat().st_mode & 0o777) == "0o600"
    assert list(project.iterdir()) == []


def test_a_condition_that_cannot_be_evaluated_stops_the_dry_run_as_it_would_stop_the_run(tmp_path,
                                                                                         no_action_may_run):
    result, _, _ = dry(tmp_path, plan_of(PLAYBOOK.replace("when: verbose", "when: verbose.missing.deeper")))
    assert (result.status, result.exit_code) == ("error", 2)
    assert result.error.startswith("condition: ")
    assert [s.status for s in result.steps][:3] == ["not-run", "not-run", "not-run"]


def test_a_dry_run_of_a_builtin_playbook_goes_through_every_step(tmp_path):
    pb = find("fake-initial", [])
    plan = build_plan(pb, resolve_variables(pb, {"app": "shop"}))
    result, report_path, _ = dry(tmp_path, plan)
    assert (result.status, result.exit_code) == ("dry-run", 0)
    assert {s.status for s in [*result.steps, *result.checks]} == {"not-run"}
    assert report_path is None and list(tmp_path.iterdir()) == []
