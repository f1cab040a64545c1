"""Alembic knowledge: the revision scripts (read in the backend by runbook/frameworks/inside/alembic_inspect.py) and
the version table (read by runbook through psycopg), compared purely."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.alembic_ini import config_file, config_section
from runbook.errors import InputError, StepFailed
from runbook.frameworks.alembic.graph import HeadKinds, Revision, RevisionGraph
from runbook.frameworks.backend import run_script, split_manage

if TYPE_CHECKING:
    from runbook.database.postgres import Database
    from runbook.frameworks.context import RunContext

SCRIPT = "alembic_inspect.py"
FORMAT = 1


@dataclass
class AlembicScripts:
    """The revision scripts as the backend's own alembic lists them, with its heads."""

    heads: list[str]
    graph: RevisionGraph = field(default_factory=lambda: RevisionGraph([], checked=False))
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def revisions(self) -> list[Revision]:
        return list(self.graph.revisions.values())

    def find(self, revision: str) -> Revision | None:
        return self.graph.revisions.get(revision)

    def kinds(self) -> HeadKinds:
        """Tell the heads that are meant (labelled branches, own bases) from the conflicts."""
        return self.graph.kinds(self.heads)


def parse_scripts(data: Any) -> AlembicScripts:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StepFailed("the Alembic inspection answered in a format runbook does not know")
    # Alembic lists depends_on resolved to revision ids, and stops listing part way on a broken graph.
    graph = RevisionGraph((Revision(r["revision"], tuple(r["down_revision"]), r.get("path") or "", r.get("doc", ""),
                                    tuple(r.get("declared_labels", r.get("branch_labels", []))),
                                    tuple(r.get("depends_on", [])))
                           for r in data["revisions"]), checked=False)
    return AlembicScripts(heads=list(data["heads"]), graph=graph, error=data.get("error"), raw=data)


def inspect_scripts(ctx: RunContext, *, config: str | None = None, python: Any = None,
                    compare: bool = False) -> AlembicScripts:
    """Read the revision graph in the backend with its own alembic (and compare the schema with the models)."""
    if python is None:
        interpreter = split_manage(list(ctx.config.backend.manage))[0]
    elif isinstance(python, str):
        interpreter = [python]
    elif isinstance(python, list) and python:
        interpreter = [str(p) for p in python]
    else:
        raise InputError("`python` must be a command name or an argv list")
    alembic_argv = list(ctx.config.backend.alembic)
    args = ["--config", config_file(alembic_argv, config), "--name", config_section(alembic_argv)]
    args += ["--compare"] if compare else []
    return parse_scripts(run_script(ctx, SCRIPT, args, interpreter=interpreter, what="the Alembic inspection"))


def current_versions(database: Database, table: str = "alembic_version") -> list[str] | None:
    """Return the rows of the version table, or None when the table does not exist."""
    if not database.table_exists(table):
        return None
    _, rows, _ = database.query("SELECT version_num FROM {table} ORDER BY version_num", None, {"table": table})
    return [str(row[0]) for row in rows]


def _describe(scripts: AlembicScripts, revision: str) -> str:
    rev = scripts.find(revision)
    if rev is None:
        return revision
    down = ", ".join(rev.down_revisions) or "base"
    return f"{revision} (down_revision {down}{', ' + rev.path if rev.path else ''})"


def head_problems(scripts: AlembicScripts) -> list[str]:
    """Return one line per group of heads that conflict (intentional branches are no problem)."""
    problems = [f"the revision graph is broken: {scripts.error}"] if scripts.error else []
    kinds = scripts.kinds()
    for group in kinds.conflicts:
        problems.append(f"{len(group)} heads that conflict: " + "; ".join(_describe(scripts, h) for h in group))
    if not scripts.heads:
        problems.append("no revision scripts")
    return problems


def at_head_problems(scripts: AlembicScripts, current: list[str] | None, table: str = "alembic_version") -> list[str]:
    """Return one line per reason the database is not at the head revision(s)."""
    if current is None:
        return [f"table {table} does not exist: no revision was ever applied"]
    if not current:
        return [f"{table} is empty: the database is at base"]
    problems: list[str] = []
    known = {r.revision for r in scripts.revisions} | set(scripts.heads)
    for row in current:
        if row not in known:
            problems.append(f"{table} holds {row}, which no revision script defines")
        elif row not in scripts.heads:
            ahead = [h for h in scripts.heads if row in scripts.graph.ancestors(h)]
            problems.append(f"{table} holds {row}, which is behind head {', '.join(ahead) or '?'}")
    for head in scripts.heads:
        if head not in current:
            problems.append(f"head {_describe(scripts, head)} is not applied")
    return problems
