"""The exception hierarchy: every error runbook raises carries the exit code of the contract.

The CLI catches `RunbookError` in one place and prints `str(error)` as one line.
"""

from __future__ import annotations


class RunbookError(Exception):
    """Base of every error runbook reports to the user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class StepFailed(RunbookError):
    """A step of a playbook failed (exit 1)."""

    exit_code = 1


class InputError(RunbookError):
    """Bad input from the user: invalid playbook, unknown variable, bad option (exit 2)."""

    exit_code = 2


class PlaybookError(InputError):
    """A playbook file that cannot be loaded; `problems` holds `FILE:LINE: key: what` lines."""

    def __init__(self, message: str, problems: list[str] | None = None, *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = problems or []


class VariableError(InputError):
    """An unknown, missing or mistyped playbook variable; `variable` names it when it is one."""

    def __init__(self, message: str, *, hint: str | None = None, variable: str | None = None):
        super().__init__(message, hint=hint)
        self.variable = variable


class RenderError(InputError):
    """A template that does not render (unknown name, syntax error, sandbox violation)."""


class Refused(InputError):
    """A destructive run without confirmation."""


class ConfigError(InputError):
    """A broken `runbook.yml`."""


class SnapshotFailed(RunbookError):
    """A snapshot could not be taken, or a snapshot on disk is damaged (exit 1); no step runs."""

    exit_code = 1


class RestoreFailed(RunbookError):
    """Putting a snapshot back failed (exit 1); the database restore is one transaction."""

    exit_code = 1


class VerifyFailed(RunbookError):
    """A verify check did not hold after the steps ran (exit 3)."""

    exit_code = 3


class EnvironmentNotReady(RunbookError):
    """Docker, a service or the database is not there (exit 4)."""

    exit_code = 4


class LockHeld(RunbookError):
    """Another run holds the lock (exit 5)."""

    exit_code = 5


class Interrupted(RunbookError):
    """The run was stopped by Ctrl-C or SIGTERM (exit 130)."""

    exit_code = 130
