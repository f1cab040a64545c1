"""One step on the local target: what reaches the progress callback is masked; an error mid-step fails it."""

from __future__ import annotations

import json
import sys

import pytest

from runbook.config import Config
from runbook.engine.steps import StepRunner
from runbook.errors import ConfigError, RenderError
from runbook.frameworks.context import RunContext
from runbook.playbook.model import parse_playbook
from runbook.playbook.plan import build_plan
from runbook.redact import MASK, Redactor
from runbook.results import StepResult
from runbook.targets.local import LocalTarget

SECRET = "hunter22-secret"
_last: list = []


def _run_step(tmp_path, step_yaml: str, variables: dict | None = None):
    pb = parse_playbook("name: d\ndescription: d\nvariables:\n  db_password: {default: x}\n"
                        f"steps:\n{step_yaml}", "d.yml")
    plan = build_plan(pb, {"db_password": SECRET, **(variables or {})})
    config = Config(project_dir=tmp_path)
    events: list[tuple[str, dict]] = []
    runner = StepRunner(config, Redactor([SECRET]), lambda kind, **data: events.append((kind, data)))
    ctx = RunContext(config, LocalTarget(config), None, dict(plan.variables))  # type: ignore[arg-type]
    record = StepResult(name="s", kind="run", service="backend", command="")
    _last[:] = [record, events]  # what the step left behind when it raised
    runner.run(plan.steps[0], ctx, record, 1, 1, "step")
    return record, events


def test_problems_are_masked_before_the_console_sees_them(tmp_path):
    # The step prints the password in JSON; the problem quotes the value it found.
    record, events = _run_step(tmp_path, "  - name: s\n    run: [echo, '{\"pw\": \"{{ db_password }}\"}']\n"
                                         "    parse: json\n    expect: {json: {pw: other}}\n")
    assert record.status == "failed"
    [end] = [data for kind, data in events if kind == "step-end"]
    assert end["step"].problems and all(SECRET not in p for p in end["step"].problems)
    assert any(MASK in p for p in end["step"].problems)


def test_a_secret_split_across_output_chunks_is_masked(tmp_path):
    code = (f"import sys, time; sys.stdout.write('pw {SECRET[:5]}'); sys.stdout.flush(); time.sleep(0.3); "
            f"sys.stdout.write('{SECRET[5:]} end\\nlast'); sys.stdout.flush()")
    record, events = _run_step(tmp_path, f"  - name: s\n    run: {json.dumps([sys.executable, '-c', code])}\n")
    assert record.status == "ok", record.problems
    shown = [data["text"] for kind, data in events if kind == "output"]
    assert len(shown) == 2  # the whole line once it ended, the unfinished last line when the command ended
    assert "".join(shown) == f"pw {MASK} end\nlast"
    assert all(SECRET[:5] not in text for text in shown)


def test_an_error_mid_step_marks_the_step_failed_not_interrupted(tmp_path):
    # The local target refuses `user:` while the step runs: a RunbookError other than StepFailed.
    with pytest.raises(ConfigError):
        _run_step(tmp_path, "  - name: s\n    run: ['true']\n    user: postgres\n")
    record, events = _last
    assert record.status == "failed"
    assert record.problems == ["the local target cannot switch user; remove `user:` or use the compose target"]
    assert [kind for kind, _ in events] == ["step-start", "step-end"]


def test_a_deferred_step_that_cannot_render_at_run_time_is_failed(tmp_path):
    with pytest.raises(RenderError):
        _run_step(tmp_path, "  - name: s\n    run: [echo, '{{ kept.missing.x }}']\n")
    record, events = _last
    assert record.status == "failed" and "missing" in record.problems[0]
    assert [kind for kind, _ in events] == ["step-end"]
