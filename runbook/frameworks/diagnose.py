"""`runbook diagnose`: look at the stack, say what is wrong, and the exact `runbook run ...` that fixes it.

One exec in the backend (one Django or Alembic start, the framework detected by the same script) plus
the database connection; nothing changes. The findings are plain data, most serious first; the CLI
prints them. `runbook run` uses the same findings to say when a playbook does not fit the state.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.frameworks.alembic import inspection as alembic
from runbook.frameworks.backend import run_script, script_source, split_manage
from runbook.frameworks.django import inspection as django

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext

PROVEN = django.PROVEN


@dataclass
class Finding:
    severity: int  # 1 most serious
    kind: str
    title: str
    evidence: list[str] = field(default_factory=list)
    command: str | None = None
    advice: str = ""
    playbook: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def command(playbook: str, **variables: str) -> str:
    """Return the exact command line, variables filled in and quoted for a POSIX shell."""
    parts = ["runbook", "run", playbook]
    for key, value in variables.items():
        parts += ["--var", shlex.quote(f"{key}={value}")]
    return " ".join([*parts, "--yes"])


def _fix(severity: int, kind: str, title: str, evidence: list[str], playbook: str, advice: str = "",
         **variables: str) -> Finding:
    return Finding(severity, kind, title, evidence, command(playbook, **variables), advice, playbook)


# ---- Django ----

def _creator(found: django.Inspection, problem: django.Problem) -> django.MigrationNode | None:
    """Return the migration whose operations create the missing table or column of a schema problem."""
    model = str(problem.details.get("model", ""))
    app, _, name = model.partition(".")
    fieldname = str(problem.details.get("field") or "")
    create = f"CreateModel: Create model {name}".lower()
    add = f"AddField: Add field {fieldname} to {name}".lower()
    found_node = None
    for node in (n for n in found.migrations if n.app == app):  # the last one wins: an AddField after a RemoveField
        ops = [o.lower() for o in node.operations]
        if create in ops or (fieldname and problem.kind == "column-missing" and add in ops):
            found_node = node
    return found_node


def _unproven(fc: django.FakeCheck) -> list[str]:
    """Return what is missing, differs or cannot be proven for one migration."""
    lines = []
    for check in fc.checks:
        if check.superseded_by or check.ok is True:
            continue
        lines.append(("cannot prove: " if check.ok is None else "") + check.message)
    return lines


def _fakeable(proven: list[str], checks: dict[str, django.FakeCheck]) -> list[str]:
    """Keep only proven migrations whose unapplied dependencies are in the list too (django.fake's guard)."""
    keep = list(proven)
    while True:
        kept = set(keep)
        smaller = [k for k in keep if all(d in kept for d in checks[k].unapplied_dependencies)]
        if smaller == keep:
            return keep
        keep = smaller


def _partial(fc: django.FakeCheck) -> bool:
    """Tell whether an unapplied migration is partly in the schema: neither fakeable nor appliable."""
    status = django.effective_status(fc)
    if status in PROVEN or fc.unproven_data:
        return False
    if status == "differs":
        return True
    # Missing, yet something it creates is there: `migrate` fails with "already exists".
    return any(c.ok is True or c.superseded_by for c in fc.checks)


def _schema_lost(found: django.Inspection) -> dict[str, list[str]]:
    """Return {app: problems} of columns that recorded migrations made and the database lost since."""
    lost: dict[str, list[str]] = {}
    for problem in found.problems_of(("column-missing",)):
        creator = _creator(found, problem)
        if creator is not None and creator.applied:
            lost.setdefault(creator.app, []).append(problem.message)
    return lost


def django_findings(found: django.Inspection) -> list[Finding]:
    """Turn one Django inspection (with the proofs of every unapplied migration) into findings."""
    findings: list[Finding] = []
    history = found.problems_of(django.HISTORY_KINDS)
    if history:
        findings.append(_fix(1, "inconsistent-history", "applied migration with an unapplied dependency",
                             [p.message for p in history], "fix-history"))
    nodes = {n.key: n for n in found.migrations}
    for app, leaves in sorted(found.conflicts.items()):
        applied = [f"{app}.{leaf}" for leaf in leaves if nodes.get(f"{app}.{leaf}") and nodes[f"{app}.{leaf}"].applied]
        evidence = [f"{app} has {len(leaves)} leaf migrations: {', '.join(sorted(leaves))}",
                    f"the database has {', '.join(applied) or 'none of them'}"]
        findings.append(_fix(2, "conflict", f"two leaf migrations in {app}", evidence, "fake-conflict", app=app))
    checks = {fc.migration: fc for fc in found.fake_checks if fc.migration and not fc.applied}
    django.settle(list(checks.values()))
    proven = [k for k, fc in checks.items() if django.effective_status(fc) in PROVEN]
    data = [k for k, fc in checks.items() if fc.unproven_data]
    partial = {k: fc for k, fc in checks.items() if _partial(fc)}
    # Keys another finding already covers (fix-history's missing dependencies, the conflict's app, the
    # migration standing in for an orphan).
    covered = {k for k in checks if k.split(".")[0] in found.conflicts}
    if history:
        covered.update(django.missing_ancestors(nodes))
    orphans = found.problems_of(("no-file",))
    by_app: dict[str, list[django.Problem]] = {}
    for p in orphans:
        by_app.setdefault(str(p.details.get("migration", "")).split(".")[0], []).append(p)
    for app, problems in sorted(by_app.items()):
        evidence = [p.message for p in problems]
        standing_in = [k for k in [*proven, *partial] if k.split(".")[0] == app]
        if app in found.conflicts:
            continue
        if standing_in:
            covered.update(standing_in)
            findings.append(_fix(2, "replaced-file", f"applied rows of {app} with no migration file; "
                                 f"{', '.join(standing_in)} creates the same tables", evidence
                                 + [f"{k}: {django.effective_status(checks[k])}" for k in standing_in]
                                 + [line for k in standing_in for line in _unproven(checks[k])][:8],
                                 "fake-conflict", app=app,
                                 **({"add_missing_columns": "true"} if any(k in partial for k in standing_in)
                                    else {})))
        else:
            keys = [str(p.details.get("migration")) for p in problems]
            findings.append(_fix(3, "no-file", f"applied rows of {app} with no migration file (renamed, deleted or "
                                 "squashed away)", evidence, "forget-migrations",
                                 "or restore the files from version control", migrations=",".join(keys)))
    squashes = found.problems_of(("squash-unrecorded",))
    if squashes:
        findings.append(_fix(3, "squash-unrecorded", "squashed migrations whose originals are recorded but whose "
                             "own row is not", [p.message for p in squashes], "fake-migrations",
                             migrations=",".join(str(p.details["migration"]) for p in squashes)))
    never_ran: dict[str, list[str]] = {}
    for problem in found.problems_of(("table-missing",)):
        creator = _creator(found, problem)
        if creator is not None and creator.applied:
            never_ran.setdefault(creator.key, []).append(problem.message)
    for key, lines in never_ran.items():
        findings.append(_fix(2, "recorded-not-run", f"{key} is recorded as applied but what it creates is missing",
                             lines, "rerun-migrations", migrations=key))
    lost = {app: lines for app, lines in _schema_lost(found).items()
            if not any(k.split(".")[0] == app for k in never_ran)}
    if lost:
        findings.append(_fix(2, "schema-lost", "columns or keys that recorded migrations made are missing",
                             [line for lines in lost.values() for line in lines][:12], "restore-schema",
                             "the data a dropped column held is not brought back: its rows get the field's "
                             "default (restore a snapshot for the data)", apps=",".join(sorted(lost))))
    fakeable = [k for k in _fakeable(proven, checks) if k not in covered]
    data = [k for k in data if k not in covered]
    pending = [k for k in checks if k not in proven and k not in partial and k not in covered
               and k not in fakeable and k not in data]
    # fake-initial would refuse a proven migration whose unapplied dependency is not proven.
    one_line = not history and not partial and not found.conflicts and len(fakeable) == len(
        [k for k in proven if k not in covered])
    if (fakeable or data) and one_line:
        # fake-initial infers the same from the schema: records what it proves, applies what is wholly absent.
        evidence = ([f"{k}: {django.effective_status(checks[k])}" for k in fakeable][:20]
                    + ([f"... and {len(fakeable) - 20} more"] if len(fakeable) > 20 else [])
                    + [f"{k}: {_unproven(checks[k])[0]}; the line records it as run" for k in data]
                    + [f"{k}: not in the schema yet; the line applies it" for k in pending])
        advice = ("a data migration leaves no trace in the schema: if one of those named never ran, drop it from "
                  "data_migrations and run `manage.py migrate` after the repair") if data else ""
        kind = "safe-to-fake" if fakeable else "data-unproven"
        title = ("unapplied migrations whose tables and columns already exist" if fakeable
                 else "data migrations without a row that nothing proven depends on")
        findings.append(_fix(3, kind, title, evidence, "fake-initial", advice,
                             **({"data_migrations": ",".join(data)} if data else {})))
        pending = []
    elif fakeable:
        evidence = [f"{k}: {django.effective_status(checks[k])}" for k in fakeable]
        findings.append(_fix(3, "safe-to-fake", "unapplied migrations whose tables and columns already exist",
                             evidence, "fake-migrations", migrations=",".join(fakeable)))
    for key, fc in partial.items():
        if key in covered:
            continue
        # What waits on this one (proven, or unapplied without a collision of its own) is finished in the same
        # run, or it would stay behind; complete-migrations' fake proves all of it against the state again.
        later = django.descendants(nodes, [key])
        blocked = [k for k in checks if k not in fakeable and k not in covered and k not in partial
                   and (k in proven or k in later)]
        group = [k for k in _fakeable([key, *blocked], checks) if k == key or k in blocked] or [key]
        covered.update(group)
        findings.append(_fix(3, "partly-applied", f"{key} is only partly in the schema: not safe to fake or apply",
                             (_unproven(fc) + fc.state_problems)[:10]
                             + [f"{k}: proven, waits on {key}" for k in group if k != key],
                             "complete-migrations", migrations=",".join(group)))
    pending = [k for k in pending if k not in covered]
    if pending and not history:
        evidence = [f"{k}" + (f" ({'; '.join(_unproven(checks[k])[:2])})" if _unproven(checks[k]) else "")
                    for k in pending]
        findings.append(_fix(4, "pending", "migrations not applied yet", evidence, "apply-migrations"))
    return sorted(findings, key=lambda f: f.severity)


# ---- Alembic ----

def alembic_findings(scripts: alembic.AlembicScripts, current: list[str] | None) -> list[Finding]:
    """Turn the Alembic revision graph and the version table into findings."""
    findings: list[Finding] = []
    if scripts.error:
        findings.append(Finding(1, "alembic-graph", "the revision graph is broken", [scripts.error],
                                advice="fix the down_revision named in the error, then run `runbook diagnose` again"))
    current = current or []
    known = {r.revision for r in scripts.revisions}
    unknown = [row for row in current if row not in known]
    if unknown:
        findings.append(_fix(1, "alembic-unknown-revision", "the database is at a revision no file has",
                             [f"alembic_version holds {row}" for row in unknown], "alembic-stamp-head",
                             "it refuses unless the schema matches the models at head; else restore the "
                             "revision file from version control"))
    redundant = [(a, b) for a in current for b in current if a != b and a in scripts.graph.ancestors(b)]
    if redundant:
        findings.append(_fix(2, "alembic-redundant-rows", "alembic_version holds a revision and its ancestor",
                             [f"{a} is an ancestor of {b}" for a, b in redundant], "alembic-prune-versions"))
    kinds = scripts.kinds()
    applied = scripts.graph.applied(current)
    left_alone = [f"left alone: {kinds.why[h]}" for h in kinds.intentional()]
    for index, group in enumerate(kinds.conflicts):
        shared = kinds.shared.get(index, [])
        below = set(shared) | {a for r in shared for a in scripts.graph.ancestors(r)}
        # The branches of the group the database has revisions on, above what the heads share.
        on = [h for h in group if ({h} | scripts.graph.ancestors(h)) - below & applied]
        playbook = "alembic-linearize" if len(on) <= 1 else "alembic-merge-heads"
        evidence = [kinds.why[h] + f" ({_head_file(scripts, h)})" for h in group]
        evidence.append(f"the database is at {', '.join(current) or 'base'}"
                        + (f"; applied branches: {', '.join(on)}" if on else ""))
        findings.append(_fix(1, "alembic-multiple-heads",
                             f"{len(group)} heads conflict: {', '.join(group)} revise {', '.join(shared)} "
                             "and carry no branch label", evidence + left_alone, playbook))
    return sorted(findings, key=lambda f: f.severity)


def _head_file(scripts: alembic.AlembicScripts, head: str) -> str:
    rev = scripts.find(head)
    return rev.path if rev is not None and rev.path else "no file"


DETECT = """import os, sys
manage, ini = sys.argv[1], sys.argv[2]
if os.path.isfile(manage):
    source, sys.argv = DJANGO, ["runbook-inspect", "--manage", manage, "--fake-check", "@unapplied", "--compress"]
elif os.path.isfile(ini):
    source, sys.argv = ALEMBIC, ["runbook-inspect", "--config", ini, "--compress"]
else:
    sys.stderr.write("runbook-inspect: neither %s nor %s is in %s\\n" % (manage, ini, os.getcwd()))
    sys.exit(7)
exec(compile(source, "<runbook-inspect>", "exec"), {"__name__": "__main__"})
"""


def detect_source() -> str:
    """Return one script that finds the framework and runs its inspector: one exec, one start."""
    return (f"DJANGO = {script_source(django.SCRIPT)!r}\nALEMBIC = {script_source(alembic.SCRIPT)!r}\n" + DETECT)


def diagnose(ctx: RunContext) -> tuple[str, list[Finding], Any]:
    """Inspect the stack once and return its framework, findings (most serious first) and the inspection."""
    interpreter, manage = split_manage(list(ctx.config.backend.manage))
    ini = alembic.config_file(list(ctx.config.backend.alembic))
    data = run_script(ctx, "", [manage, ini], interpreter=interpreter, what="the inspection",
                      source=detect_source())
    if data.get("framework") == "alembic":
        scripts = alembic.parse_scripts(data)
        return "alembic", alembic_findings(scripts, alembic.current_versions(ctx.database)), scripts
    found = django.parse_inspection(data)
    return "django", django_findings(found), found
