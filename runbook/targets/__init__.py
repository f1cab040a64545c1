"""Where commands run: one small interface, several implementations (local host, Docker Compose, dry run)."""

from runbook.targets.base import ExecResult, OutputCallback, Target

__all__ = ["ExecResult", "OutputCallback", "Target"]
