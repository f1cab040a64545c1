"""The compose target: containers (finding them, the daemon), execs (commands), streams (bytes), files."""

from runbook.targets.compose.target import ComposeTarget

__all__ = ["ComposeTarget"]
