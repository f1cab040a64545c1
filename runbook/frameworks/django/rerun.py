"""Actions for the findings no guide covers: rows with no file, recorded migrations that never ran, and
migrations that are only partly in the schema. Each proves the state from one inspection before it acts
and refuses (exit 2, nothing changed) when the state is not the one it repairs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runbook.errors import InputError
from runbook.frameworks.actions import ActionResult, action, allow_keys, refuse
from runbook.frameworks.django import inspection as django

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext


def _names(args: dict[str, Any]) -> list[str]:
    allow_keys(args, "migrations")
    if not args.get("migrations"):
        raise InputError("the action needs `with: migrations` (APP.NAME, comma-separated)")
    return django.parse_names(args["migrations"])


def orphan_refusals(found: django.Inspection, names: list[str]) -> list[str]:
    """Return why a row may not be forgotten: only rows no migration file defines may go."""
    orphans = {str(p.details.get("migration")) for p in found.problems_of(("no-file",))}
    recorded = {f"{a}.{n}" for a, n in found.applied}
    refusals = []
    for name in names:
        if name not in recorded:
            refusals.append(f"{name} has no row in django_migrations")
        elif name not in orphans:
            refusals.append(f"{name} has a migration file (or is replaced by a squash): its row is not stale")
    return refusals


@action("django.forget-orphans")
def forget_orphans(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Delete django_migrations rows that no migration file defines; refuse any other row."""
    names = _names(args)
    found = django.inspect(ctx, schema=False)
    refusals = orphan_refusals(found, names)
    if refusals:
        return refuse([], refusals, {"deleted": []})
    deleted = django.delete_rows(ctx, names)
    return ActionResult(0, "".join(f"deleted the row of {n}: no file defines it\n" for n in deleted),
                        data={"deleted": deleted})


def rerun_refusals(checks: list[django.FakeCheck], names: list[str]) -> list[str]:
    """Return why recorded migrations may not be run again: each must be recorded and absent from the schema."""
    by_name = {fc.migration: fc for fc in checks if fc.migration}
    refusals = []
    for name in names:
        fc = by_name.get(name)
        if fc is None:
            refusals.append(f"{name}: no such migration file")
        elif not fc.applied:
            refusals.append(f"{name} is not recorded as applied: apply it with `manage.py migrate`")
        elif not any(c.ok is False and c.problem == "missing" for c in fc.checks):
            refusals.append(f"{name}: nothing it creates is missing from the schema; it ran")
        elif any(c.ok is True for c in fc.checks):
            present = "; ".join(c.message for c in fc.checks if c.ok is True)[:300]
            refusals.append(f"{name} is only partly missing ({present}): running it again would fail "
                            "with \"already exists\"")
    return refusals


@action("django.plan-rerun")
def plan_rerun(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Prove that recorded migrations never ran (what they create is all missing); change nothing."""
    names = _names(args)
    found = django.inspect(ctx, fake=names, schema=False)
    lines = [f"{fc.migration}: recorded, {django.effective_status(fc)}" for fc in found.fake_checks if fc.migration]
    refusals = rerun_refusals(found.fake_checks, names)
    if refusals:
        return refuse(lines, refusals, {"migrations": [], "needed": False})
    lines.append("plan: delete their rows, then apply them for real (applied migrations that depend on them are "
                 "un-recorded for that moment and recorded again when the schema proves they ran)")
    return ActionResult(0, "\n".join(lines) + "\n", data={"migrations": names, "needed": True})


@action("django.add-missing-columns")
def add_missing(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Add the columns unapplied migrations create that are missing from tables that already exist."""
    names = _names(args)
    found = django.inspect(ctx, fake=names, schema=False)
    # A later migration of the batch may change what an earlier one made (0002 re-points 0001's key).
    django.settle(found.fake_checks)
    open_checks = [(fc, c) for fc in found.fake_checks if not fc.applied for c in fc.checks
                   if c.ok is False and not c.superseded_by]
    refusals = [f"{fc.migration}: {c.message}" for fc, c in open_checks if c.problem != "missing"]
    refusals += [f"{fc.migration} is already applied" for fc in found.fake_checks if fc.applied]
    refusals += [f"{fc.migration}: {c.message} (apply the migration instead)" for fc, c in open_checks
                 if c.subject.startswith("table ")]
    if refusals:
        return refuse([], refusals, {"added": []})
    added = django.inspect(ctx, add_missing_columns=names, schema=False).raw.get("added_columns", [])
    text = "".join(f"added column {c} as the migration defines it\n" for c in added) or "no column was missing\n"
    return ActionResult(0, text, data={"added": added})


@action("django.restore-schema")
def restore_schema(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Put back the tables, columns and keys the recorded migrations made that the database lost."""
    allow_keys(args, "apps")
    apps = [a.strip() for a in (args.get("apps") if isinstance(args.get("apps"), list)
                                else str(args.get("apps") or "").split(",")) if str(a).strip()]
    if not apps:
        raise InputError("the action needs `with: apps` (app labels, comma-separated)")
    found = django.inspect(ctx, restore_schema=apps, schema=False)
    refused = list(found.raw.get("restore_refused", []))
    if refused:
        return refuse([], refused, {"restored": []})
    restored = list(found.raw.get("restored", []))
    text = "".join(f"restored {r} as Django's migration state after the recorded migrations defines it\n"
                   for r in restored) or "nothing was missing\n"
    return ActionResult(0, text, data={"restored": restored})
