"""What a run that did not succeed owes: the history rows and migration files put back, or the whole snapshot.

Never prints: what it did goes to the run's callback as notes, and onto the RunResult for the report.
"""

from __future__ import annotations

from collections.abc import Callable

from runbook.artifacts.putback import Before, put_back
from runbook.artifacts.report import putback_lines
from runbook.artifacts.restore import restore_snapshot
from runbook.config import Config
from runbook.database.postgres import Database
from runbook.errors import RunbookError
from runbook.frameworks.context import RunContext
from runbook.redact import Redactor
from runbook.results import RunResult
from runbook.targets.base import Target

Emit = Callable[..., None]


class Aftermath:
    """Settle a run once its steps ran: nothing after success, a put-back or a rollback otherwise."""

    def __init__(self, config: Config, target: Target, redactor: Redactor, emit: Emit,
                 rollback_on_failure: bool = False):
        self.config = config
        self.target = target
        self.redactor = redactor
        self.emit = emit
        self.rollback_on_failure = rollback_on_failure

    def _note(self, text: str) -> None:
        self.emit("note", text=self.redactor.text(text))

    def settle(self, database: Database, result: RunResult, before: Before | None, ctx: RunContext | None) -> None:
        """On any end but success, put back what the run promised to put back.

        `before` is None until the run captured it (a dry run never does); `ctx` is None when no line from
        `runbook diagnose` may be asked for (a rehearsal, or a run stopped before it had a context).
        """
        if before is None or result.exit_code == 0:
            return
        snapshot_id = before.snapshot_id
        if result.exit_code == 3 and not self.rollback_on_failure:
            text = "verification failed: the steps' changes stay" + (
                f"; to put back only the history rows and migration files: "
                f"runbook restore {snapshot_id} --only history,files" if snapshot_id else "")
            result.notes.append(text)
            self.emit("note", text=text)
            return
        if self.rollback_on_failure:
            self.rollback(database, result)
            if result.rollback.get("status") == "restored" or result.exit_code == 3:
                return
        self.emit("stage", name="put back")
        database.ensure_idle()  # a query cut by Ctrl-C leaves the session busy: start a fresh one
        outcome = put_back(self.target, database, before, progress=self._note, fix_line=lambda: _fix_line(ctx))
        result.putback = outcome.to_dict()
        result.putback["snapshot"] = snapshot_id
        for line in putback_lines(result.putback):
            self._note(line)

    def rollback(self, database: Database, result: RunResult) -> None:
        """With --rollback-on-failure, put the whole snapshot back; the exit code still tells the failure."""
        self.emit("stage", name="rollback")
        snapshot_id = result.snapshot.get("id", "")
        if not snapshot_id:
            result.rollback = {"snapshot": "", "status": "failed", "error": "the playbook takes no snapshot"}
            text = "rollback FAILED: the playbook takes no snapshot, so there is nothing to restore"
        else:
            try:
                database.ensure_idle()
                outcome = restore_snapshot(self.target, database, self.config, snapshot_id, progress=self._note,
                                           on_transfer=lambda transfer: self.emit("transfer", transfer=transfer))
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
        self._note(text)


def _fix_line(ctx: RunContext | None) -> str | None:
    """The line `runbook diagnose` prints now, for what a stopped run left behind."""
    if ctx is None:
        return None
    from runbook.frameworks.diagnose import diagnose  # only when a step left a table: most runs never need it

    try:
        _, findings, _ = diagnose(ctx)
    except RunbookError:
        return None
    return next((f.command for f in findings if f.command), None)
