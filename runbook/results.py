"""A run's outcome as plain data: what the executor produces and the report renders."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

StepStatus = Literal["ok", "failed", "skipped", "not-run", "running", "interrupted"]
RunStatus = Literal["done", "failed", "verify-failed", "refused", "interrupted", "error", "dry-run"]


@dataclass
class StepResult:
    """One step or verify check as it ran."""

    name: str
    kind: str  # run | manage | alembic | shell | sql | action
    service: str | None
    command: str  # the rendered command, SQL or action call, for people
    status: StepStatus = "not-run"
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    # Why an expectation did not hold, one line each.
    problems: list[str] = field(default_factory=list)
    truncated: bool = False
    note: str = ""
    # The step refused the state it found (exit 2), as opposed to failing.
    refused: bool = False


@dataclass
class RunResult:
    """Everything the report needs; filled as the run goes so a failed or interrupted run still reports."""

    playbook: str
    description: str
    project: str
    target: dict[str, str]
    user: str
    host: str
    started: str  # ISO 8601 UTC
    ended: str = ""
    duration: float = 0.0
    status: RunStatus = "error"
    exit_code: int = 1
    error: str = ""
    variables: dict[str, Any] = field(default_factory=dict)
    snapshot: dict[str, Any] = field(default_factory=dict)
    # Set by --rollback-on-failure: {"snapshot": id, "status": "restored" | "failed", "checked": ..., ...}
    rollback: dict[str, Any] = field(default_factory=dict)
    # A run that did not succeed puts back the history rows and migration files:
    # {"snapshot", "status": "put back" | "failed", "restored", "checked", "left", "problems"}
    putback: dict[str, Any] = field(default_factory=dict)
    history_before: dict[str, list[list[Any]]] = field(default_factory=dict)
    history_after: dict[str, list[list[Any]]] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    checks: list[StepResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # --rehearse: everything ran on a copy; what the copy was and how the real run is started.
    rehearsal: bool = False
    rehearsed_on: dict[str, Any] = field(default_factory=dict)
    # The migration files the run created, deleted or changed: {path, change, added, removed, diff, note}.
    files: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
