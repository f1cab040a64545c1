"""Run a plan: lock, snapshot, steps, verify, and always a report. Never prints: progress goes to a callback.

A failure is data on the RunResult; the caller turns `result.exit_code` into the process exit code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook import faults
from runbook.backend import exec_options
from runbook.config import Config
from runbook.connection import open_database
from runbook.context import RunContext
from runbook.database import Database, run_application_name
from runbook.errors import Interrupted, LockHeld, Refused, RunbookError, StepFailed
from runbook.expect import check_expectations
from runbook.file_changes import FileWatch
from runbook.lock import RunLock
from runbook.plan import Commands, Plan, PlannedAction, plan_action
from runbook.psql import PsqlDatabase
from runbook.putback import Before, capture, put_back
from runbook.redact import Redactor, StreamRedactor, is_secret_name
from runbook.rehearsal import Rehearsal
from runbook.report import putback_lines, write_report
from runbook.results import RunResult, StepResult
from runbook.snapshot import summary as snapshot_summary
from runbook.snapshot import take_snapshot
from runbook.targets.base import Target

EventCallback = Callable[[str, dict[str, Any]], None]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM inside the block: a second Ctrl-C must not lose the lock release or the report."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; a run in a thread is not stopped by signals anyway
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in saved:
        signal.signal(sig, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def build_redactor(config: Config, target: Target, variables: dict[str, Any], plan: Plan) -> Redactor:
    """Collect every value that must never be shown: passwords, secrets, tokens."""
    redactor = Redactor()
    for name, value in os.environ.items():
        if is_secret_name(name):
            redactor.add(value)
    for name, value in {**config.backend.env}.items():
        if is_secret_name(name):
            redactor.add(value)
    if config.database.password:
        redactor.add(config.database.password)
    for name, value in variables.items():
        spec = plan.playbook.variables.get(name)
        if (spec and spec.secret) or is_secret_name(name):
            redactor.add(str(value))
    return redactor


class Executor:
    def __init__(self, config: Config, target: Target, *, on_event: EventCallback | None = None,
                 rollback_on_failure: bool = False, rehearse: bool = False, real_command: str = "",
                 redactor: Redactor | None = None):
        self.config = config
        self.target = target
        self.rollback_on_failure = rollback_on_failure
        self.rehearsal: Rehearsal | None = None
        if rehearse:
            self.rehearsal = Rehearsal(config, target, lambda text: self._emit("note", text=self.redactor.text(text)),
                                       real_command)
        self._manifest: dict[str, Any] | None = None
        self.on_event = on_event or (lambda kind, data: None)
        # Shared with the caller: the console masks its own lines with the secrets learned here.
        self.redactor = redactor if redactor is not None else Redactor()
        # None until the history was read: an empty history before is still worth comparing with after.
        self.history_before: dict[str, list[list[Any]]] | None = None
        # What lies outside the data tables before the first step: put back if the run does not succeed.
        self.before: Before | None = None

    def _emit(self, kind: str, **data: Any) -> None:
        self.on_event(kind, data)

    def run(self, plan: Plan) -> tuple[RunResult, Path | None]:
        """Run the plan end to end and write the report; return the result and the report path."""
        started = time.monotonic()
        for secret in build_redactor(self.config, self.target, plan.variables, plan).secrets:
            self.redactor.add(secret)
        if self.rehearsal is not None:
            # `--var superuser_password=...` is in the command line: the real command shows it masked.
            self.rehearsal.facts["real_command"] = self.redactor.text(self.rehearsal.facts.get("real_command", ""))
        result = RunResult(
            playbook=plan.playbook.name,
            description=plan.playbook.summary(),
            project=str(self.config.project_dir.resolve()),
            target={},
            user=getpass.getuser(),
            host=socket.gethostname(),
            started=_now(),
            variables=dict(plan.variables),
            steps=[self._placeholder(a) for a in plan.steps],
            checks=[self._placeholder(a) for a in plan.checks],
            rehearsal=self.rehearsal is not None,
        )
        if hasattr(self.target, "on_warning"):
            # Shown on the console when raised; the report lists them among its notes at the end.
            self.target.on_warning = lambda text: self._emit("warning", text=self.redactor.text(text))
        lock = RunLock(self.config.artifacts_dir(), plan.playbook.name)
        database: Database | None = None
        ctx: RunContext | None = None
        self.files = FileWatch(self.target, self.config, list(plan.playbook.snapshot.files))
        try:
            lock.acquire()
            result.target = self.target.describe()
            self.target.check_ready(["db", "backend"])
            settings = self.target.database_settings()
            if settings.password:
                self.redactor.add(settings.password)
            result.target["database"] = f"{settings.user}@{settings.host}:{settings.port}/{settings.dbname}"
            result.target["database_path"] = settings.via
            database = open_database(self.target, settings, application_name=run_application_name(
                os.getpid(), result.host, result.started, plan.playbook.name))
            result.target["database_path"] = database.settings.via  # psql when the network path failed
            if isinstance(database, PsqlDatabase):
                result.notes.append(database.note)
                self._emit("warning", text=self.redactor.text(database.note))
            database.lock_run()
            ctx = RunContext(self.config, self.target, database, dict(plan.variables))
            self._run_stages(plan, ctx, result)
        except KeyboardInterrupt:
            result.status, result.exit_code = "interrupted", Interrupted.exit_code
            result.error = "interrupted by the user (Ctrl-C or SIGTERM)"
            for step in [*result.steps, *result.checks]:
                if step.status == "running":
                    step.status = "interrupted"
        except (LockHeld, Refused) as exc:
            result.status, result.exit_code, result.error = "refused", exc.exit_code, str(exc)
        except RunbookError as exc:
            result.status = "error" if exc.exit_code != 1 else "failed"
            result.exit_code, result.error = exc.exit_code, str(exc)
        except Exception as exc:
            # A bug: the report below is still written, then the CLI says "internal error" in one line.
            result.status, result.exit_code = "error", 1
            result.error = f"internal error: {type(exc).__name__}: {exc}"
            raise
        finally:
            for step in [*result.steps, *result.checks]:
                if step.status == "running":
                    step.status = "interrupted"
            if database is not None:
                with signals_held():  # a second Ctrl-C must not stop the put-back half way
                    self._settle(database, result, ctx)
            result.notes.extend(getattr(self.target, "warnings", []))
            # Before the rehearsal's cleanup: on a rehearsal the files changed are the copy's.
            self._capture_files(result)
            if self.rehearsal is not None:
                self._leave_rehearsal(result)
            if database is not None and self.rehearsal is None:
                self._capture_after(database, result)  # a Ctrl-C here only skips the history after
            with signals_held():
                if database is not None:
                    database.close()
                lock.release()
                # The console shows the error line too, not only the redacted report.
                result.error = self.redactor.text(result.error)
                result.ended = _now()
                result.duration = round(time.monotonic() - started, 3)
                report_path = self._write_report(result)
        return result, report_path

    def _leave_rehearsal(self, result: RunResult) -> None:
        assert self.rehearsal is not None
        if self.rehearsal.made_copies:
            self._emit("stage", name="rehearsal cleanup")
        self.rehearsal.leave(result, self._manifest)
        if self.rehearsal.alarms and result.exit_code in (0, 3):
            result.status, result.exit_code = "failed", StepFailed.exit_code
            result.error = self.rehearsal.alarms[0]

    def _capture_after(self, database: Database, result: RunResult) -> None:
        if self.history_before is None:
            return
        try:
            result.history_after = database.history()
        except (RunbookError, KeyboardInterrupt):
            result.notes.append("could not read the history rows after the run")

    def _capture_files(self, result: RunResult) -> None:
        try:
            result.files, note = self.files.finish()
        except KeyboardInterrupt:
            note = "interrupted while reading the migration files after the run: no file diff is shown"
        if note:
            result.notes.append(note)

    def _write_report(self, result: RunResult) -> Path | None:
        try:
            md, _ = write_report(result, self.config.artifacts_dir() / "reports", self.redactor)
        except OSError as exc:
            self._emit("note", text=f"could not write the report: {exc}")
            return None
        return md

    def _run_stages(self, plan: Plan, ctx: RunContext, result: RunResult) -> None:
        if self._nothing_to_do(plan, ctx, result):
            return
        if self.rehearsal is not None:
            self.rehearsal.check(ctx)
        self._emit("stage", name="snapshot")
        result.history_before = self.history_before = ctx.database.history()
        spec = plan.playbook.snapshot
        if self.rehearsal is not None:
            spec = spec.model_copy(update={"database": True})  # the copy is made from the dump
        manifest = None
        if spec.history or spec.database or spec.files:
            # Raises SnapshotFailed (exit 1) when any part fails: then no step runs.
            manifest = take_snapshot(self.target, ctx.database, self.config, plan.playbook.name, spec,
                                     progress=lambda text: self._emit("note", text=self.redactor.text(text)),
                                     on_transfer=lambda transfer: self._emit("transfer", transfer=transfer))
            result.snapshot = snapshot_summary(manifest)
            self._manifest = manifest
            self._emit("note", text=f"snapshot {manifest['id']} written")
        # What the files were before the steps, so the report can show each change as a diff.
        note = self.files.start(manifest)
        if note:
            result.notes.append(note)
        if self.rehearsal is not None and self._manifest is not None:
            self._emit("stage", name="rehearsal copy")
            ctx = self.rehearsal.enter(ctx, self._manifest)
            # Before any step: the backend itself must say it talks to the copy.
            self.rehearsal.prove(ctx, plan.playbook.framework)
            self.files.follow(ctx.target, ctx.config)

        if self.rehearsal is None:
            # The before of the history rows and files; from here on, any end but success puts them back.
            self.before = capture(ctx.database, manifest)
        if faults.enabled():
            ctx = dataclasses.replace(ctx, target=faults.PausingTarget(ctx.target))
        self._emit("stage", name="steps")
        self._pause("steps")
        for index, planned in enumerate(plan.steps):
            step = self._run_action(planned, ctx, result.steps[index], index + 1, len(plan.steps), "step")
            self._pause(f"after-step-{index + 1}")
            if step.status == "failed" and step.refused:
                result.status, result.exit_code = "refused", Refused.exit_code
                result.error = f"step {index + 1} ({step.name}) refused: " + "; ".join(step.problems)
                return
            if step.status == "failed":
                result.status, result.exit_code = "failed", StepFailed.exit_code
                result.error = f"step {index + 1} ({step.name}) failed: " + "; ".join(step.problems)
                return

        self._emit("stage", name="verify")
        failed = []
        for index, planned in enumerate(plan.checks):
            check = self._run_action(planned, ctx, result.checks[index], index + 1, len(plan.checks), "check")
            if check.status == "failed":
                failed.append(check.name)
        if failed:
            result.status, result.exit_code = "verify-failed", 3
            result.error = f"verification failed: {', '.join(failed)}"
        else:
            result.status, result.exit_code = "done", 0

    def _nothing_to_do(self, plan: Plan, ctx: RunContext, result: RunResult) -> bool:
        """Check the playbook fits the stack before anything is written; True when there is nothing to do."""
        from runbook.fit import check_fit

        fit = check_fit(plan.playbook, ctx)
        if fit is None:
            return False
        self._emit("stage", name="fit")
        self._emit("note", text=fit.line)
        if fit.verdict == "refused":
            raise Refused(fit.line.removeprefix("refused: "))
        if fit.verdict == "nothing":
            result.status, result.exit_code = "done", 0
            result.notes.append(fit.line)
            for record in [*result.steps, *result.checks]:
                record.status, record.note = "skipped", "skipped: nothing to do"
            return True
        ctx.inspection = fit.inspection
        return False

    def _pause(self, event: str) -> None:
        """Tests only: stop at a step boundary so a fault test can send a signal at a known moment."""
        faults.pause_at(event)

    def _settle(self, database: Database, result: RunResult, ctx: RunContext | None) -> None:
        """Once steps ran: on any end but success, put back what the run promised to put back."""
        if self.before is None or result.exit_code == 0:
            return
        snapshot_id = self.before.snapshot_id
        if result.exit_code == 3 and not self.rollback_on_failure:
            text = "verification failed: the steps' changes stay" + (
                f"; to put back only the history rows and migration files: "
                f"runbook restore {snapshot_id} --only history,files" if snapshot_id else "")
            result.notes.append(text)
            self._emit("note", text=text)
            return
        if self.rollback_on_failure:
            self._rollback(database, result)
            if result.rollback.get("status") == "restored" or result.exit_code == 3:
                return
        self._emit("stage", name="put back")
        database.ensure_idle()  # a query cut by Ctrl-C leaves the session busy: start a fresh one
        outcome = put_back(self.target, database, self.before,
                           progress=lambda t: self._emit("note", text=self.redactor.text(t)),
                           fix_line=lambda: self._fix_line(ctx))
        result.putback = outcome.to_dict()
        result.putback["snapshot"] = snapshot_id
        for line in putback_lines(result.putback):
            self._emit("note", text=self.redactor.text(line))

    def _fix_line(self, ctx: RunContext | None) -> str | None:
        """The line `runbook diagnose` prints now, for what a stopped run left behind (never during a rehearsal)."""
        if ctx is None or self.rehearsal is not None:
            return None
        from runbook.diagnose import diagnose  # only when a step left a table: most runs never need it

        try:
            _, findings, _ = diagnose(ctx)
        except RunbookError:
            return None
        return next((f.command for f in findings if f.command), None)

    def _rollback(self, database: Database, result: RunResult) -> None:
        """With --rollback-on-failure, put the whole snapshot back; the exit code still tells the failure."""
        from runbook.restore import restore_snapshot

        self._emit("stage", name="rollback")
        snapshot_id = result.snapshot.get("id", "")
        if not snapshot_id:
            result.rollback = {"snapshot": "", "status": "failed", "error": "the playbook takes no snapshot"}
            text = "rollback FAILED: the playbook takes no snapshot, so there is nothing to restore"
        else:
            try:
                database.ensure_idle()
                outcome = restore_snapshot(self.target, database, self.config, snapshot_id,
                                           progress=lambda t: self._emit("note", text=self.redactor.text(t)),
                                           on_transfer=lambda transfer: self._emit("transfer", transfer=transfer))
            except RunbookError as exc:
                result.rollback = {"snapshot": snapshot_id, "status": "failed", "error": str(exc)}
                text = f"rollback FAILED: {exc}; once the cause is fixed: runbook restore {snapshot_id}"
            else:
                result.rollback = outcome.to_dict()
                if outcome.ok:
                    text = (f"rolled back: the data is back as of snapshot {snapshot_id}; every write made "
                            f"since the snapshot is gone (checked: {'; '.join(outcome.checked)})")
                else:
                    text = (f"rollback of snapshot {snapshot_id} ran but the check found differences: "
                            + "; ".join(outcome.problems))
        result.notes.append(self.redactor.text(text))
        self._emit("note", text=self.redactor.text(text))

    @staticmethod
    def _placeholder(planned: PlannedAction) -> StepResult:
        return StepResult(name=planned.name, kind=planned.kind, service=planned.service,
                          command=planned.display())

    def _run_action(self, planned: PlannedAction, ctx: RunContext, record: StepResult,
                    number: int, total: int, role: str) -> StepResult:
        # The condition first: a skipped step may name kept outputs that do not exist.
        if planned.when and not ctx.evaluate(planned.when):
            record.status, record.note = "skipped", f"skipped: `{planned.when}` is false"
            self._emit("step-end", role=role, number=number, total=total, step=record)
            return record
        started = time.monotonic()
        if planned.deferred and planned.source is not None:
            try:
                planned = plan_action(planned.source, ctx.template_context(),
                                      Commands.from_backend(self.config.backend), f"{role} {number} ({planned.name})")
            except RunbookError as exc:
                self._fail(record, exc, started, role, number, total)
                raise
            record.command = planned.display()
        record.status = "running"
        self._emit("step-start", role=role, number=number, total=total, step=record)
        parsed: Any = None
        rows: list[list[Any]] | None = None
        reasons: list[str] = []
        try:
            if planned.argv is not None:
                exec_result = self._exec(planned, ctx)
                record.exit_code, record.stdout, record.stderr = (
                    exec_result.exit_code, exec_result.stdout, exec_result.stderr)
                record.truncated = exec_result.truncated
                if exec_result.timed_out:
                    record.problems.append(f"timed out after {planned.timeout or self.config.step_timeout} s")
            elif planned.sql is not None:
                columns, rows, status = ctx.database.query(planned.sql, planned.params, planned.identifiers,
                                                           timeout=planned.timeout or self.config.step_timeout)
                record.exit_code = 0
                record.stdout = _format_rows(columns, rows, status)
                parsed = rows
            else:
                # Imported here: the actions pull in every framework's repair code, which most runs never use.
                from runbook.actions import get_action

                outcome = get_action(planned.action or "")(ctx, planned.args)
                record.exit_code, record.stdout, record.stderr = outcome.exit_code, outcome.stdout, outcome.stderr
                parsed, reasons = outcome.data, outcome.problems
                record.refused = outcome.refused
                self._emit_output(outcome.stdout, outcome.stderr)
        except StepFailed as exc:
            record.exit_code, reasons = 1, [exc.message]
            record.stderr += exc.message + "\n"
            self._emit("output", stream="stderr", text=self.redactor.text(exc.message + "\n"))
        except Exception as exc:
            # The run stops here (database gone, a bug): this step failed, it was not interrupted.
            self._fail(record, exc, started, role, number, total)
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
        self._emit("step-end", role=role, number=number, total=total, step=record)
        return record

    def _fail(self, record: StepResult, exc: Exception, started: float, role: str, number: int, total: int) -> None:
        """Record a step that an error stopped, with the error as its problem."""
        record.status, record.duration = "failed", round(time.monotonic() - started, 3)
        record.problems.append(self.redactor.text(str(exc) if isinstance(exc, RunbookError)
                                                  else f"internal error: {type(exc).__name__}: {exc}"))
        self._emit("step-end", role=role, number=number, total=total, step=record)

    def _emit_output(self, stdout: str, stderr: str) -> None:
        for stream, text in (("stdout", stdout), ("stderr", stderr)):
            if text:
                self._emit("output", stream=stream, text=self.redactor.text(text))

    def _exec(self, planned: PlannedAction, ctx: RunContext):
        service = planned.service or "backend"
        options = exec_options(ctx.config, service, planned.env, planned.workdir, planned.user)
        env = self.rehearsal.pin_env(service, options.env) if self.rehearsal is not None else options.env
        # Masked line by line, not chunk by chunk: a secret can arrive split across two chunks.
        streams = {name: StreamRedactor(self.redactor) for name in ("stdout", "stderr")}

        def on_output(stream: str, text: str) -> None:
            shown = streams[stream].feed(text)
            if shown:
                self._emit("output", stream=stream, text=shown)

        try:
            return ctx.target.exec(
                service, planned.argv or [], env=env, workdir=options.workdir, user=options.user,
                timeout=planned.timeout or self.config.step_timeout, on_output=on_output,
            )
        finally:
            for name, stream in streams.items():
                rest = stream.flush()
                if rest:
                    self._emit("output", stream=name, text=rest)


def _format_rows(columns: list[str], rows: list[list[Any]], status: str) -> str:
    if not columns:
        return status + "\n"
    lines = [" | ".join(columns)]
    lines += [" | ".join("NULL" if v is None else str(v) for v in row) for row in rows]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"
