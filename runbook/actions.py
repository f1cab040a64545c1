"""Built-in actions a step can call with `action: NAME` and `with: {...}`.

An action gets the run's context and returns an ActionResult; it never prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.errors import InputError

if TYPE_CHECKING:
    from runbook.executor import RunContext


@dataclass
class ActionResult:
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    data: Any = None
    notes: list[str] = field(default_factory=list)


ActionFunc = Callable[["RunContext", dict[str, Any]], ActionResult]
ACTIONS: dict[str, ActionFunc] = {}


def action(name: str) -> Callable[[ActionFunc], ActionFunc]:
    def register(func: ActionFunc) -> ActionFunc:
        ACTIONS[name] = func
        return func

    return register


def get_action(name: str) -> ActionFunc:
    try:
        return ACTIONS[name]
    except KeyError:
        known = ", ".join(sorted(ACTIONS))
        raise InputError(f"unknown action {name!r} (known: {known})") from None


def _require(args: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if n not in args]
    if missing:
        raise InputError(f"action needs `with:` {', '.join(missing)}")


@action("assert")
def assert_that(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Stop the run with a message when a condition on earlier outputs does not hold."""
    _require(args, "that")
    value = ctx.evaluate(str(args["that"]))
    if value:
        return ActionResult(0, "condition holds\n")
    return ActionResult(1, "", f"{args.get('message') or 'condition does not hold: ' + str(args['that'])}\n")


@action("history")
def history(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Read the migration history tables (django_migrations, alembic_version) as JSON."""
    rows = ctx.database.history()
    return ActionResult(0, json.dumps(rows, indent=1) + "\n", data=rows)


@action("delete-files")
def delete_files(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Delete files matching a glob under a directory in a service; `keep` names are spared."""
    _require(args, "directory", "pattern")
    service = str(args.get("service", "backend"))
    keep = set(args.get("keep", ["__init__.py"]))
    deleted = []
    for path in ctx.target.list_files(service, str(args["directory"]), str(args["pattern"])):
        if path.rsplit("/", 1)[-1] in keep:
            continue
        ctx.target.delete_file(service, path)
        deleted.append(path)
    return ActionResult(0, "".join(f"deleted {p}\n" for p in deleted) or "nothing to delete\n", data=deleted)
