"""Django's checks and history edits as actions: usable as steps and as verify checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runbook.errors import InputError
from runbook.frameworks.actions import ActionResult, action, allow_keys, names_list, require, verdict
from runbook.frameworks.django import inspection as django

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext


@action("django.inspect")
def django_inspect(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Read the migration graph, history rows, models and live schema; keep the whole answer."""
    allow_keys(args, "fake", "makemigrations", "schema")
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
    allow_keys(args, "apps", "orphans")
    orphans = str(args.get("orphans", "note"))
    if orphans not in ("note", "fail"):
        raise InputError("`with: orphans` must be note or fail")
    found = django.inspect(ctx, schema=False)
    apps = names_list(args, "apps")
    problems = [p.message for p in found.problems_of(django.HISTORY_KINDS, apps)]
    stray = [p.message for p in found.problems_of(("no-file",), apps)]
    if orphans == "fail":
        problems += stray
    result = verdict(problems, f"history is consistent: every applied migration's dependencies are applied "
                                f"({len(found.applied)} rows)", {"orphans": stray})
    result.stdout += "".join(f"note: {s}\n" for s in stray if orphans == "note")
    return result


@action("django.no-unapplied")
def django_no_unapplied(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when a migration file is not recorded as applied."""
    allow_keys(args, "apps")
    found = django.inspect(ctx, schema=False)
    problems = [p.message for p in found.problems_of(("unapplied",), names_list(args, "apps"))]
    return verdict(problems, f"every migration is applied ({len(found.migrations)} migrations)", {})


@action("django.no-conflicts")
def django_no_conflicts(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when an app has more than one leaf migration (two 0003_* files)."""
    allow_keys(args, "apps")
    found = django.inspect(ctx, schema=False)
    problems = [p.message for p in found.problems_of(("conflict",), names_list(args, "apps"))]
    return verdict(problems, "one leaf migration per app", {"leaves": found.leaves})


@action("django.makemigrations-clean")
def django_makemigrations_clean(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when `makemigrations --check` would write a migration (works with an inconsistent history)."""
    allow_keys(args, "apps")
    found = django.inspect(ctx, makemigrations=True, schema=False)
    check = found.makemigrations
    assert check is not None
    apps = set(names_list(args, "apps") or [])
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
    return verdict(problems, "models match the migration files: makemigrations has nothing to write",
                    {"changes": check.changes, "conflicts": check.conflicts})


@action("django.schema-matches")
def django_schema_matches(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when a model's table or column is missing or has another type or nullability in the database."""
    allow_keys(args, "apps", "ignore")
    found = django.inspect(ctx)
    ignore = set(names_list(args, "ignore") or [])
    problems = [p for p in found.problems_of(django.SCHEMA_KINDS, names_list(args, "apps"))
                if p.details.get("table") not in ignore
                and f"{p.details.get('table')}.{p.details.get('column')}" not in ignore]
    models = found.raw.get("models", [])
    columns = sum(len(m["columns"]) for m in models)
    return verdict([p.message for p in problems],
                    f"schema matches the models: {len(models)} tables, {columns} columns",
                    {"differences": [p.details for p in problems]})


@action("django.fake")
def django_fake(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Record migrations as applied without running them, only when the schema proves they already ran."""
    require(args, "migrations")
    allow_keys(args, "migrations", "allow_unproven", "accept")
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
    require(args, "migrations")
    allow_keys(args, "migrations")
    names = django.parse_names(args["migrations"])
    if not ctx.database.table_exists("django_migrations"):
        return ActionResult(0, "table django_migrations does not exist: nothing to delete\n",
                            data={"deleted": [], "absent": names})
    deleted = django.delete_rows(ctx, names)
    absent = [n for n in names if n not in deleted]
    lines = [f"deleted the row of {n}" for n in deleted] + [f"no row for {n}" for n in absent]
    return ActionResult(0, "\n".join(lines) + "\n", data={"deleted": deleted, "absent": absent})
