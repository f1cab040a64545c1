"""Repair an inconsistent Django history: decide purely from one inspection, then act step by step.

The guides fake blindly (`migrate customer_contact 0001 --fake`), which Django refuses anyway while the
history is inconsistent. Here every missing dependency is checked against the live schema: recorded when
what it creates is already there, applied for real when it is not. Applying one needs the history made
consistent first, so the applied migrations that depend on it are un-recorded for a moment, then
recorded again when the schema proves they ran, or applied for real when it does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.frameworks.actions import ActionResult, action, refuse
from runbook.frameworks.django import inspection as django
from runbook.frameworks.django.initial import plan_fake_initial

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext


@dataclass
class HistoryRepair:
    """What fix-history will do, computed before it does anything."""

    inconsistencies: list[str] = field(default_factory=list)
    fake: list[str] = field(default_factory=list)
    apply: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    # Missing dependencies that are partly in the schema (or data migrations it cannot witness): refused.
    partial: list[str] = field(default_factory=list)

    @property
    def needed(self) -> bool:
        return bool(self.inconsistencies)

    def as_data(self) -> dict[str, Any]:
        return {"needed": self.needed, "inconsistencies": self.inconsistencies, "fake": self.fake,
                "apply": self.apply, "blockers": self.blockers, "reasons": self.reasons, "partial": self.partial}


def applied_dependants(nodes: dict[str, django.MigrationNode], targets: list[str]) -> list[str]:
    """Return applied migrations that depend, directly or not, on any of targets."""
    found = django.descendants(nodes, targets)
    return [k for k in django.graph_order(nodes) if k in found and nodes[k].applied]


def plan_history_repair(found: django.Inspection, checked: django.Inspection | None) -> HistoryRepair:
    """Decide what to record and what to apply; `checked` holds the fake checks of the missing ones."""
    repair = HistoryRepair(inconsistencies=[p.message for p in found.problems_of(django.HISTORY_KINDS)])
    if not repair.needed:
        return repair
    nodes = {n.key: n for n in found.migrations}
    missing = django.missing_ancestors(nodes)
    checks = {fc.migration: fc for fc in (checked.fake_checks if checked else []) if fc.migration}
    django.settle(list(checks.values()))
    for key in missing:
        fc = checks.get(key)
        status = django.effective_status(fc) if fc else "not checked"
        repair.reasons[key] = status
        if status in django.PROVEN and all(
                dep in repair.fake or nodes.get(dep) is None or nodes[dep].applied for dep in nodes[key].dependencies):
            repair.fake.append(key)
        elif fc is None or fc.absent or any(dep in repair.apply for dep in nodes[key].dependencies):
            repair.apply.append(key)
        else:
            repair.partial.append(key)
            problems = [c.message for c in fc.checks if not c.ok and not c.superseded_by] + fc.state_problems
            repair.reasons[key] = f"{status}: {'; '.join(problems[:3]) or status}"
    repair.blockers = applied_dependants(nodes, repair.apply)
    return repair


def _describe(repair: HistoryRepair) -> list[str]:
    if not repair.needed:
        return ["nothing to do: the migration history is consistent (no applied migration misses a dependency)"]
    lines = ["found:"] + [f"  {line}" for line in repair.inconsistencies]
    for key in repair.fake:
        lines.append(f"record {key}: its tables and columns exist ({repair.reasons[key]})")
    for key in repair.apply:
        lines.append(f"apply {key} for real: {repair.reasons[key]}")
    for key in repair.blockers:
        lines.append(f"un-record {key} while applying, then record it again if the schema proves it ran")
    for key in repair.partial:
        lines.append(f"cannot repair {key}: {repair.reasons[key]}")
    return lines


# How the state proof words a foreign key the live table lacks (key_problems in inside/django_schema.py).
FK_MISSING_RE = re.compile(r"foreign key (\w+)\((\w+)\) -> (\w+)\((\w+)\) does not exist")


def repointed_keys(checks: list[django.FakeCheck]) -> list[tuple[str, str, str, str, str]]:
    """Return (migration, table, column, target table, target column) of each foreign key that a migration
    which must run again would point somewhere else; pure."""
    found: list[tuple[str, str, str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for fc in checks:
        if django.effective_status(fc) in django.PROVEN:
            continue
        for text in fc.state_problems:
            match = FK_MISSING_RE.search(text)
            if match and match.group(1, 2) not in seen:
                seen.add(match.group(1, 2))
                found.append((fc.migration or fc.requested, *match.groups()))
    return found


def orphaned_rows(ctx: RunContext, table: str, column: str, target: str, target_column: str) -> int:
    """Count rows whose foreign key value has no row in the table it is about to reference."""
    if not ctx.database.table_exists(table):
        return 0
    if ctx.database.table_exists(target):
        text = ("SELECT count(*) FROM {t} WHERE {c} IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM {target} x WHERE x.{tc} = {t}.{c})")
    else:
        text = "SELECT count(*) FROM {t} WHERE {c} IS NOT NULL"
    _, rows, _ = ctx.database.query(text, None, {"t": table, "c": column, "target": target, "tc": target_column})
    return int(rows[0][0])


@action("django.plan-history-repair")
def plan_repair(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Say what fix-history will record, apply and re-record; change nothing."""
    if isinstance(ctx.inspection, django.Inspection):
        # The fit check's inspection already holds fake checks of every unapplied migration.
        found = checked = ctx.inspection
    else:
        found = django.inspect(ctx, schema=False)
        missing = django.missing_ancestors({n.key: n for n in found.migrations})
        checked = django.inspect(ctx, fake=missing, schema=False) if missing else None
    repair = plan_history_repair(found, checked)
    refusals = [f"{key} is only partly in the schema ({repair.reasons[key]}): neither recording nor applying it "
                "is safe; put back what is missing by hand or restore a backup, then run fix-history again"
                for key in repair.partial]
    if repair.needed and checked is not None:
        # fix-history ends as the guide does, with every migration applied; refuse now what that would refuse.
        tail = plan_fake_initial(found, checked, None)
        refusals += [f"after the repair: {r}" for r in tail.refusals if not r.startswith(tuple(repair.partial))]
    if repair.blockers:
        # Before anything changes: a dependant that must run again may re-point a foreign key at a table
        # that has no row for the values already stored; migrate would fail half-way through the repair.
        rerun = django.inspect(ctx, fake=repair.blockers, schema=False).fake_checks
        for key, table, column, target, target_column in repointed_keys(rerun):
            count = orphaned_rows(ctx, table, column, target, target_column)
            if count:
                refusals.append(f"{key} must run again to point {table}.{column} at {target}.{target_column}, but "
                                f"{count} rows of {table} hold {column} values with no row in {target}; create "
                                f"those {target} rows (or move the data) first, then run fix-history again")
    lines = _describe(repair)
    if refusals:
        return refuse(lines, refusals, {**repair.as_data(), "needed": False})
    return ActionResult(0, "\n".join(lines) + "\n", data=repair.as_data())


@action("django.apply-missing")
def apply_missing(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Apply missing dependencies for real: un-record their applied dependants, migrate, re-record or apply."""
    names = django.parse_names(args.get("migrations") or [], "migrations") if args.get("migrations") else []
    if not names:
        return ActionResult(0, "nothing to apply\n", data={"applied": [], "rerecorded": []})
    found = django.inspect(ctx, schema=False)
    nodes = {n.key: n for n in found.migrations}
    blockers = applied_dependants(nodes, names)
    lines = [f"un-recorded {key}" for key in django.delete_rows(ctx, blockers)]
    for key in names:
        code, output = django.migrate(ctx, key)
        lines += [f"$ manage.py migrate {key.replace('.', ' ')}", output.rstrip()]
        if code != 0:
            return ActionResult(1, "\n".join(lines) + "\n", problems=[f"migrate {key} failed (exit {code})"],
                                data={"applied": [], "unrecorded": blockers})
    rerecorded: list[str] = []
    if blockers:
        verdicts = django.inspect(ctx, fake=blockers, schema=False).fake_checks
        django.settle(verdicts)
        for fc in verdicts:
            key = fc.migration or fc.requested
            if django.effective_status(fc) in ("proven", "nothing to check in the schema"):
                rerecorded += django.record_rows(ctx, [key])
                lines.append(f"recorded {key} again: the schema proves it ran")
                continue
            code, output = django.migrate(ctx, key)
            lines += [f"{key} did not really run ({django.effective_status(fc)}): applying it",
                      f"$ manage.py migrate {key.replace('.', ' ')}", output.rstrip()]
            if code != 0:
                return ActionResult(1, "\n".join(lines) + "\n", problems=[f"migrate {key} failed (exit {code})"],
                                    data={"applied": names, "unrecorded": blockers})
    return ActionResult(0, "\n".join(lines) + "\n", data={"applied": names, "rerecorded": rerecorded})
