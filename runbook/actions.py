"""Built-in actions a step can call with `action: NAME` and `with: {...}`.

An action gets the run's context and returns an ActionResult; it never prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook import alembic, django
from runbook.errors import InputError

if TYPE_CHECKING:
    from runbook.context import RunContext


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


# ---- Django and Alembic: usable as steps and as verify checks ----

def _names_list(args: dict[str, Any], key: str) -> list[str] | None:
    value = args.get(key)
    if value in (None, "", []):
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InputError(f"`with: {key}` must be a list of names")
    return [str(i).strip() for i in items if str(i).strip()]


def _allow(args: dict[str, Any], *names: str) -> None:
    unknown = sorted(set(args) - set(names))
    if unknown:
        raise InputError(f"unknown `with:` key {', '.join(unknown)} (known: {', '.join(names) or 'none'})")


def _verdict(problems: list[str], ok_line: str, data: dict[str, Any]) -> ActionResult:
    """A check's result: exit 1 and one line per problem, or exit 0 and one line saying what holds."""
    data = {"ok": not problems, "problems": problems, **data}
    if problems:
        return ActionResult(1, "".join(f"{p}\n" for p in problems), data=data, problems=list(problems))
    return ActionResult(0, ok_line + "\n", data=data)


@action("django.inspect")
def django_inspect(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Read the migration graph, history rows, models and live schema; keep the whole answer."""
    _allow(args, "fake", "makemigrations", "schema")
    fake = django.parse_names(args["fake"], "fake") if args.get("fake") else None
    found = django.inspect(ctx, fake=fake, makemigrations=bool(args.get("makemigrations")),
                           schema=bool(args.get("schema", True)))
    applied = sum(1 for m in found.migrations if m.applied)
    lines = [f"Django {found.django}, settings {found.settings}",
             f"{len(found.migrations)} migrations in {len({m.app for m in found.migrations})} apps, "
             f"{applied} applied; {len(found.applied)} rows in django_migrations"]
    if found.problems:
        lines.append(f"{len(found.problems)} problems:")
        lines += [f"  - {p.message}" for p in found.problems]
    else:
        lines.append("no problems found")
    return ActionResult(0, "\n".join(lines) + "\n", data=found.raw)


@action("django.consistent")
def django_consistent(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when an applied migration has an unapplied dependency (Django's InconsistentMigrationHistory)."""
    _allow(args, "apps", "orphans")
    orphans = str(args.get("orphans", "note"))
    if orphans not in ("note", "fail"):
        raise InputError("`with: orphans` must be note or fail")
    found = django.inspect(ctx, schema=False)
    apps = _names_list(args, "apps")
    problems = [p.message for p in found.problems_of(django.HISTORY_KINDS, apps)]
    stray = [p.message for p in found.problems_of(("no-file",), apps)]
    if orphans == "fail":
        problems += stray
    result = _verdict(problems, f"history is consistent: every applied migration's dependencies are applied "
                                f"({len(found.applied)} rows)", {"orphans": stray})
    result.stdout += "".join(f"note: {s}\n" for s in stray if orphans == "note")
    return result


@action("django.no-unapplied")
def django_no_unapplied(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when a migration file is not recorded as applied."""
    _allow(args, "apps")
    found = django.inspect(ctx, schema=False)
    problems = [p.message for p in found.problems_of(("unapplied",), _names_list(args, "apps"))]
    return _verdict(problems, f"every migration is applied ({len(found.migrations)} migrations)", {})


@action("django.no-conflicts")
def django_no_conflicts(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when an app has more than one leaf migration (two 0003_* files)."""
    _allow(args, "apps")
    found = django.inspect(ctx, schema=False)
    problems = [p.message for p in found.problems_of(("conflict",), _names_list(args, "apps"))]
    return _verdict(problems, "one leaf migration per app", {"leaves": found.leaves})


@action("django.makemigrations-clean")
def django_makemigrations_clean(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when `makemigrations --check` would write a migration (works with an inconsistent history)."""
    _allow(args, "apps")
    found = django.inspect(ctx, makemigrations=True, schema=False)
    check = found.makemigrations
    assert check is not None
    apps = set(_names_list(args, "apps") or [])
    problems = []
    for app, migrations in check.changes.items():
        if apps and app not in apps:
            continue
        for migration in migrations:
            problems.append(f"makemigrations would write {app}/migrations/{migration['name']}.py: "
                            + "; ".join(migration["operations"]))
    for app, names in check.conflicts.items():
        if not apps or app in apps:
            problems.append(f"makemigrations would stop: app {app} has conflicting leaves {', '.join(names)}")
    return _verdict(problems, "models match the migration files: makemigrations has nothing to write",
                    {"changes": check.changes, "conflicts": check.conflicts})


@action("django.schema-matches")
def django_schema_matches(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when a model's table or column is missing or has another type or nullability in the database."""
    _allow(args, "apps", "ignore")
    found = django.inspect(ctx)
    ignore = set(_names_list(args, "ignore") or [])
    problems = [p for p in found.problems_of(django.SCHEMA_KINDS, _names_list(args, "apps"))
                if p.details.get("table") not in ignore
                and f"{p.details.get('table')}.{p.details.get('column')}" not in ignore]
    models = found.raw.get("models", [])
    columns = sum(len(m["columns"]) for m in models)
    return _verdict([p.message for p in problems],
                    f"schema matches the models: {len(models)} tables, {columns} columns",
                    {"differences": [p.details for p in problems]})


@action("django.fake")
def django_fake(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Record migrations as applied without running them, only when the schema proves they already ran."""
    _require(args, "migrations")
    _allow(args, "migrations", "allow_unproven", "accept")
    names = django.parse_names(args["migrations"])
    accept = django.parse_names(args["accept"], "accept") if args.get("accept") else []
    found = django.inspect(ctx, fake=names, schema=False)
    if not found.history_table:
        why = "refused: table django_migrations does not exist (run `manage.py migrate` for the built-in apps first)"
        return ActionResult(1, "", why + "\n", data={"recorded": []}, problems=[why])
    verdict = django.fake_verdict(found.fake_checks, allow_unproven=bool(args.get("allow_unproven")), accept=accept)
    data = {"recorded": [], "already": verdict.already, "checks": found.raw.get("fake_check", [])}
    if not verdict.proven:
        return ActionResult(1, "\n".join(verdict.lines) + "\n", data=data, problems=verdict.refusals)
    lines = list(verdict.lines)
    if verdict.to_record:
        data["recorded"] = django.record_rows(ctx, verdict.to_record)
        lines += [f"recorded {name}" for name in data["recorded"]]
    else:
        lines.append("nothing to record")
    return ActionResult(0, "\n".join(lines) + "\n", data=data)


@action("django.unrecord")
def django_unrecord(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Delete the django_migrations rows of the given migrations (their tables stay)."""
    _require(args, "migrations")
    _allow(args, "migrations")
    names = django.parse_names(args["migrations"])
    if not ctx.database.table_exists("django_migrations"):
        return ActionResult(0, "table django_migrations does not exist: nothing to delete\n",
                            data={"deleted": [], "absent": names})
    deleted = django.delete_rows(ctx, names)
    absent = [n for n in names if n not in deleted]
    lines = [f"deleted the row of {n}" for n in deleted] + [f"no row for {n}" for n in absent]
    return ActionResult(0, "\n".join(lines) + "\n", data={"deleted": deleted, "absent": absent})


@action("alembic.single-head")
def alembic_single_head(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when the revision scripts have more than one head ("Multiple head revisions are present")."""
    _allow(args, "config", "python")
    scripts = alembic.inspect_scripts(ctx, config=args.get("config"), python=args.get("python"))
    return _verdict(alembic.head_problems(scripts), f"one head: {', '.join(scripts.heads)}",
                    {"heads": scripts.heads})


@action("alembic.at-head")
def alembic_at_head(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when the version table is not exactly at the head revision(s) of the scripts."""
    _allow(args, "config", "python", "version_table")
    table = str(args.get("version_table", "alembic_version"))
    scripts = alembic.inspect_scripts(ctx, config=args.get("config"), python=args.get("python"))
    current = alembic.current_versions(ctx.database, table)
    return _verdict(alembic.at_head_problems(scripts, current, table),
                    f"the database is at head {', '.join(scripts.heads)}",
                    {"heads": scripts.heads, "current": current})


@action("alembic.schema-matches")
def alembic_schema_matches(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when `alembic check` finds the live schema differs from the models (env.py's target_metadata)."""
    from runbook.backend import exec_options

    _allow(args)
    options = exec_options(ctx.config, "backend")
    result = ctx.target.exec("backend", [*ctx.config.backend.alembic, "check"], env=options.env,
                             workdir=options.workdir, user=options.user, timeout=ctx.config.step_timeout)
    output = (result.stdout + result.stderr).strip()
    if result.exit_code == 0:
        return ActionResult(0, "the schema matches the models: alembic check found nothing to generate\n",
                            data={"ok": True, "checked": True})
    if "MetaData object" in output:
        # No models to compare with (target_metadata = None): say so rather than fail every repair.
        return ActionResult(0, "note: env.py gives no target_metadata, so the schema cannot be compared with "
                               "models; only the revisions were checked\n", data={"ok": True, "checked": False})
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    problems = [f"alembic check: {line}" for line in lines[-5:]] or [f"alembic check exited {result.exit_code}"]
    return ActionResult(1, output + "\n", data={"ok": False, "checked": True}, problems=problems)


# Imported last: these modules register more actions and import this one's `action` decorator.
from runbook import (  # noqa: E402,F401
    alembic_repair,
    django_conflict,
    django_files,
    django_initial,
    django_repair,
    django_rerun,
)
