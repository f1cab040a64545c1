"""fake-initial, guarded: record what the schema proves ran, apply only what is wholly absent, refuse the rest.

`migrate --fake-initial` decides blind: it fakes an initial migration when its tables and columns exist
and runs everything else for real. With every history row gone (a restored dump) that runs
`contenttypes.0002_remove_content_type_name` against a table that already lost the column, and it fails
part way. Here each unapplied migration is checked against the live schema first, in dependency order:
recorded when the schema proves it ran (initial or not), applied for real only when nothing it would
create is there yet, and anything in between (a table without one of its columns) refuses the whole run
before a row changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.errors import InputError
from runbook.frameworks.actions import ActionResult, action
from runbook.frameworks.django import inspection as django

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext

CODE_OPERATIONS = ("RunPython", "RunSQL")


@dataclass
class InitialPlan:
    """What fake-initial will record and apply, decided before anything changes."""

    record: list[str] = field(default_factory=list)
    apply: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    # True when a recorded migration runs code the schema cannot prove (the fake must allow it).
    unproven_code: bool = False

    @property
    def needed(self) -> bool:
        return bool(self.record or self.apply)

    def as_data(self) -> dict[str, Any]:
        return {"needed": self.needed and not self.refusals, "record": self.record, "apply": self.apply,
                "refusals": self.refusals, "reasons": self.reasons, "unproven_code": self.unproven_code}


def wanted(nodes: dict[str, django.MigrationNode], apps: list[str] | None) -> list[str]:
    """Unapplied migrations of the apps (all when None) and their unapplied ancestors, dependencies first."""
    chosen = {k for k, n in nodes.items() if not n.applied and (not apps or n.app in apps)}
    stack = list(chosen)
    while stack:
        for dep in nodes[stack.pop()].dependencies:
            if dep in nodes and not nodes[dep].applied and dep not in chosen:
                chosen.add(dep)
                stack.append(dep)
    return [k for k in django.graph_order(nodes) if k in chosen]


def _open(fc: django.FakeCheck) -> list[django.Check]:
    return [c for c in fc.checks if not c.superseded_by]


def _only_code_unproven(fc: django.FakeCheck) -> bool:
    """True when every check that cannot be proven comes from RunPython or RunSQL."""
    return all(c.ok is not None for op in fc.operations if op.type not in CODE_OPERATIONS
               for c in op.checks if not c.superseded_by)


def plan_fake_initial(found: django.Inspection, checked: django.Inspection | None, apps: list[str] | None,
                      accept: list[str] | None = None) -> InitialPlan:
    """Decide, from one inspection and the proofs of the unapplied migrations, what to record and apply.

    `accept` names data migrations (RunPython/RunSQL only) that nothing proven depends on, which the user says
    ran: the schema cannot witness them, and running one again on a guess could duplicate data.
    """
    accepted = set(accept or ())
    nodes = {n.key: n for n in found.migrations}
    keys = wanted(nodes, apps)
    checks = {fc.migration: fc for fc in (checked.fake_checks if checked else []) if fc.migration}
    django.settle(list(checks.values()))
    plan = InitialPlan()
    for key in keys:
        fc = checks.get(key)
        if fc is None:
            plan.refusals.append(f"{key}: the schema check did not answer for it")
            continue
        status = django.effective_status(fc)
        after_apply = [d for d in nodes[key].dependencies if d in plan.apply]
        failing = [c.message for c in _open(fc) if c.ok is False]
        if after_apply:
            # Its dependency runs for real, so its own changes cannot be there yet: they must be absent too.
            if fc.absent or status == "nothing to check in the schema":
                plan.apply.append(key)
                plan.reasons[key] = f"apply after {', '.join(after_apply)}: nothing it creates exists yet"
            elif status == "cannot prove" and _only_code_unproven(fc) and not [c for c in _open(fc) if c.ok]:
                plan.apply.append(key)
                plan.reasons[key] = f"apply after {', '.join(after_apply)}: it runs code on what they create"
            else:
                plan.refusals.append(f"{key}: its dependency {after_apply[0]} must be applied for real, but "
                                     f"{key}'s own changes are already there or partly there")
        elif status in ("proven", "nothing to check in the schema"):
            plan.record.append(key)
            plan.reasons[key] = ("record: " + ("it only runs code, and a migration that depends on it is proven"
                                               if fc.effect == "data" else "its tables, columns and keys exist"
                                               if status == "proven" else "it changes nothing the schema holds")
                                 + ("" if fc.initial else " (not initial: running it again would fail)"))
        elif status == "cannot prove" and _only_code_unproven(fc) and key in accepted:
            plan.record.append(key)
            plan.unproven_code = True
            plan.reasons[key] = "record: a data migration you accepted as run (data_migrations)"
        elif fc.absent:
            plan.apply.append(key)
            plan.reasons[key] = "apply for real: nothing it creates exists yet"
        elif status == "cannot prove":
            unproven = [c.message for c in _open(fc) if c.ok is None]
            plan.refusals.append(f"{key}: cannot prove it ran: {unproven[0] if unproven else status}"
                                 + (f"; if it ran, pass --var data_migrations={key}; if it never ran, run "
                                    f"`manage.py migrate {fc.migration.split('.')[0]}` once this repair is done"
                                    if _only_code_unproven(fc) else ""))
        else:
            plan.refusals.append(f"{key}: partly in the schema, neither recorded nor applied: "
                                 + "; ".join(failing[:3]))
    return plan


def _describe(plan: InitialPlan) -> list[str]:
    if not plan.needed and not plan.refusals:
        return ["nothing to do: every migration is recorded as applied"]
    lines = [f"{key}: {plan.reasons[key]}" for key in [*plan.record, *plan.apply]]
    if plan.refusals:
        lines.append("refused, nothing was changed:")
        lines += [f"  - {r}" for r in plan.refusals]
    return lines


@action("django.plan-fake-initial")
def plan_action(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Say which unapplied migrations fake-initial records and which it applies; refuse a partial schema."""
    apps = [a.strip() for a in str(args.get("app") or "").split(",") if a.strip()] or None
    accept = django.parse_names(args["data_migrations"], "data_migrations") if args.get("data_migrations") else []
    # One inference over every unapplied migration: with rows lost, each app's schema decides how far it got.
    found = django.inspect(ctx, fake=[django.UNAPPLIED], schema=False)
    if not found.history_table:
        why = "refused: table django_migrations does not exist: this is an empty database, run `manage.py migrate`"
        return ActionResult(1, "", why + "\n", problems=[why], data=InitialPlan().as_data())
    if apps:
        unknown = sorted(set(apps) - {n.app for n in found.migrations})
        if unknown:
            raise InputError(f"no migrations for app {', '.join(unknown)}",
                             hint="pass an app label that has migrations, or no app for all")
    plan = plan_fake_initial(found, found, apps, accept)
    text = "\n".join(_describe(plan)) + "\n"
    if plan.refusals:
        return ActionResult(1, text, data=plan.as_data(), problems=[f"refused: {r}" for r in plan.refusals])
    return ActionResult(0, text, data=plan.as_data())


@action("django.apply-absent")
def apply_absent(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Apply migrations for real, one by one in order, each only after proving nothing it creates exists."""
    names = django.parse_names(args["migrations"]) if args.get("migrations") else []
    if not names:
        return ActionResult(0, "nothing to apply\n", data={"applied": []})
    checked = django.inspect(ctx, fake=names, schema=False).fake_checks
    present = [f"{fc.migration or fc.requested}: {c.message}" for fc in checked for c in fc.checks if c.ok]
    if present:
        return ActionResult(1, "", "\n".join(present) + "\n", data={"applied": []},
                            problems=[f"refused: part of it already exists: {p}" for p in present[:5]])
    lines: list[str] = []
    applied: list[str] = []
    for key in names:
        code, output = django.migrate(ctx, key)
        lines += [f"$ manage.py migrate {key.replace('.', ' ')}", output.rstrip()]
        if code != 0:
            return ActionResult(1, "\n".join(lines) + "\n", data={"applied": applied},
                                problems=[f"migrate {key} failed (exit {code})"])
        applied.append(key)
    return ActionResult(0, "\n".join(lines) + "\n", data={"applied": applied})
