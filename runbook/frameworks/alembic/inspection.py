"""Alembic knowledge: the revision scripts (read in the backend by runbook/frameworks/inside/alembic_inspect.py) and
the version table (read by runbook through psycopg), compared purely."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.alembic_ini import config_file, config_section
from runbook.errors import InputError, StepFailed
from runbook.frameworks.backend import run_script, split_manage

if TYPE_CHECKING:
    from runbook.database.postgres import Database
    from runbook.frameworks.context import RunContext

SCRIPT = "alembic_inspect.py"
FORMAT = 1


@dataclass
class Revision:
    revision: str
    down_revision: list[str]
    path: str | None = None
    doc: str = ""
    depends_on: list[str] = field(default_factory=list)  # resolved revision ids
    branch_labels: list[str] = field(default_factory=list)  # declared in this file, not inherited


@dataclass
class AlembicScripts:
    heads: list[str]
    revisions: list[Revision] = field(default_factory=list)
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def find(self, revision: str) -> Revision | None:
        return next((r for r in self.revisions if r.revision == revision), None)

    def ancestors(self, revision: str, *, dependencies: bool = False) -> set[str]:
        """Return every revision below `revision` (not itself); with `dependencies`, through depends_on too."""
        by_id = {r.revision: r for r in self.revisions}

        def parents(rev: str) -> list[str]:
            found = by_id.get(rev)
            if found is None:
                return []
            return [*found.down_revision, *(found.depends_on if dependencies else [])]

        seen: set[str] = set()
        stack = parents(revision)
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(parents(current))
        return seen

    def applied(self, current: Iterable[str]) -> set[str]:
        """Return what the version table's rows say ran: the rows, their ancestors and dependencies."""
        found: set[str] = set()
        for row in current:
            found |= {row} | self.ancestors(row, dependencies=True)
        return found

    def kinds(self) -> HeadKinds:
        """Tell the heads that are meant (labelled branches, own bases) from the conflicts."""
        return classify_heads(self.heads, {r.revision: r.down_revision for r in self.revisions},
                              {r.revision: r.branch_labels for r in self.revisions})


def parse_scripts(data: Any) -> AlembicScripts:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StepFailed("the Alembic inspection answered in a format runbook does not know")
    return AlembicScripts(
        heads=list(data["heads"]),
        revisions=[Revision(r["revision"], list(r["down_revision"]), r.get("path"), r.get("doc", ""),
                            list(r.get("depends_on", [])),
                            list(r.get("declared_labels", r.get("branch_labels", []))))
                   for r in data["revisions"]],
        error=data.get("error"), raw=data,
    )


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
    down = ", ".join(rev.down_revision) or "base"
    return f"{revision} (down_revision {down}{', ' + rev.path if rev.path else ''})"


# --- heads that are meant, and heads that conflict ------------------------------------------------------

CONFLICT, LABELLED, OWN_BASE, MAIN = "conflict", "labelled branch", "own base", "main line"


@dataclass
class HeadKinds:
    """The heads sorted by intent: groups that conflict, and the intentional ones with their kind."""

    conflicts: list[list[str]] = field(default_factory=list)  # each group: heads to be joined
    kinds: dict[str, str] = field(default_factory=dict)  # head -> CONFLICT, LABELLED, OWN_BASE or MAIN
    why: dict[str, str] = field(default_factory=dict)  # head -> one line naming its kind
    shared: dict[int, list[str]] = field(default_factory=dict)  # conflict group index -> nearest shared revisions

    def intentional(self) -> list[str]:
        return sorted(h for h, kind in self.kinds.items() if kind != CONFLICT)

    def group_of(self, head: str) -> list[str] | None:
        return next((g for g in self.conflicts if head in g), None)


def _lineage(parents: Mapping[str, Sequence[str]], revision: str) -> set[str]:
    """Return the revision and everything below it through down_revision (not depends_on)."""
    seen: set[str] = set()
    stack = [revision]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(parents.get(current, ()))
    return seen


def classify_heads(heads: Sequence[str], parents: Mapping[str, Sequence[str]],
                   labels: Mapping[str, Sequence[str]]) -> HeadKinds:
    """Sort heads into conflicts and intentional branches; pure.

    Two heads conflict when their lines share a revision and neither line, above what they share,
    declares a branch label: two developers revised the same parent. A head whose line declares its own
    label (a named branch) or that shares nothing with another head (its own base) is meant, and so is
    the unlabelled line the named branches fork from. depends_on does not make heads conflict: it joins
    branches that stay apart on purpose.
    """
    lines = {h: _lineage(parents, h) for h in heads}
    group = {h: h for h in heads}

    def root(h: str) -> str:
        while group[h] != h:
            h = group[h]
        return h

    for index, first in enumerate(heads):
        for second in heads[index + 1:]:
            shared = lines[first] & lines[second]
            if not shared:
                continue
            own = (lines[first] | lines[second]) - shared
            if any(labels.get(r) for r in own):
                continue
            group[root(second)] = root(first)
    groups: dict[str, list[str]] = {}
    for head in heads:
        groups.setdefault(root(head), []).append(head)
    result = HeadKinds()
    for members in (sorted(g) for g in groups.values()):
        if len(members) > 1:
            common = set.intersection(*(lines[h] for h in members))
            nearest = sorted(r for r in common if not any(r in _lineage(parents, o) - {o}
                                                             for o in common if o != r))
            result.shared[len(result.conflicts)] = nearest
            result.conflicts.append(members)
            for head in members:
                result.kinds[head] = CONFLICT
                result.why[head] = (f"{head}: conflict: shares {', '.join(nearest)} with "
                                    f"{', '.join(m for m in members if m != head)} and carries no branch label")
            continue
        [head] = members
        own_labels = sorted({lab for r in lines[head] for lab in labels.get(r, ())})
        others = [lines[o] for o in heads if o != head]
        if own_labels:
            result.kinds[head] = LABELLED
            result.why[head] = f"{head}: intentional: labelled branch {', '.join(own_labels)}"
        elif all(not (lines[head] & other) for other in others):
            result.kinds[head] = OWN_BASE
            bases = sorted(r for r in lines[head] if not parents.get(r))
            result.why[head] = f"{head}: intentional: on its own base {', '.join(bases)}"
        else:
            result.kinds[head] = MAIN
            result.why[head] = f"{head}: intentional: the main line the labelled branches fork from"
    return result


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
            ahead = [h for h in scripts.heads if row in scripts.ancestors(h)]
            problems.append(f"{table} holds {row}, which is behind head {', '.join(ahead) or '?'}")
    for head in scripts.heads:
        if head not in current:
            problems.append(f"head {_describe(scripts, head)} is not applied")
    return problems
