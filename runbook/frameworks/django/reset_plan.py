"""Decide what reset-all-migrations and squash-reset will do, from one inspection; change nothing.

Each plan says whether the playbook fits the state it finds (`needed`), refuses (exit 2, nothing changed)
when going on would hide drift or break another app, and keeps the lists the later steps act on.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

from runbook.errors import InputError
from runbook.frameworks.actions import ActionResult, action, allow_keys, refuse
from runbook.frameworks.django import inspection as django
from runbook.frameworks.django.files import (
    dependency_literals,
    local_apps,
    locate,
    names_list,
    outside_dependants,
)

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext

OUT_OF_SYNC = ("inconsistent-history", "unapplied", "no-file", "conflict")


def _pending_changes(found: django.Inspection, apps: list[str]) -> list[str]:
    check = found.makemigrations
    if check is None:
        return []
    lines = []
    for app in apps:
        for migration in check.changes.get(app, []):
            lines.append(f"the models of {app} have changes no migration file holds "
                         f"({'; '.join(migration['operations'])})")
    return lines


def _schema_refusals(found: django.Inspection, apps: list[str]) -> list[str]:
    return [f"{p.message}: a regenerated migration could not be recorded without running it "
            "(apply the missing change first)" for p in found.problems_of(django.SCHEMA_KINDS, apps)]


@action("django.plan-reset")
def plan_reset(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Choose the apps to reset (default: every local app) and say what is out of sync; change nothing."""
    allow_keys(args, "apps", "force")
    located = locate(ctx)
    requested = names_list(args, "apps")
    apps = requested or sorted(a.app for a in located.values() if a.local and a.path)
    if not apps:
        raise InputError("no local app with a migrations package under the backend's working directory")
    chosen = local_apps(located, apps)
    untouched = sorted(a for a in located if a not in apps and located[a].path)
    found = django.inspect(ctx, makemigrations=True)
    symptoms = [p.message for p in found.problems_of(OUT_OF_SYNC, apps)] + _pending_changes(found, apps)
    rows = [f"{a}.{n}" for a, n in found.applied if a in apps]
    data: dict[str, Any] = {
        "apps": apps, "untouched": untouched, "symptoms": symptoms, "refusals": [],
        "files": {a.app: a.paths() for a in chosen}, "rows": rows,
        "forced": bool(args.get("force")) and not symptoms,
    }
    lines = [f"apps to reset: {', '.join(apps)}" + (" (every local app)" if not requested else ""),
             f"left untouched: {', '.join(untouched) or 'none'}"]
    if found.history_table and not symptoms and not args.get("force"):
        # A healthy site is "nothing to do" before anything could refuse it.
        data["needed"] = False
        lines.append("nothing to do: the migration files and the history of these apps agree "
                     "(every file applied, every row has its file, the models match); "
                     "pass --var force=true to regenerate them anyway")
        return ActionResult(0, "\n".join(lines) + "\n", data=data)
    refusals: list[str] = []
    if not found.history_table:
        refusals.append("table django_migrations does not exist: there is no history to reset (run migrate)")
    for problem in found.problems_of(django.HISTORY_KINDS):
        dependency = str(problem.details.get("dependency", ""))
        if dependency.split(".", 1)[0] not in apps:
            refusals.append(f"{problem.message}, and {dependency.split('.', 1)[0]} is not reset: "
                            "run `runbook run fix-history` first")
    for key, deps in outside_dependants(found, apps).items():
        refusals.append(f"{key} (not reset) depends on {', '.join(deps)}: add its app to `apps`, "
                        "or use squash-reset, which rewrites such dependencies")
    refusals += _schema_refusals(found, apps)
    if refusals:
        return refuse(lines, refusals, {**data, "needed": False, "refusals": refusals})
    data["needed"] = True
    lines += ["found:"] + [f"  - {s}" for s in symptoms] if symptoms else ["found nothing wrong; force=true"]
    count = sum(len(f) for f in data["files"].values())
    lines.append(f"will delete {count} migration files (keeping __init__.py), run makemigrations, delete the "
                 f"{len(rows)} history rows of these apps, and record the new migrations once the schema "
                 "proves they ran")
    return ActionResult(0, "\n".join(lines) + "\n", data=data)


@action("django.plan-squash")
def plan_squash(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Check that an app's chain can be replaced by one fresh initial migration; change nothing."""
    allow_keys(args, "app")
    app = str(args.get("app") or "").strip()
    if not app:
        raise InputError("django.plan-squash needs `with: app`")
    located = locate(ctx)
    [chosen] = local_apps(located, [app])
    found = django.inspect(ctx, makemigrations=True)
    nodes = [n for n in found.migrations if n.app == app]
    data: dict[str, Any] = {"app": app, "apps": [app], "files": chosen.paths(), "refusals": [],
                            "rows": [f"{a}.{n}" for a, n in found.applied if a == app], "dependants": []}
    lines = [f"app {app}: {len(chosen.files)} migration files in {chosen.path}"]
    if len(chosen.files) <= 1:
        data["needed"] = False
        lines.append(f"nothing to do: app {app} has {len(chosen.files)} migration file; there is no chain to squash")
        return ActionResult(0, "\n".join(lines) + "\n", data=data)
    refusals: list[str] = []
    if not found.history_table:
        refusals.append("table django_migrations does not exist (run migrate)")
    refusals += [f"{n.key} is not applied: apply it first (`manage.py migrate {app}`); squash-reset records "
                 "the new initial migration without running it" for n in nodes if not n.applied]
    refusals += [f"{p.message}: run `runbook run fix-history` first"
                 for p in found.problems_of(django.HISTORY_KINDS, [app])]
    refusals += _pending_changes(found, [app]) + _schema_refusals(found, [app])
    deleted = {f[:-3] for f in chosen.files}
    for key, deps in outside_dependants(found, [app]).items():
        other, name = key.split(".", 1)
        home = located.get(other)
        if home is None or not home.path or not home.local:
            refusals.append(f"{key} depends on {', '.join(deps)} but is not one of the project's files")
            continue
        path = posixpath.join(home.path, name + ".py")
        written = {n for a, n in dependency_literals(ctx.target.read_file("backend", path).decode("utf-8"))
                   if a == app}
        missing = [d for d in deps if d.split(".", 1)[1] not in written and not written & {"__first__", "__latest__"}]
        if missing:
            refusals.append(f"{path}: the dependency on {', '.join(missing)} is not written as a literal "
                            "(app, name) pair; runbook cannot rewrite it")
        references = sorted(written & deleted)
        data["dependants"].append({"migration": key, "file": path, "references": references})
        if references:
            lines.append(f"{key} names {', '.join(references)}: will point at the new initial migration")
    if refusals:
        return refuse(lines, refusals, {**data, "needed": False, "refusals": refusals})
    data["needed"] = True
    lines.append(f"will delete the {len(chosen.files)} files (keeping __init__.py), run makemigrations {app}, "
                 f"rewrite {sum(1 for d in data['dependants'] if d['references'])} other files' dependencies, "
                 f"delete the {len(data['rows'])} history rows of {app} and record the new initial migration "
                 "once the schema proves it ran")
    return ActionResult(0, "\n".join(lines) + "\n", data=data)
