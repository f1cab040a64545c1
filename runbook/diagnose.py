"""`runbook diagnose`: look at the stack, say what is wrong, and the exact `runbook run ...` that fixes it.

One inspection in the backend (one Django or Alembic start) plus the database connection; nothing changes.
The findings are plain data, most serious first; the CLI prints them as a table or JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from runbook import alembic, django
from runbook.backend import exec_options, split_manage
from runbook.errors import EnvironmentNotReady

if TYPE_CHECKING:
    from runbook.executor import RunContext

PROVEN = ("proven", "nothing to check in the schema")


@dataclass
class Finding:
    severity: int  # 1 most serious
    kind: str
    title: str
    evidence: list[str] = field(default_factory=list)
    command: str | None = None
    advice: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def command(playbook: str, **variables: str) -> str:
    """Return the exact command line, variables filled in."""
    parts = ["runbook", "run", playbook]
    parts += [f"--var {key}={value}" for key, value in variables.items()]
    return " ".join([*parts, "--yes"])


def detect_framework(ctx: RunContext) -> str:
    """Return django or alembic from what the backend's working directory holds."""
    options = exec_options(ctx.config, "backend")
    manage = split_manage(list(ctx.config.backend.manage))[1]
    ini = alembic.config_file(list(ctx.config.backend.alembic))
    result = ctx.target.exec(
        "backend", ["sh", "-c", 'if [ -f "$1" ]; then echo django; elif [ -f "$2" ]; then echo alembic; fi',
                    "detect", manage, ini],
        env=options.env, workdir=options.workdir, user=options.user, timeout=60)
    found = result.stdout.strip()
    if result.exit_code != 0 or found not in ("django", "alembic"):
        raise EnvironmentNotReady(f"neither {manage} nor {ini} is in the backend's working directory",
                                  hint="set backend.workdir in runbook.yml")
    return found


def django_findings(found: django.Inspection) -> list[Finding]:
    """Turn one Django inspection (with fake checks of every unapplied migration) into findings."""
    findings: list[Finding] = []
    history = found.problems_of(django.HISTORY_KINDS)
    if history:
        findings.append(Finding(1, "inconsistent-history", "applied migration with an unapplied dependency",
                                [p.message for p in history], command("fix-history")))
    nodes = {n.key: n for n in found.migrations}
    for app, leaves in sorted(found.conflicts.items()):
        applied = [f"{app}.{leaf}" for leaf in leaves if nodes.get(f"{app}.{leaf}") and nodes[f"{app}.{leaf}"].applied]
        evidence = [f"{app} has {len(leaves)} leaf migrations: {', '.join(sorted(leaves))}",
                    f"the database has {', '.join(applied) or 'none of them'}"]
        findings.append(Finding(2, "conflict", f"two leaf migrations in {app}", evidence,
                                command("fake-conflict", app=app)))
    orphans = found.problems_of(("no-file",))
    checks = {fc.migration: fc for fc in found.fake_checks if fc.migration and not fc.applied}
    django.settle(list(checks.values()))
    proven = [k for k, fc in checks.items() if django.effective_status(fc) in PROVEN]
    partial = {k: fc for k, fc in checks.items() if k not in proven and any(c.ok for c in fc.checks)}
    if orphans:
        apps = sorted({p.details.get("migration", "").split(".")[0] for p in orphans})
        replaced = [k for k in proven if k.split(".")[0] in apps]
        findings.append(Finding(
            2, "no-file", "applied rows with no migration file (renamed, deleted or squashed away)",
            [p.message for p in orphans],
            command("fake-conflict", app=apps[0]) if len(apps) == 1 and replaced else None,
            "" if replaced else "restore the files from version control, or reset the app's history",
        ))
    schema = found.problems_of(django.SCHEMA_KINDS)
    recorded_missing = [p for p in schema if _recorded(p, found)]
    if recorded_missing:
        findings.append(Finding(2, "recorded-not-run", "recorded migrations whose tables or columns are missing",
                                [p.message for p in recorded_missing],
                                advice="un-record the migration and apply it, after checking why it never ran"))
    if proven:
        every_initial = all(checks[k].initial for k in proven)
        apps = sorted({k.split(".")[0] for k in proven})
        fix = (command("fake-initial", **({"app": apps[0]} if len(apps) == 1 else {})) if every_initial
               else command("fake-migrations", migrations=",".join(proven)))
        findings.append(Finding(3, "safe-to-fake", "unapplied migrations whose tables and columns already exist",
                                [f"{k}: {django.effective_status(checks[k])}" for k in proven], fix))
    for key, fc in partial.items():
        missing = [c.message for c in fc.checks if c.ok is False and not c.superseded_by]
        findings.append(Finding(3, "partly-applied", f"{key} is only partly in the schema: not safe to fake",
                                missing[:10], advice="find out what happened before faking or applying it"))
    pending = [k for k in checks if k not in proven and k not in partial]
    if pending and not history:
        findings.append(Finding(4, "pending", "migrations not applied yet", pending,
                                advice="apply them with `manage.py migrate`"))
    return sorted(findings, key=lambda f: f.severity)


def _recorded(problem: django.Problem, found: django.Inspection) -> bool:
    """Tell whether a schema problem belongs to an app whose migrations are all recorded."""
    app = str(problem.details.get("model", "")).split(".")[0]
    nodes = [n for n in found.migrations if n.app == app]
    return bool(nodes) and all(n.applied for n in nodes)


def alembic_findings(scripts: alembic.AlembicScripts, current: list[str] | None) -> list[Finding]:
    """Turn the Alembic revision graph and the version table into findings."""
    findings: list[Finding] = []
    if scripts.error:
        findings.append(Finding(1, "alembic-graph", "the revision graph is broken", [scripts.error]))
    current = current or []
    known = {r.revision for r in scripts.revisions}
    unknown = [row for row in current if row not in known]
    if unknown:
        findings.append(Finding(1, "alembic-unknown-revision", "the database is at a revision no file has",
                                [f"alembic_version holds {row}" for row in unknown],
                                advice="restore the revision file from version control"))
    redundant = [(a, b) for a in current for b in current if a != b and a in scripts.ancestors(b)]
    if redundant:
        findings.append(Finding(2, "alembic-redundant-rows", "alembic_version holds a revision and its ancestor",
                                [f"{a} is an ancestor of {b}" for a, b in redundant],
                                advice=f"delete the row of {redundant[0][0]} (the descendant carries it)"))
    if len(scripts.heads) > 1:
        applied_heads = [h for h in scripts.heads if any(h == row or h in scripts.ancestors(row) for row in current)
                         or h in current]
        on_one_branch = len([h for h in scripts.heads
                             if any(row == h or row in scripts.ancestors(h) for row in current)]) <= 1
        fix = command("alembic-linearize") if on_one_branch and len(current) <= 1 else command("alembic-merge-heads")
        findings.append(Finding(1, "alembic-multiple-heads", f"{len(scripts.heads)} head revisions",
                                alembic.head_problems(scripts) + [f"the database is at {', '.join(current) or 'base'}"]
                                + ([f"applied heads: {', '.join(applied_heads)}"] if applied_heads else []), fix))
    return sorted(findings, key=lambda f: f.severity)


def diagnose(ctx: RunContext) -> tuple[str, list[Finding]]:
    """Inspect the stack once and return its framework and findings, most serious first."""
    framework = detect_framework(ctx)
    if framework == "django":
        found = django.inspect(ctx, fake=["@unapplied"])
        return framework, django_findings(found)
    scripts = alembic.inspect_scripts(ctx)
    return framework, alembic_findings(scripts, alembic.current_versions(ctx.database))
