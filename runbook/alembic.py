"""Alembic knowledge: the revision scripts (read in the backend by runbook/inside/alembic_inspect.py) and
the version table (read by runbook through psycopg), compared purely."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.backend import run_script, split_manage
from runbook.errors import InputError, StepFailed

if TYPE_CHECKING:
    from runbook.context import RunContext
    from runbook.database import Database

SCRIPT = "alembic_inspect.py"
FORMAT = 1


@dataclass
class Revision:
    revision: str
    down_revision: list[str]
    path: str | None = None
    doc: str = ""


@dataclass
class AlembicScripts:
    heads: list[str]
    revisions: list[Revision] = field(default_factory=list)
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def find(self, revision: str) -> Revision | None:
        return next((r for r in self.revisions if r.revision == revision), None)

    def ancestors(self, revision: str) -> set[str]:
        """Return every revision below `revision` (not itself)."""
        by_id = {r.revision: r for r in self.revisions}
        seen: set[str] = set()
        stack = list(by_id[revision].down_revision) if revision in by_id else []
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(by_id[current].down_revision if current in by_id else [])
        return seen


def parse_scripts(data: Any) -> AlembicScripts:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StepFailed("the Alembic inspection answered in a format runbook does not know")
    return AlembicScripts(
        heads=list(data["heads"]),
        revisions=[Revision(r["revision"], list(r["down_revision"]), r.get("path"), r.get("doc", ""))
                   for r in data["revisions"]],
        error=data.get("error"), raw=data,
    )


def config_file(alembic_argv: list[str], override: str | None = None) -> str:
    """Return the alembic.ini the configured alembic command uses (`-c`/`--config`), or alembic.ini."""
    if override:
        return override
    for index, part in enumerate(alembic_argv):
        if part in ("-c", "--config") and index + 1 < len(alembic_argv):
            return alembic_argv[index + 1]
        if part.startswith("--config="):
            return part.split("=", 1)[1]
    return "alembic.ini"


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
    args = ["--config", config_file(list(ctx.config.backend.alembic), config)] + (["--compare"] if compare else [])
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
    down = ", ".join(rev.down_revision) or "base"
    return f"{revision} (down_revision {down}{', ' + rev.path if rev.path else ''})"


def head_problems(scripts: AlembicScripts) -> list[str]:
    """Return one line per reason the scripts do not form a single line of history."""
    problems = [f"the revision graph is broken: {scripts.error}"] if scripts.error else []
    if len(scripts.heads) > 1:
        problems.append(f"{len(scripts.heads)} heads: " + "; ".join(_describe(scripts, h) for h in scripts.heads))
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
            ahead = [h for h in scripts.heads if row in scripts.ancestors(h)]
            problems.append(f"{table} holds {row}, which is behind head {', '.join(ahead) or '?'}")
    for head in scripts.heads:
        if head not in current:
            problems.append(f"head {_describe(scripts, head)} is not applied")
    return problems
