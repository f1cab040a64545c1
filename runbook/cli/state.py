"""What one invocation of the command line carries from its global options to its command and its exit."""

from __future__ import annotations

from typing import Any


class State:
    # The global options (runbook.options.Options), set before any command runs.
    options: Any = None
    # Set by Ctrl-C or SIGTERM and cleared once a command has said so itself.
    interrupted: bool = False


state = State()
