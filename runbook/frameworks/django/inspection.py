"""Django knowledge: ask the backend (runbook/frameworks/inside/django_*.py) and read its answer.

The script runs once per question set with the backend's own python and prints one JSON document: the
migration graph, the history rows, the models' expected schema, the live schema, the problems it found,
and on request a fake check and a makemigrations check. This module turns that into small dataclasses and
decides, purely, whether a fake is proven.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.errors import InputError, StepFailed
from runbook.frameworks.backend import manage, run_script, script_source, split_manage
from runbook.frameworks.ordering import dependency_order

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext

SCRIPT = "django_inspect.py"
# The part of the inspection that changes the schema: sent only with a request to change it.
CHANGE_SCHEMA = "django_restore_schema.py"
FORMAT = 1
HISTORY_KINDS = ("inconsistent-history",)
SCHEMA_KINDS = ("table-missing", "column-missing", "column-type", "column-null", "unique-missing", "index-missing",
                "check-missing", "foreign-key-missing", "foreign-key-differs")
PROVEN = ("proven", "nothing to check in the schema")
# Asks the inspection for every unapplied migration, judged by inferring from the schema how far each app got.
UNAPPLIED = "@unapplied"
MIGRATION_RE = re.compile(r"^[A-Za-z_][\w]*\.[\w]+$")


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def apps(self) -> set[str]:
        """The app labels the problem is about (for `apps:` filters)."""
        found = {str(self.details[k]).split(".")[0] for k in ("migration", "dependency", "model")
                 if self.details.get(k)}
        if self.details.get("app"):
            found.add(str(self.details["app"]))
        return found


@dataclass
class MigrationNode:
    app: str
    name: str
    dependencies: list[str]
    replaces: list[str]
    initial: bool
    applied: bool
    operations: list[str]

    @property
    def key(self) -> str:
        return f"{self.app}.{self.name}"


@dataclass
class Check:
    """One fact a fake depends on: ok True (holds), False (does not), None (cannot be proven)."""

    subject: str
    ok: bool | None
    message: str
    problem: str | None = None
    superseded_by: str | None = None


@dataclass
class OperationCheck:
    type: str
    describe: str
    status: str
    note: str | None
    checks: list[Check]


@dataclass
class FakeCheck:
    requested: str
    migration: str | None
    status: str
    error: str | None = None
    applied: bool = False
    initial: bool = False
    replaces: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    unapplied_dependencies: list[str] = field(default_factory=list)
    operations: list[OperationCheck] = field(default_factory=list)
    # schema: changes tables; data: only runs RunPython/RunSQL; state: changes neither.
    effect: str = "schema"
    # How the live tables of its app differ from Django's migration state with it (empty when they match).
    state_problems: list[str] = field(default_factory=list)

    @property
    def absent(self) -> bool:
        """Nothing it creates exists yet: applying it for real cannot collide with the schema."""
        open_checks = [c for c in self.checks if not c.superseded_by]
        return bool(open_checks) and all(c.ok is False and c.problem == "missing" for c in open_checks)

    @property
    def unproven_data(self) -> bool:
        """A data migration the schema cannot witness: it counts as run only when something proven needs it."""
        return self.effect == "data" and effective_status(self) == "cannot prove"

    @property
    def checks(self) -> list[Check]:
        return [c for op in self.operations for c in op.checks]


@dataclass
class MakemigrationsCheck:
    clean: bool
    changes: dict[str, list[dict[str, Any]]]
    conflicts: dict[str, list[str]]


@dataclass
class Inspection:
    raw: dict[str, Any]
    django: str
    settings: str
    migrations: list[MigrationNode]
    applied: list[tuple[str, str]]
    history_table: bool
    leaves: dict[str, list[str]]
    conflicts: dict[str, list[str]]
    problems: list[Problem]
    fake_checks: list[FakeCheck] = field(default_factory=list)
    makemigrations: MakemigrationsCheck | None = None

    def problems_of(self, kinds: tuple[str, ...] | list[str], apps: list[str] | None = None) -> list[Problem]:
        """Return the problems of the given kinds, about the given apps when apps is given."""
        wanted = set(apps or ())
        return [p for p in self.problems
                if p.kind in kinds and (not wanted or p.apps & wanted)]


def _key(pair: Any) -> str:
    return pair if isinstance(pair, str) else f"{pair[0]}.{pair[1]}"


def parse_inspection(data: Any) -> Inspection:
    """Build an Inspection from the script's JSON; raise StepFailed when it is not what runbook expects."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise StepFailed(f"the Django inspection answered in format {got!r}, runbook expects {FORMAT}")
    try:
        return Inspection(
            raw=data,
            django=str(data.get("django", "?")),
            settings=str(data.get("settings", "?")),
            migrations=[MigrationNode(m["app"], m["name"], [_key(d) for d in m["dependencies"]],
                                      [_key(r) for r in m["replaces"]], bool(m["initial"]), bool(m["applied"]),
                                      list(m["operations"])) for m in data["migrations"]],
            applied=[(row[0], row[1]) for row in data["applied"]],
            history_table=bool(data["history_table"]),
            leaves=dict(data["leaves"]),
            conflicts=dict(data["conflicts"]),
            problems=[Problem(p["kind"], p["message"], p) for p in data["problems"]],
            fake_checks=[_fake_check(f) for f in data.get("fake_check", [])],
            makemigrations=MakemigrationsCheck(**data["makemigrations"]) if data.get("makemigrations") else None,
        )
    except (KeyError, TypeError, IndexError) as exc:
        raise StepFailed(f"the Django inspection's answer is incomplete: missing {exc}") from exc


def _fake_check(data: dict[str, Any]) -> FakeCheck:
    operations = [
        OperationCheck(op["type"], op["describe"], op["status"], op.get("note"),
                       [Check(c["subject"], c["ok"], c["message"], c.get("problem")) for c in op["checks"]])
        for op in data.get("operations", [])
    ]
    return FakeCheck(
        requested=data["requested"], migration=data.get("migration"), status=data["status"],
        error=data.get("error"), applied=bool(data.get("applied")), initial=bool(data.get("initial")),
        replaces=list(data.get("replaces", [])), dependencies=list(data.get("dependencies", [])),
        unapplied_dependencies=list(data.get("unapplied_dependencies", [])), operations=operations,
        effect=str(data.get("effect", "schema")), state_problems=list(data.get("state_problems", [])),
    )


def parse_names(value: Any, what: str = "migrations") -> list[str]:
    """Read `with: migrations:` as a list of APP.NAME (a list, or one comma-separated string)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise InputError(f"`{what}` must be a non-empty list of APP.MIGRATION names")
    names = [str(item).strip() for item in items if str(item).strip()]
    bad = [n for n in names if not MIGRATION_RE.match(n)]
    if bad or not names:
        raise InputError(f"`{what}`: {', '.join(map(repr, bad)) or 'nothing given'} is not APP.MIGRATION "
                         "(for example customer.0001_initial)")
    return list(dict.fromkeys(names))


def split_names(names: list[str]) -> tuple[list[str], list[str]]:
    """Return the app labels and the migration names of APP.NAME strings, as two parallel lists."""
    pairs = [n.split(".", 1) for n in names]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def inspect(ctx: RunContext, *, fake: list[str] | None = None, makemigrations: bool = False,
            schema: bool = True, add_missing_columns: list[str] | None = None,
            restore_schema: list[str] | None = None) -> Inspection:
    """Run the inspection script once in the backend and parse its answer."""
    interpreter, manage_py = split_manage(list(ctx.config.backend.manage))
    args = ["--manage", manage_py]
    if restore_schema:
        args += ["--restore-schema", ",".join(restore_schema)]
    if add_missing_columns:
        args += ["--add-missing-columns", ",".join(add_missing_columns)]
    if fake:
        args += ["--fake-check", ",".join(fake)]
    if makemigrations:
        args.append("--makemigrations-check")
    if not schema:
        args.append("--no-schema")
    source = script_source(SCRIPT, CHANGE_SCHEMA) if restore_schema or add_missing_columns else None
    data = run_script(ctx, SCRIPT, args, interpreter=interpreter, what="the Django inspection", source=source)
    return parse_inspection(data)


def settle(fake_checks: list[FakeCheck]) -> None:
    """Let a later operation's holding check supersede an earlier failed one on the same subject.

    Faking 0001 and 0002 together: 0001 says the column is `integer`, 0002 alters it to `bigint` and the
    live column is `bigint`; the earlier claim is replaced by the later one, as running both would do.
    Checks come in dependency order (the script sorts them).
    """
    sequence = [(fc.migration or fc.requested, c) for fc in fake_checks if not fc.applied for c in fc.checks]
    for index, (_, check) in enumerate(sequence):
        if check.ok is True:
            continue
        for later_name, later in sequence[index + 1:]:
            if later.subject == check.subject and later.ok is True:
                check.superseded_by = later_name
                break


def effective_status(fc: FakeCheck) -> str:
    """Return the fake check's status once superseded checks count as holding."""
    open_checks = [c for c in fc.checks if not c.superseded_by]
    if any(c.ok is False and c.problem == "missing" for c in open_checks):
        return "missing"
    if any(c.ok is False for c in open_checks):
        return "differs"
    if any(c.ok is None for c in open_checks):
        return "cannot prove"
    return "proven" if fc.checks else "nothing to check in the schema"


@dataclass
class FakeVerdict:
    proven: bool
    lines: list[str]
    to_record: list[str]
    already: list[str]
    refusals: list[str] = field(default_factory=list)


def fake_verdict(fake_checks: list[FakeCheck], *, allow_unproven: bool = False,
                 accept: list[str] | None = None) -> FakeVerdict:
    """Decide whether every requested migration may be recorded without running it; say why not.

    `accept` names data migrations to record though the schema cannot witness them (the user says they ran).
    """
    accepted = set(accept or ())
    settle(fake_checks)
    lines: list[str] = []
    refusals: list[str] = []
    batch = {fc.migration for fc in fake_checks if fc.migration}
    to_record: list[str] = []
    already: list[str] = []
    for fc in fake_checks:
        if fc.error or not fc.migration:
            refusals.append(f"{fc.requested}: {fc.error or 'unknown migration'}")
            continue
        if fc.applied:
            already.append(fc.migration)
            if fc.replaces:
                # A squash counts as applied when its originals are; its own row is what `migrate` would add.
                to_record.append(fc.migration)
                lines.append(f"{fc.migration}: its replaced migrations are recorded; recording its own row")
            else:
                lines.append(f"{fc.migration}: already recorded, left as it is")
            continue
        lines.append(f"{fc.migration}: {effective_status(fc)}")
        for op in fc.operations:
            if op.note and not op.checks:
                lines.append(f"  ok   {op.describe} ({op.note})")
            for check in op.checks:
                if check.superseded_by:
                    lines.append(f"  ok   {check.message} (superseded by {check.superseded_by})")
                elif check.ok:
                    lines.append(f"  ok   {check.message}")
                elif check.ok is None:
                    allowed = allow_unproven or fc.migration in accepted
                    lines.append(f"  {'note' if allowed else 'NO':<4} {check.message}"
                                 + (" (accepted as run)" if fc.migration in accepted else ""))
                    if not allowed:
                        refusals.append(f"{fc.migration}: cannot prove: {check.message}")
                else:
                    lines.append(f"  NO   {check.message}")
                    refusals.append(f"{fc.migration}: {check.message}")
        for dep in fc.unapplied_dependencies:
            if dep not in batch:
                refusals.append(f"{fc.migration}: its dependency {dep} is not applied (fake or apply it first, "
                                "or list it too)")
        for name in [*fc.replaces, fc.migration]:
            if name not in to_record:
                to_record.append(name)
    if refusals:
        lines.append("refused, nothing was recorded:")
        lines += [f"  - {r}" for r in refusals]
        return FakeVerdict(False, lines, [], already, [f"refused: {r}" for r in refusals])
    return FakeVerdict(True, lines, to_record, already)


def record_rows(ctx: RunContext, names: list[str]) -> list[str]:
    """Insert django_migrations rows for APP.NAME migrations not recorded yet; return those inserted."""
    if not names:
        return []
    # Direct rows, not `migrate --fake`: Django refuses that while the history is inconsistent.
    apps, migrations = split_names(names)
    _, rows, _ = ctx.database.query(
        "INSERT INTO django_migrations (app, name, applied) "
        "SELECT r.app, r.name, now() FROM unnest(%(apps)s::text[], %(names)s::text[]) AS r(app, name) "
        "WHERE NOT EXISTS (SELECT 1 FROM django_migrations m WHERE m.app = r.app AND m.name = r.name) "
        "RETURNING app, name", {"apps": apps, "names": migrations})
    return [f"{a}.{n}" for a, n in rows]


def delete_rows(ctx: RunContext, names: list[str]) -> list[str]:
    """Delete the django_migrations rows of APP.NAME migrations; return those deleted (tables stay)."""
    if not names:
        return []
    apps, migrations = split_names(names)
    _, rows, _ = ctx.database.query(
        "DELETE FROM django_migrations m USING unnest(%(apps)s::text[], %(names)s::text[]) AS r(app, name) "
        "WHERE m.app = r.app AND m.name = r.name RETURNING m.app, m.name", {"apps": apps, "names": migrations})
    return sorted({f"{a}.{n}" for a, n in rows})


def missing_ancestors(nodes: dict[str, MigrationNode]) -> list[str]:
    """Return unapplied migrations that some applied migration depends on, directly or not."""
    missing: set[str] = set()
    stack = [dep for node in nodes.values() if node.applied for dep in node.dependencies]
    while stack:
        key = stack.pop()
        node = nodes.get(key)
        if node is None or node.applied or key in missing:
            continue
        missing.add(key)
        stack.extend(node.dependencies)
    return [k for k in graph_order(nodes) if k in missing]


def descendants(nodes: dict[str, MigrationNode], keys: list[str]) -> set[str]:
    """Return the migrations that depend on any of keys, directly or not."""
    children: dict[str, list[str]] = {}
    for node in nodes.values():
        for dep in node.dependencies:
            children.setdefault(dep, []).append(node.key)
    found: set[str] = set()
    stack = list(keys)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def graph_order(nodes: dict[str, MigrationNode]) -> list[str]:
    """Return migration keys with every dependency before its dependants (ties by name, as the inspection script)."""
    return dependency_order({key: [d for d in node.dependencies if d in nodes] for key, node in nodes.items()})


def migrate(ctx: RunContext, key: str) -> tuple[int, str]:
    """Run `manage.py migrate APP NAME` in the backend; return its exit code and output."""
    return manage(ctx, ["migrate", *key.split(".", 1), "--noinput"])
