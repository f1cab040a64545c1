"""The action registry: what a step calls with `action: NAME` and `with: {...}`.

An action gets the run's context and returns an ActionResult; it never prints. The framework packages
register theirs with `@action`; `runbook.frameworks.builtin` imports them all. This module imports none.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.errors import InputError

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext


@dataclass
class ActionResult:
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    data: Any = None
    notes: list[str] = field(default_factory=list)
    # One line per reason the action failed; the executor shows them when the step's expectations fail.
    problems: list[str] = field(default_factory=list)
    # The state does not fit the action: the run stops with exit 2 (refused), nothing changed.
    refused: bool = False


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


def require(args: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if n not in args]
    if missing:
        raise InputError(f"action needs `with:` {', '.join(missing)}")


@action("assert")
def assert_that(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Stop the run with a message when a condition on earlier outputs does not hold."""
    require(args, "that")
    value = ctx.evaluate(str(args["that"]))
    if value:
        return ActionResult(0, "condition holds\n")
    return ActionResult(1, "", f"{args.get('message') or 'condition does not hold: ' + str(args['that'])}\n")


@action("history")
def history(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Read the migration history tables (django_migrations, alembic_version) as JSON."""
    rows = ctx.database.history()
    return ActionResult(0, json.dumps(rows, indent=1) + "\n", data=rows)


# ---- helpers for the framework actions ----

def names_list(args: dict[str, Any], key: str) -> list[str] | None:
    value = args.get(key)
    if value in (None, "", []):
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InputError(f"`with: {key}` must be a list of names")
    return [str(i).strip() for i in items if str(i).strip()]


def allow_keys(args: dict[str, Any], *names: str) -> None:
    unknown = sorted(set(args) - set(names))
    if unknown:
        raise InputError(f"unknown `with:` key {', '.join(unknown)} (known: {', '.join(names) or 'none'})")


def verdict(problems: list[str], ok_line: str, data: dict[str, Any]) -> ActionResult:
    """A check's result: exit 1 and one line per problem, or exit 0 and one line saying what holds."""
    data = {"ok": not problems, "problems": problems, **data}
    if problems:
        return ActionResult(1, "".join(f"{p}\n" for p in problems), data=data, problems=list(problems))
    return ActionResult(0, ok_line + "\n", data=data)


def refuse(lines: list[str], refusals: list[str], data: dict[str, Any]) -> ActionResult:
    """A plan's refusal: exit 2 (the state does not fit), what it found, then one line per reason."""
    text = "\n".join([*lines, "refused, nothing was changed:", *[f"  - {r}" for r in refusals]]) + "\n"
    return ActionResult(2, text, data=data, problems=[f"refused: {r}" for r in refusals], refused=True)
