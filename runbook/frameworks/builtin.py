"""Every built-in action, registered by importing the modules that define them.

The registry (`runbook.frameworks.actions`) imports no framework module; this one imports them all, so
that whoever runs steps asks here and gets the complete set.
"""

from __future__ import annotations

from runbook.frameworks.actions import ACTIONS, ActionFunc, ActionResult, get_action
from runbook.frameworks.alembic import checks as alembic_checks  # noqa: F401
from runbook.frameworks.alembic import linearize, merge, stamp  # noqa: F401
from runbook.frameworks.django import checks as django_checks  # noqa: F401
from runbook.frameworks.django import conflict, files, initial, repair, rerun, reset_plan  # noqa: F401

__all__ = ["ACTIONS", "ActionFunc", "ActionResult", "get_action"]
