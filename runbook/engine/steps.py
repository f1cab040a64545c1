"""Run one planned step or verify check: its condition, its command, SQL or action, its expectations.

Never prints: the step's start, its output (masked line by line) and its end go to the run's callback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from runbook.config import Config
from runbook.errors import RunbookError, StepFailed
from runbook.frameworks.backend import exec_options
from runbook.frameworks.context import RunContext
from runbook.playbook.expect import check_expectations
from runbook.playbook.plan import Commands, PlannedAction, plan_action
from runbook.playbook.render import needs_runtime
from runbook.redact import Redactor, StreamRedactor
from runbook.results import StepResult
from runbook.targets.base import ExecResult

# Called as emit(kind, **data): the executor forwards it to the run's event callback.
Emit = Callable[..., None]
# A rehearsal points the backend's environment at the copy: pin_env(service, env) -> env.
PinEnv = Callable[[str, dict[str, str]], dict[str, str]]


class StepRunner:
    """Run planned actions one at a time against a run's context and fill in their StepResult."""

    def __init__(self, config: Config, redactor: Redactor, emit: Emit, pin_env: PinEnv | None = None):
        self.config = config
        # The run's redactor itself: it learns secrets while the run goes (the database password).
        self.redactor = redactor
        self.emit = emit
        self.pin_env = pin_env

    def run(self, planned: PlannedAction, ctx: RunContext, record: StepResult,
            number: int, total: int, role: str) -> StepResult:
        # The condition first: a skipped step may name kept outputs that do not exist.
        if planned.when and not ctx.evaluate(planned.when):
            return self.skip(record, f"skipped: `{planned.when}` is false", number, total, role)
        started = time.monotonic()
        if planned.deferred and planned.source is not None:
            try:
                planned = self.render(planned, ctx, number, role)
            except RunbookError as exc:
                self.fail(record, exc, started, role, number, total)
                raise
            record.command = planned.display()
        record.status = "running"
        self.emit("step-start", role=role, number=number, total=total, step=record)
        parsed: Any = None
        rows: list[list[Any]] | None = None
        reasons: list[str] = []
        try:
            if planned.argv is not None:
                exec_result = self.exec(planned, ctx)
                record.exit_code, record.stdout, record.stderr = (
                    exec_result.exit_code, exec_result.stdout, exec_result.stderr)
                record.truncated = exec_result.truncated
                if exec_result.timed_out:
                    record.problems.append(f"timed out after {planned.timeout or self.config.step_timeout} s")
            elif planned.sql is not None:
                columns, rows, status = self.query(planned, ctx)
                record.exit_code = 0
                record.stdout = format_rows(columns, rows, status)
                parsed = rows
            else:
                # Imported here: the actions pull in every framework's repair code, which most runs never use.
                from runbook.frameworks.builtin import get_action

                outcome = get_action(planned.action or "")(ctx, planned.args)
                record.exit_code, record.stdout, record.stderr = outcome.exit_code, outcome.stdout, outcome.stderr
                parsed, reasons = outcome.data, outcome.problems
                record.refused = outcome.refused
                self._emit_output(outcome.stdout, outcome.stderr)
        except StepFailed as exc:
            record.exit_code, reasons = 1, [exc.message]
            record.stderr += exc.message + "\n"
            self.emit("output", stream="stderr", text=self.redactor.text(exc.message + "\n"))
        except Exception as exc:
            # The run stops here (database gone, a bug): this step failed, it was not interrupted.
            self.fail(record, exc, started, role, number, total)
            raise
        if planned.parse == "json" and planned.argv is not None and record.exit_code == 0:
            try:
                parsed = json.loads(record.stdout)
            except ValueError as exc:
                record.problems.append(f"stdout is not JSON: {exc}")
        record.problems.extend(check_expectations(
            planned.expect, exit_code=record.exit_code, stdout=record.stdout, stderr=record.stderr,
            parsed=parsed, rows=rows))
        if record.problems:
            # Say why a built-in action failed (its own lines), not only that its exit code was wrong.
            record.problems.extend(reasons)
        if planned.keep:
            ctx.kept[planned.keep] = parsed if parsed is not None else record.stdout
        record.duration = round(time.monotonic() - started, 3)
        record.status = "failed" if record.problems else "ok"
        # Problems quote expectations and output, which may hold a secret; the console prints them.
        record.problems = [self.redactor.text(p) for p in record.problems]
        self.emit("step-end", role=role, number=number, total=total, step=record)
        return record

    def skip(self, record: StepResult, note: str, number: int, total: int, role: str) -> StepResult:
        """Record a step that never started, and why."""
        record.status, record.note = "skipped", note
        self.emit("step-end", role=role, number=number, total=total, step=record)
        return record

    def render(self, planned: PlannedAction, ctx: RunContext, number: int, role: str) -> PlannedAction:
        """Fill in a step whose templates name the outputs of earlier steps, now that they exist."""
        assert planned.source is not None
        return plan_action(planned.source, ctx.template_context(), Commands.from_backend(self.config.backend),
                           f"{role} {number} ({planned.name})")

    def fail(self, record: StepResult, exc: Exception, started: float, role: str, number: int, total: int) -> None:
        """Record a step that an error stopped, with the error as its problem."""
        record.status, record.duration = "failed", round(time.monotonic() - started, 3)
        record.problems.append(self.redactor.text(str(exc) if isinstance(exc, RunbookError)
                                                  else f"internal error: {type(exc).__name__}: {exc}"))
        self.emit("step-end", role=role, number=number, total=total, step=record)

    def _emit_output(self, stdout: str, stderr: str) -> None:
        for stream, text in (("stdout", stdout), ("stderr", stderr)):
            if text:
                self.emit("output", stream=stream, text=self.redactor.text(text))

    def query(self, planned: PlannedAction, ctx: RunContext) -> tuple[list[str], list[list[Any]], str]:
        """Send the step's SQL with its bound parameters and quoted identifiers."""
        assert planned.sql is not None
        return ctx.database.query(planned.sql, planned.params, planned.identifiers,
                                  timeout=planned.timeout or self.config.step_timeout)

    def exec(self, planned: PlannedAction, ctx: RunContext) -> ExecResult:
        """Run the step's argv in its service with the backend's env, workdir and user; stream its output."""
        service = planned.service or "backend"
        options = exec_options(ctx.config, service, planned.env, planned.workdir, planned.user)
        env = self.pin_env(service, options.env) if self.pin_env is not None else options.env
        # Masked line by line, not chunk by chunk: a secret can arrive split across two chunks.
        streams = {name: StreamRedactor(self.redactor) for name in ("stdout", "stderr")}

        def on_output(stream: str, text: str) -> None:
            shown = streams[stream].feed(text)
            if shown:
                self.emit("output", stream=stream, text=shown)

        try:
            return ctx.target.exec(
                service, planned.argv or [], env=env, workdir=options.workdir, user=options.user,
                timeout=planned.timeout or self.config.step_timeout, on_output=on_output,
            )
        finally:
            for name, stream in streams.items():
                rest = stream.flush()
                if rest:
                    self.emit("output", stream=name, text=rest)


class DryStepRunner(StepRunner):
    """A dry run's step: its command or SQL goes to the recording target or database; nothing is judged or kept.

    An action is not called: it decides from the live state, which a dry run does not read. A condition or a
    command that reads an earlier step's output cannot be decided without that output: the note says so.
    """

    def run(self, planned: PlannedAction, ctx: RunContext, record: StepResult,
            number: int, total: int, role: str) -> StepResult:
        why = ["dry run"]
        if planned.when and _reads_outputs(planned.when):
            why.append(f"runs only if `{planned.when}` holds, which reads an earlier step's output")
        elif planned.when and not ctx.evaluate(planned.when):
            return self.skip(record, f"skipped: `{planned.when}` is false", number, total, role)
        record.status = "running"
        self.emit("step-start", role=role, number=number, total=total, step=record)
        if planned.deferred:
            why.append("its command is filled in from an earlier step's output")
        elif planned.argv is not None:
            self.exec(planned, ctx)
        elif planned.sql is not None:
            self.query(planned, ctx)
        else:
            why.append("an action reads the live state, so it is not called")
        record.status, record.note = "not-run", "; ".join(why)
        self.emit("step-end", role=role, number=number, total=total, step=record)
        return record


def _reads_outputs(condition: str) -> bool:
    # A `when:` is a bare expression; as a template it names what it reads (as the plan checks it).
    return needs_runtime("{{ " + condition.strip().strip("{}") + " }}")


def format_rows(columns: list[str], rows: list[list[Any]], status: str) -> str:
    """Show a query's answer as psql does: a header, the rows, a count; the status line when no rows."""
    if not columns:
        return status + "\n"
    lines = [" | ".join(columns)]
    lines += [" | ".join("NULL" if v is None else str(v) for v in row) for row in rows]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"
