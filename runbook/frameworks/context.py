"""What a step can see while a run is under way: a light module, so `diagnose` need not import the executor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runbook.config import Config
    from runbook.database.postgres import Database
    from runbook.targets.base import Target


@dataclass
class RunContext:
    """The config, target, database, variables and kept outputs a step or action works with."""

    config: Config
    target: Target
    database: Database
    variables: dict[str, Any]
    kept: dict[str, Any] = field(default_factory=dict)
    # The fit check's inspection, for the playbook's planning action to reuse instead of a second one.
    inspection: Any = None

    def template_context(self) -> dict[str, Any]:
        return {**self.variables, "kept": self.kept}

    def evaluate(self, expression: str) -> Any:
        from runbook.playbook.render import evaluate

        return evaluate(expression, self.template_context(), "condition")
