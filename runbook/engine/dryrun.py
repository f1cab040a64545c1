"""`runbook run --dry-run`: the real executor against a recording target and a recording database.

Nothing runs and nothing is changed: no process, no container, no connection, no lock, no snapshot, and no
report among the project's reports (a dry run is not a run to look back on); with `--report PATH` its
report goes there. The same recording pieces let the executor's tests script what the stack answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbook.artifacts.report import render_markdown
from runbook.config import Config
from runbook.database.postgres import Database
from runbook.engine.executor import EventCallback, Executor
from runbook.playbook.plan import Plan
from runbook.redact import Redactor
from runbook.results import RunResult
from runbook.targets.base import DatabaseSettings, Target, create_output_file
from runbook.targets.recording import RecordingTarget

Rows = tuple[list[str], list[list[Any]], str]


@dataclass(frozen=True)
class Query:
    """One statement sent to the recording database, as it was sent."""

    text: str
    params: Mapping[str, Any] | None = None
    identifiers: Mapping[str, str] | None = None
    timeout: float | None = None


# What a scripted statement answers: (columns, rows, status), an exception to raise (StepFailed is a
# failed SQL step), or a function of the query.
QueryAnswer = Rows | Exception | Callable[[Query], Rows]


class RecordingDatabase(Database):
    """A Database that sends nothing anywhere: it records each statement and answers from a script.

    `answers` maps the start of a statement to its answer, the longest match winning; any other statement
    answers no columns and no rows. Everything built on `query` (history, table_exists) is the real code.
    """

    def __init__(self, settings: DatabaseSettings, application_name: str = "runbook",
                 answers: Mapping[str, QueryAnswer] | None = None):
        super().__init__(settings, application_name)
        self.answers = dict(answers or {})
        self.queries: list[Query] = []
        self.locked = False
        self.closed = False

    def connect(self):  # type: ignore[override]
        raise AssertionError("a recording database has no connection; everything goes through query()")

    def query(self, text: str, params: dict[str, Any] | None = None, identifiers: dict[str, str] | None = None,
              timeout: float | None = None) -> Rows:
        query = Query(text, params, identifiers, timeout)
        self.queries.append(query)
        matches = [start for start in self.answers if text.startswith(start)]
        if not matches:
            return [], [], ""
        answer = self.answers[max(matches, key=len)]
        if isinstance(answer, Exception):
            raise answer
        return answer(query) if callable(answer) else answer

    def lock_run(self) -> None:
        self.locked = True

    def ensure_idle(self) -> None:
        """Nothing can be left busy: no statement ever ran."""

    def close(self) -> None:
        self.closed = True


def open_recording_database(target: Target, settings: DatabaseSettings, application_name: str) -> Database:
    """The executor's way to its database in a dry run: one that records and connects nowhere."""
    return RecordingDatabase(settings, application_name)


def recording_target(config: Config) -> RecordingTarget:
    """The target of a dry run: every command and file operation recorded, none done."""
    return RecordingTarget(
        workdir=config.backend.workdir,
        settings=DatabaseSettings(host="none", port=0, user="none", dbname="none",
                                  via="none: a dry run opens no connection"),
        facts={"target": f"dry run: nothing runs (a real run uses the {config.target} target)"},
    )


def report_writer(dest: Path | None) -> Callable[[RunResult, Redactor], Path | None]:
    """Keep a dry run's Markdown report only where `--report` asks, owner-only like every report."""

    def write(result: RunResult, redactor: Redactor) -> Path | None:
        if dest is None:
            return None
        with create_output_file(dest) as sink:
            sink.write(render_markdown(result, redactor).encode())
        return dest

    return write


def dry_run(config: Config, plan: Plan, *, on_event: EventCallback | None = None, redactor: Redactor | None = None,
            report: Path | None = None) -> tuple[RunResult, Path | None]:
    """Run the plan through the real executor, sending every command to a recording target; nothing runs."""
    executor = Executor(config, recording_target(config), on_event=on_event, redactor=redactor, dry_run=True,
                        open_database=open_recording_database, report_writer=report_writer(report))
    return executor.run(plan)
