"""Run a plan: lock, fit, snapshot, steps, verify, and always a report. Never prints: progress goes to a callback.

A failure is data on the RunResult; the caller turns `result.exit_code` into the process exit code.
A dry run goes through the same stages against a recording target and database (see `engine.dryrun`):
no lock, no fit check, no snapshot, nothing to put back; its steps are sent, never run; status `dry-run`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbook.artifacts.file_changes import FileWatch
from runbook.artifacts.lock import RunLock
from runbook.artifacts.putback import Before, capture
from runbook.artifacts.report import write_report
from runbook.artifacts.snapshot import summary as snapshot_summary
from runbook.artifacts.snapshot import take_snapshot
from runbook.config import Config
from runbook.database.connection import open_database
from runbook.database.postgres import Database, run_application_name
from runbook.database.psql import PsqlDatabase
from runbook.engine import faults
from runbook.engine.aftermath import Aftermath
from runbook.engine.fit import check_fit
from runbook.engine.rehearsal import Rehearsal
from runbook.engine.steps import DryStepRunner, StepRunner
from runbook.errors import Interrupted, LockHeld, Refused, RunbookError, StepFailed
from runbook.frameworks.context import RunContext
from runbook.playbook.plan import Plan, PlannedAction
from runbook.redact import Redactor, is_secret_name
from runbook.results import RunResult, StepResult
from runbook.targets.base import DatabaseSettings, Target

EventCallback = Callable[[str, dict[str, Any]], None]
# How the run reaches its database: the real choice (psycopg, or psql in the db service) or a recording one.
DatabaseOpener = Callable[[Target, DatabaseSettings, str], Database]
# Where the report goes; returns the Markdown's path, or None when none was kept.
ReportWriter = Callable[[RunResult, Redactor], Path | None]


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
                 redactor: Redactor | None = None, open_database: DatabaseOpener = open_database,
                 report_writer: ReportWriter | None = None, dry_run: bool = False):
        self.config = config
        self.target = target
        self.dry_run = dry_run
        self.open_database = open_database
        self.report_writer = report_writer or self._write_to_reports_dir
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
        runner = DryStepRunner if dry_run else StepRunner
        self.steps = runner(config, self.redactor, self._emit,
                            self.rehearsal.pin_env if self.rehearsal is not None else None)
        self.aftermath = Aftermath(config, target, self.redactor, self._emit, rollback_on_failure)

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
        # Shown on the console when raised; the report lists them among its notes at the end.
        self.target.warnings.listen(lambda text: self._emit("warning", text=self.redactor.text(text)))
        # A dry run touches nothing, so it takes no lock: it may even run beside a real run.
        lock = None if self.dry_run else RunLock(self.config.artifacts_dir(), plan.playbook.name)
        database: Database | None = None
        ctx: RunContext | None = None
        self.files = FileWatch(self.target, self.config, list(plan.playbook.snapshot.files))
        try:
            if lock is not None:
                lock.acquire()
            result.target = self.target.describe()
            self.target.check_ready(["db", "backend"])
            settings = self.target.database_settings()
            if settings.password:
                self.redactor.add(settings.password)
            result.target["database"] = f"{settings.user}@{settings.host}:{settings.port}/{settings.dbname}"
            result.target["database_path"] = settings.via
            database = self.open_database(self.target, settings, run_application_name(
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
                    # Never during a rehearsal: diagnose would read the copy, which is about to go.
                    self.aftermath.settle(database, result, self.before, ctx if self.rehearsal is None else None)
            result.notes.extend(self.target.warnings)
            # Before the rehearsal's cleanup: on a rehearsal the files changed are the copy's.
            self._capture_files(result)
            if self.rehearsal is not None:
                self._leave_rehearsal(result)
            if database is not None and self.rehearsal is None:
                self._capture_after(database, result)  # a Ctrl-C here only skips the history after
            with signals_held():
                if database is not None:
                    database.close()
                if lock is not None:
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
            return self.report_writer(result, self.redactor)
        except OSError as exc:
            self._emit("note", text=f"could not write the report: {exc}")
            return None

    def _write_to_reports_dir(self, result: RunResult, redactor: Redactor) -> Path:
        md, _ = write_report(result, self.config.artifacts_dir() / "reports", redactor)
        return md

    def _run_stages(self, plan: Plan, ctx: RunContext, result: RunResult) -> None:
        if self.dry_run:
            self._say_what_a_real_run_does_first(plan, result)
        else:
            if self._nothing_to_do(plan, ctx, result):
                return
            ctx = self._before_steps(plan, ctx, result)
        if self._run_steps(plan, ctx, result):
            self._verify(plan, ctx, result)

    def _before_steps(self, plan: Plan, ctx: RunContext, result: RunResult) -> RunContext:
        """Snapshot, capture what a failure puts back, and (rehearsing) move onto the copy; return the context."""
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
        return ctx

    def _say_what_a_real_run_does_first(self, plan: Plan, result: RunResult) -> None:
        """A dry run's fit and snapshot stages: said, not done, since both read the live stack."""
        if plan.playbook.fits != "any":
            self._emit("stage", name="fit")
            self._emit("note", text="dry run: not checked; a real run first checks that the playbook fits "
                                    "the stack, as `runbook diagnose` does")
        self._emit("stage", name="snapshot")
        spec = plan.playbook.snapshot
        if spec.history or spec.database or spec.files:
            parts = [part for part, wanted in (("database dump", spec.database), ("history rows", spec.history),
                                               ("migration files", True)) if wanted]
            result.snapshot = {"would snapshot": ", ".join(parts), "taken": "no: a dry run takes no snapshot"}
            self._emit("note", text=f"dry run: would snapshot the {', '.join(parts)}; none taken")
        else:
            self._emit("note", text="dry run: the playbook takes no snapshot")
        result.notes.append("dry run: nothing was run and nothing was changed; no lock, no snapshot, "
                            "no history read")

    def _run_steps(self, plan: Plan, ctx: RunContext, result: RunResult) -> bool:
        """Run the steps in order; False when one failed or refused (the result says which)."""
        self._emit("stage", name="steps")
        self._pause("steps")
        for index, planned in enumerate(plan.steps):
            step = self.steps.run(planned, ctx, result.steps[index], index + 1, len(plan.steps), "step")
            self._pause(f"after-step-{index + 1}")
            if step.status == "failed" and step.refused:
                result.status, result.exit_code = "refused", Refused.exit_code
                result.error = f"step {index + 1} ({step.name}) refused: " + "; ".join(step.problems)
                return False
            if step.status == "failed":
                result.status, result.exit_code = "failed", StepFailed.exit_code
                result.error = f"step {index + 1} ({step.name}) failed: " + "; ".join(step.problems)
                return False
        return True

    def _verify(self, plan: Plan, ctx: RunContext, result: RunResult) -> None:
        self._emit("stage", name="verify")
        failed = []
        for index, planned in enumerate(plan.checks):
            check = self.steps.run(planned, ctx, result.checks[index], index + 1, len(plan.checks), "check")
            if check.status == "failed":
                failed.append(check.name)
        if failed:
            result.status, result.exit_code = "verify-failed", 3
            result.error = f"verification failed: {', '.join(failed)}"
        else:
            result.status, result.exit_code = ("dry-run" if self.dry_run else "done"), 0

    def _nothing_to_do(self, plan: Plan, ctx: RunContext, result: RunResult) -> bool:
        """Check the playbook fits the stack before anything is written; True when there is nothing to do."""
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

    @staticmethod
    def _placeholder(planned: PlannedAction) -> StepResult:
        return StepResult(name=planned.name, kind=planned.kind, service=planned.service,
                          command=planned.display())
