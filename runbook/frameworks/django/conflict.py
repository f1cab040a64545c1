"""Two different `0003` migrations in one app: one ran on the server, the other is in the code.

The new one creates tables the old one already created, so `manage.py migrate` stops with
`relation "billings" already exists`. The guide's fix is `migrate healthcare 0003 --fake`, blind. Here
the plan is computed from one inspection first: which unapplied leaf creates tables that already exist
(the new side), and what the database still records of the old side. The fake itself is the
`django.fake` guard: it records the new migration only when every table, column, index and constraint
it creates is proven to be there.

The old side's row:
- its file is gone from the code: the row is PRUNED, after the new migration is recorded. The new
  migration's row now stands for those tables; a row no file defines only misleads whoever reads the
  history next (and `diagnose` keeps reporting it). Re-pointing the row (renaming it in place) would say
  the new migration ran when the old one did and hide that it was faked; the old row stays in the
  snapshot and in this run's report.
- its file is still in the code: the row is KEPT (that migration did run and Django knows it), and the
  app's two leaves are joined by `makemigrations --merge`, an empty migration Django then records.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.errors import InputError
from runbook.frameworks.actions import ActionResult, action, allow_keys
from runbook.frameworks.django import inspection as django

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext

NUMBER_RE = re.compile(r"^(\d+)_")
APP_RE = re.compile(r"^[A-Za-z_]\w*$")


@dataclass
class ConflictRepair:
    """What fake-conflict will do, computed before it does anything."""

    app: str = ""
    migration: str = ""
    fake: list[str] = field(default_factory=list)
    prune: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)
    merge: bool = False
    tables: list[str] = field(default_factory=list)
    other_orphans: list[str] = field(default_factory=list)
    why_not: str = ""

    @property
    def needed(self) -> bool:
        return bool(self.fake)

    def as_data(self) -> dict[str, Any]:
        return {"needed": self.needed, "app": self.app, "migration": self.migration, "fake": self.fake,
                "prune": self.prune, "keep": self.keep, "merge": self.merge, "tables": self.tables,
                "other_orphans": self.other_orphans, "why_not": self.why_not}


def number_of(name: str) -> str | None:
    """Return the leading number of a migration name (`0003` of `0003_billing`), or None."""
    match = NUMBER_RE.match(name)
    return match.group(1) if match else None


def existing_tables(fc: django.FakeCheck) -> list[str]:
    """Return the tables the migration's CreateModel operations make that already exist."""
    found = []
    for op in fc.operations:
        if op.type != "CreateModel" or not op.checks:
            continue
        first = op.checks[0]
        if first.subject.startswith("table ") and first.ok:
            found.append(first.subject.split(" ", 1)[1])
    return found


def target_names(app: str, migration: str) -> tuple[str, str | None]:
    """Read the `app` and `migration` variables: `migration` may be NAME, a prefix, or APP.NAME."""
    app, migration = app.strip(), migration.strip()
    if migration and "." in migration:
        given_app, _, migration = migration.partition(".")
        if app and app != given_app:
            raise InputError(f"`migration` names app {given_app!r} but `app` is {app!r}")
        app = given_app
    if app and not APP_RE.match(app):
        raise InputError(f"`app`: {app!r} is not a Django app label")
    if migration and not re.match(r"^\w+$", migration):
        raise InputError(f"`migration`: {migration!r} is not a migration name")
    if migration and not app:
        raise InputError("`migration` needs `app` too (or give it as APP.NAME)")
    return app, migration or None


def candidates(found: django.Inspection, app: str, explicit: bool) -> list[tuple[django.FakeCheck, list[str]]]:
    """Return unapplied migrations (leaves unless named) that create tables which already exist."""
    out = []
    for fc in found.fake_checks:
        if fc.error or not fc.migration or fc.applied:
            continue
        fc_app, name = fc.migration.split(".", 1)
        if app and fc_app != app:
            continue
        if not explicit and name not in found.leaves.get(fc_app, []):
            continue
        tables = existing_tables(fc)
        if tables:
            out.append((fc, tables))
    return out


def plan_conflict(found: django.Inspection, app: str, migration: str | None) -> ConflictRepair:
    """Decide what to fake, prune, keep and merge from one inspection with fake checks; change nothing."""
    repair = ConflictRepair(app=app)
    for fc in found.fake_checks:
        if fc.error and migration:
            raise InputError(f"`migration`: {fc.error}")
        if migration and fc.applied:
            repair.why_not = f"{fc.migration} is already applied: there is no conflict to repair"
            return repair
    found_candidates = candidates(found, app, bool(migration))
    if not found_candidates:
        where = f"{app}.{migration}" if migration else (f"app {app}" if app else "any app")
        unapplied = [n.key for n in found.migrations if not n.applied and (not app or n.app == app)]
        repair.why_not = (f"no unapplied migration in {where} creates a table that already exists"
                          + (f" (unapplied: {', '.join(unapplied)}; apply them with `manage.py migrate`)"
                             if unapplied else " (nothing is unapplied)"))
        return repair
    if len(found_candidates) > 1:
        names = ", ".join(fc.migration or fc.requested for fc, _ in found_candidates)
        raise InputError(f"several unapplied migrations create tables that already exist ({names}): "
                         "choose one with --var app=APP (and --var migration=NAME)")
    fc, tables = found_candidates[0]
    assert fc.migration is not None
    repair.app, name = fc.migration.split(".", 1)
    repair.migration, repair.tables = fc.migration, tables
    number = number_of(name)
    orphans = [p.details["migration"] for p in found.problems_of(("no-file",), [repair.app])
               if str(p.details.get("migration", "")).startswith(f"{repair.app}.")]
    repair.prune = [o for o in orphans if number and number_of(o.split(".", 1)[1]) == number]
    repair.other_orphans = [o for o in orphans if o not in repair.prune]
    nodes = {n.key: n for n in found.migrations}
    siblings = [f"{repair.app}.{leaf}" for leaf in found.conflicts.get(repair.app, []) if leaf != name]
    repair.keep = [s for s in siblings if nodes.get(s) and nodes[s].applied]
    repair.merge = bool(siblings)
    if not repair.prune and not repair.keep:
        repair.why_not = (f"{fc.migration} creates tables that already exist ({', '.join(tables)}) but no other "
                          f"{number or 'same-numbered'} migration of {repair.app} is recorded: this is not a "
                          "conflict; if the tables came from a restored dump, `runbook run fake-migrations "
                          f"--var migrations={fc.migration} --yes` records it after the same proof")
        repair.merge = False
        return repair
    repair.fake = [fc.migration]
    return repair


def describe(repair: ConflictRepair) -> list[str]:
    if not repair.needed:
        return [f"nothing to do: {repair.why_not}", "nothing was changed"]
    lines = [f"conflict in app {repair.app}:",
             f"  {repair.migration} is not applied, but tables it creates already exist: {', '.join(repair.tables)}"]
    lines += [f"  {o} is recorded as applied but no file defines it any more (the server's side)"
              for o in repair.prune]
    lines += [f"  {k} is applied and its file is still in the code (the server's side)" for k in repair.keep]
    lines.append(f"plan: record {repair.migration} without running it, only if django.fake proves every table, "
                 "column, index and constraint it creates is there (else refuse and change nothing)")
    for orphan in repair.prune:
        lines.append(f"plan: prune the row of {orphan} after that: its file is gone and {repair.migration} "
                     "now stands for its tables; a row no file defines only misleads (re-pointing it would hide "
                     "that the new migration was faked); the row is kept in the snapshot and this report")
    for kept in repair.keep:
        lines.append(f"plan: keep the row of {kept}: it ran and its file is still in the code")
    if repair.merge:
        lines.append(f"plan: join the leaves of {repair.app} with `makemigrations --merge` and record that empty "
                     "migration; commit it, or delete one of the two 0003 files in the repository (a fresh "
                     "database would run both)")
    lines += [f"note: {o} has no file either; left alone (not the other side of this conflict)"
              for o in repair.other_orphans]
    return lines


@action("django.plan-conflict")
def plan_conflict_action(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Find the unapplied migration whose tables already exist and the stale row of the other side."""
    allow_keys(args, "app", "migration")
    app, migration = target_names(str(args.get("app") or ""), str(args.get("migration") or ""))
    if not migration and isinstance(ctx.inspection, django.Inspection):
        found = ctx.inspection  # the fit check's, with fake checks of every unapplied migration
    else:
        found = django.inspect(ctx, fake=[f"{app}.{migration}"] if migration else ["@unapplied"], schema=False)
    if not found.history_table:
        repair = ConflictRepair(app=app, why_not="table django_migrations does not exist: nothing was applied")
    else:
        repair = plan_conflict(found, app, migration)
    return ActionResult(0, "\n".join(describe(repair)) + "\n", data=repair.as_data())
