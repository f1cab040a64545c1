"""Alembic revision graphs: read the version files, find the heads, plan and apply a linearization.

The planning half is pure: version files are parsed with `ast` from their text, never imported, so no
user code runs in runbook's process, and the graph functions work on plain data. The action half
(`alembic.merge-needed`, `alembic.heads`, `alembic.linearize`) reads and writes the files through the
run's target and reads the applied revisions (`alembic_version`) through its database.
"""

from __future__ import annotations

import ast
import difflib
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.alembic_ini import AlembicConfigError, config_file, config_section, read_config
from runbook.errors import StepFailed
from runbook.frameworks.actions import ActionResult, action
from runbook.frameworks.alembic.inspection import HeadKinds, classify_heads
from runbook.frameworks.backend import exec_options
from runbook.targets.base import MissingFile

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext

DEFAULT_VERSIONS_DIR = "alembic/versions"


class GraphError(StepFailed):
    """The version files do not form a graph runbook can work on, or a repair would be unsafe."""


class GraphRefused(GraphError):
    """The state does not fit a linearization (an applied revision would move): refused, exit 2."""


@dataclass(frozen=True)
class Revision:
    """One version file as Alembic sees it, read from its text."""

    revision: str
    down_revisions: tuple[str, ...] = ()
    path: str = ""
    message: str = ""
    branch_labels: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()  # as written: revision ids or branch labels

    def label(self) -> str:
        return f"{self.revision} ({self.message})" if self.message else self.revision


@dataclass(frozen=True)
class Move:
    """Re-point one revision's `down_revision`."""

    revision: str
    path: str
    old: tuple[str, ...]
    new: tuple[str, ...]


@dataclass
class LinearizePlan:
    moves: list[Move]
    heads_before: list[str]
    head_after: str
    trunk: str | None = None
    notes: list[str] = field(default_factory=list)


# --- reading version files ---------------------------------------------------------------------------

def _module_assignments(tree: ast.Module) -> dict[str, ast.expr]:
    """Map each module-level `name = value` / `name: T = value` to its value node (the last one wins)."""
    found: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            found[node.target.id] = node.value
    return found


def _ids(node: ast.expr | None, path: str, name: str) -> tuple[str, ...]:
    """Return the revision ids of a literal None, string, or tuple/list of strings."""
    if node is None:
        return ()
    try:
        value = ast.literal_eval(node)
    except ValueError:
        raise GraphError(f"{path}:{node.lineno}: {name} is not a literal runbook can read") from None
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise GraphError(f"{path}:{node.lineno}: {name} must be None, a string or a tuple of strings")


def _parse(text: str, path: str) -> ast.Module:
    try:
        return ast.parse(text, filename=path)
    except SyntaxError as exc:
        raise GraphError(f"{path}:{exc.lineno}: not valid Python: {exc.msg}") from None


def parse_revision(text: str, path: str = "") -> Revision | None:
    """Read a version file's identifiers from its text; None when it defines no `revision`."""
    tree = _parse(text, path)
    names = _module_assignments(tree)
    if "revision" not in names:
        return None
    ids = _ids(names["revision"], path, "revision")
    if len(ids) != 1:
        raise GraphError(f"{path}: revision must be one string")
    if "down_revision" not in names:
        raise GraphError(f"{path}: revision {ids[0]} has no down_revision")
    docstring = ast.get_docstring(tree) or ""
    return Revision(
        revision=ids[0],
        down_revisions=_ids(names["down_revision"], path, "down_revision"),
        path=path,
        message=docstring.strip().splitlines()[0] if docstring.strip() else "",
        branch_labels=_ids(names.get("branch_labels"), path, "branch_labels"),
        depends_on=_ids(names.get("depends_on"), path, "depends_on"),
    )


def versions_dirs_from_ini(text: str, here: str = ".", ini: str = "alembic.ini") -> list[str]:
    """Return the version directories an alembic.ini names (`version_locations`, else script_location/versions)."""
    try:
        return read_config(text, ini, workdir=here).versions_dirs()
    except AlembicConfigError as exc:
        raise GraphError(str(exc)) from None


# --- the graph ---------------------------------------------------------------------------------------

class RevisionGraph:
    """The revisions and their `down_revision` links; checked for duplicates, dangling links and cycles."""

    def __init__(self, revisions: Iterable[Revision]):
        self.revisions: dict[str, Revision] = {}
        for rev in revisions:
            if rev.revision in self.revisions:
                raise GraphError(f"revision {rev.revision} is defined twice: "
                                 f"{self.revisions[rev.revision].path} and {rev.path}")
            self.revisions[rev.revision] = rev
        self._children: dict[str, list[str]] = {r: [] for r in self.revisions}
        for rev in self.revisions.values():
            for parent in rev.down_revisions:
                if parent not in self.revisions:
                    raise GraphError(f"{rev.path or rev.revision}: down_revision {parent!r} names no revision "
                                     "in the version files")
                self._children[parent].append(rev.revision)
        labels = {label: r.revision for r in self.revisions.values() for label in r.branch_labels}
        # depends_on as Alembic resolves it: a revision id, or a branch label (the revision declaring it).
        self.dependencies: dict[str, tuple[str, ...]] = {}
        for rev in self.revisions.values():
            resolved = []
            for dep in rev.depends_on:
                target = dep if dep in self.revisions else labels.get(dep)
                if target is None:
                    raise GraphError(f"{rev.path or rev.revision}: depends_on {dep!r} names no revision or "
                                     "branch label in the version files")
                resolved.append(target)
            self.dependencies[rev.revision] = tuple(resolved)
        self._order = self._topological()

    def parents(self, revision: str, *, dependencies: bool = True) -> tuple[str, ...]:
        """Return a revision's down_revisions, and (by default) what it depends_on."""
        rev = self.revisions[revision]
        return rev.down_revisions + (self.dependencies[revision] if dependencies else ())

    def _topological(self) -> list[str]:
        """Return the revisions parents first (ties by id); raise GraphError on a cycle."""
        waiting = {r: len(set(self.parents(r))) for r in self.revisions}
        after: dict[str, set[str]] = {r: set() for r in self.revisions}
        for r in self.revisions:
            for parent in set(self.parents(r)):
                after[parent].add(r)
        ready = sorted(r for r, n in waiting.items() if n == 0)
        order: list[str] = []
        while ready:
            current = ready.pop(0)
            order.append(current)
            for child in sorted(after[current]):
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
            ready.sort()
        if len(order) != len(self.revisions):
            stuck = sorted(set(self.revisions) - set(order))
            raise GraphError(f"the down_revision and depends_on links form a cycle through {', '.join(stuck)}")
        return order

    def __contains__(self, revision: str) -> bool:
        return revision in self.revisions

    def order(self) -> list[str]:
        return list(self._order)

    def heads(self) -> list[str]:
        return sorted(r for r, children in self._children.items() if not children)

    def bases(self) -> list[str]:
        return sorted(r for r, rev in self.revisions.items() if not rev.down_revisions)

    def ancestors(self, revision: str, *, dependencies: bool = False) -> set[str]:
        """Return the revision and everything below it (through depends_on too, with `dependencies`)."""
        seen: set[str] = set()
        stack = [revision]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.parents(current, dependencies=dependencies))
        return seen

    def applied(self, current: Iterable[str]) -> set[str]:
        """Return every revision the database has: the rows, their ancestors and what they depend on."""
        applied: set[str] = set()
        for revision in current:
            if revision not in self.revisions:
                raise GraphError(f"the database is at revision {revision}, which no version file defines")
            applied |= self.ancestors(revision, dependencies=True)
        return applied

    def kinds(self) -> HeadKinds:
        """Tell the heads that are meant (labelled branches, own bases) from the conflicts."""
        return classify_heads(self.heads(), {r: rev.down_revisions for r, rev in self.revisions.items()},
                              {r: rev.branch_labels for r, rev in self.revisions.items()})

    def heads_named(self, names: Iterable[str]) -> list[str]:
        """Return the heads `--var branches` names: head ids (or prefixes), or branch labels of their lines."""
        heads, found = self.heads(), []
        for name in names:
            lined = [h for h in heads if any(name in self.revisions[r].branch_labels for r in self.ancestors(h))]
            if not lined:
                revision = self.resolve(name)
                lined = [h for h in heads if h == revision]
                if not lined:
                    raise GraphError(f"branches: {name} is neither a head nor the branch label of one "
                                     f"(heads: {', '.join(heads)})")
            found += [h for h in lined if h not in found]
        if len(found) < 2:
            raise GraphError(f"branches names {', '.join(found)}: joining needs at least two heads")
        return found

    def resolve(self, ident: str) -> str:
        """Return the full id for an id or a unique prefix of one, as Alembic accepts."""
        if ident in self.revisions:
            return ident
        matches = sorted(r for r in self.revisions if r.startswith(ident))
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise GraphError(f"no revision {ident!r} in the version files")
        raise GraphError(f"{ident!r} is ambiguous: {', '.join(matches)}")

    def relinked(self, changes: dict[str, tuple[str, ...]]) -> RevisionGraph:
        """Return a new graph with some revisions' `down_revision` replaced."""
        return RevisionGraph(
            Revision(r.revision, changes.get(r.revision, r.down_revisions), r.path, r.message, r.branch_labels,
                     r.depends_on)
            for r in self.revisions.values()
        )


def summarize(graph: RevisionGraph, current: Sequence[str], branches: Sequence[str] = ()) -> dict[str, Any]:
    """Return the facts a playbook decides on: the heads and their kinds, where the database is, what to join.

    `join` is the groups of heads a repair joins: the conflicts, or the heads `branches` names.
    """
    heads = graph.heads()
    applied = graph.applied(current)
    kinds = graph.kinds()
    join = [graph.heads_named(branches)] if branches else kinds.conflicts
    return {
        "heads": heads,
        "count": len(heads),
        "single_head": len(heads) == 1,
        "multiple_heads": len(heads) > 1,
        "conflicts": kinds.conflicts,
        "no_conflict": not kinds.conflicts,
        "kinds": kinds.kinds,
        "intentional": kinds.intentional(),
        "join": join,
        "current": sorted(current),
        "at_head": sorted(current) == heads,
        "applied_heads": [h for h in heads if h in applied],
        "unapplied": [r for r in graph.order() if r not in applied],
        "revisions": len(graph.revisions),
    }


# --- planning a linearization ------------------------------------------------------------------------

def plan_linearize(graph: RevisionGraph, current: Sequence[str], order: Sequence[str] | None = None,
                   branches: Sequence[str] = ()) -> LinearizePlan:
    """Plan which `down_revision` links to change so the conflicting heads become one; never move an applied
    revision, never join intentional branches (labelled, own base) unless `branches` names them.

    With `order` ([a, b, c]) each listed revision after the first is put right after the one before it.
    Without it the branch the database is on stays the trunk and each other branch of a conflict is
    attached, root first, after the trunk's head.
    """
    heads = graph.heads()
    applied = graph.applied(current)
    kinds = graph.kinds()
    groups = [graph.heads_named(branches)] if branches else kinds.conflicts
    if order:
        plan = _plan_by_order(graph, [graph.resolve(str(i)) for i in order])
        if not branches:
            _refuse_intentional(graph, kinds, plan)
    elif not groups:
        return LinearizePlan([], heads, heads[0] if len(heads) == 1 else "", notes=[_one_head(graph, heads, kinds)])
    else:
        plan = LinearizePlan([], heads, "")
        current_graph = graph
        for group in groups:
            part = _plan_default(current_graph, applied, group, allow_labels=bool(branches))
            plan.moves += part.moves
            plan.notes += part.notes
            plan.trunk = plan.trunk or part.trunk
            current_graph = current_graph.relinked({m.revision: m.new for m in part.moves})
    moved = [m.revision for m in plan.moves if m.revision in applied]
    if moved:
        raise GraphRefused(
            f"refusing to move {', '.join(moved)}: applied in the database "
            f"(alembic_version: {', '.join(sorted(current))}); re-pointing an applied revision rewrites history "
            "the database already has. Run the alembic-merge-heads playbook instead")
    final = graph.relinked({m.revision: m.new for m in plan.moves})
    left = final.kinds().conflicts
    if left or (branches and len(set(final.heads()) & set(groups[0])) > 1):
        raise GraphError(f"after these moves the heads {', '.join(final.heads())} would still conflict; "
                         "list every branch in `order`")
    plan.head_after = ", ".join(final.heads())
    if not plan.moves:
        plan.notes.append(_one_head(graph, heads, kinds))
    return plan


def _refuse_intentional(graph: RevisionGraph, kinds: HeadKinds, plan: LinearizePlan) -> None:
    """Refuse an `order` that moves a revision of an intentional branch (`branches` must name it)."""
    for move in plan.moves:
        for head in kinds.intentional():
            if kinds.kinds[head] != "main line" and move.revision in graph.ancestors(head):
                raise GraphRefused(f"refusing to move {move.revision}: it is on the intentional branch of "
                                   f"{kinds.why[head]}; name the branches to join with --var branches=...")


def _one_head(graph: RevisionGraph, heads: list[str], kinds: HeadKinds | None = None) -> str:
    if not heads:
        return "nothing to do: no revisions"
    if len(heads) > 1 and kinds is not None:
        return (f"nothing to do: {len(heads)} heads, all intentional ({'; '.join(kinds.why[h] for h in heads)}); "
                "name branches to join with --var branches=...")
    return f"nothing to do: one head, {graph.revisions[heads[0]].label()}"


def _plan_by_order(graph: RevisionGraph, order: list[str]) -> LinearizePlan:
    if len(order) < 2:
        raise GraphError("order needs at least two revisions: the one to keep and the one to put after it")
    if len(set(order)) != len(order):
        raise GraphError(f"order lists a revision twice: {', '.join(order)}")
    moves = [
        Move(rev, graph.revisions[rev].path, graph.revisions[rev].down_revisions, (before,))
        for before, rev in zip(order, order[1:], strict=False)
        if graph.revisions[rev].down_revisions != (before,)
    ]
    return LinearizePlan(moves, graph.heads(), "", notes=[f"order given: {' -> '.join(order)}"])


def _plan_default(graph: RevisionGraph, applied: set[str], heads: list[str], *, allow_labels: bool = False
                  ) -> LinearizePlan:
    # Only what is applied on these heads' lines counts: intentional branches beside them may be applied.
    applied = applied & set().union(*(graph.ancestors(h) for h in heads))
    candidates = [h for h in heads if applied <= graph.ancestors(h)]
    if not candidates:
        shared = _shared(graph, heads)
        on = [h for h in heads if (graph.ancestors(h) - shared) & applied]
        raise GraphRefused(
            f"revisions on more than one branch are applied (the branches of {', '.join(on)}): "
            "linearizing would have to move an applied revision. Run the alembic-merge-heads playbook instead")
    # Longest history first: it is the one most likely to be deployed somewhere else already.
    ranked = sorted(candidates, key=lambda h: (-len(graph.ancestors(h)), h))
    trunk = ranked[0]
    notes = []
    if len(candidates) == 1:
        notes.append(f"the database is on the branch of {trunk}: it stays as it is")
    else:
        where = "the database is below the split" if applied else "nothing is applied yet"
        notes.append(f"{where}: keeping the longest branch, {trunk}, as the trunk (pass `order` to choose)")
    moves: list[Move] = []
    tip, current = trunk, graph
    for head in sorted((h for h in heads if h != trunk), key=lambda h: (-len(graph.ancestors(h)), h)):
        segment = current.ancestors(head) - current.ancestors(tip)
        roots = [r for r in segment if not set(current.revisions[r].down_revisions) & segment]
        root = roots[0] if len(roots) == 1 else None
        if root is None or len(current.revisions[root].down_revisions) > 1:
            raise GraphError(f"the branch of {head} joins the rest at several points; "
                             "pass `order` to say where each revision goes, or merge the heads")
        labelled = sorted(r for r in segment if current.revisions[r].branch_labels)
        if labelled and not allow_labels:
            raise GraphRefused(f"{', '.join(labelled)} carry branch_labels: these branches are meant to stay "
                               "apart; name them with --var branches=... to join them anyway")
        rev = current.revisions[root]
        moves.append(Move(root, rev.path, rev.down_revisions, (tip,)))
        current = current.relinked({root: (tip,)})
        tip = head
    return LinearizePlan(moves, heads, "", trunk=trunk, notes=notes)


def _shared(graph: RevisionGraph, heads: list[str]) -> set[str]:
    """Return the revisions every head depends on (the history before the branches split)."""
    shared = graph.ancestors(heads[0])
    for head in heads[1:]:
        shared &= graph.ancestors(head)
    return shared


# --- rewriting a version file ------------------------------------------------------------------------

def _lines(text: str) -> list[str]:
    """Split like the Python tokenizer: after \\n, \\r\\n or a lone \\r, keeping the endings."""
    return [part for part in re.split(r"(?<=\n)|(?<=\r)(?!\n)", text) if part]


def _offset(lines: list[str], lineno: int, col_bytes: int) -> int:
    """Turn an ast position (1-based line, UTF-8 byte column) into an index into the text."""
    line = lines[lineno - 1] if lineno <= len(lines) else ""
    return sum(len(x) for x in lines[: lineno - 1]) + len(line.encode("utf-8")[:col_bytes].decode("utf-8"))


def _format_ids(ids: tuple[str, ...], quote: str) -> str:
    def one(value: str) -> str:
        return f"{quote}{value}{quote}" if quote not in value and "\\" not in value else repr(value)

    if not ids:
        return "None"
    if len(ids) == 1:
        return one(ids[0])
    return "(" + ", ".join(one(i) for i in ids) + ")"


def rewrite_down_revision(text: str, new: tuple[str, ...], path: str = "") -> str:
    """Return the file text with `down_revision` (and the docstring's `Revises:` line) set to new."""
    tree = _parse(text, path)
    names = _module_assignments(tree)
    node = names.get("down_revision")
    if node is None or node.end_lineno is None or node.end_col_offset is None:
        raise GraphError(f"{path}: no down_revision assignment to rewrite")
    lines = _lines(text)
    start = _offset(lines, node.lineno, node.col_offset)
    end = _offset(lines, node.end_lineno, node.end_col_offset)
    # Keep the file's quoting: that of the old value, else that of `revision`.
    revision_node = names.get("revision")
    samples = [text[start:end], (ast.get_source_segment(text, revision_node) or "") if revision_node else ""]
    quote = next((m.group(0) for m in map(re.compile("['\"]").search, samples) if m), "'")
    result = text[:start] + _format_ids(new, quote) + text[end:]
    docstring = tree.body[0] if tree.body and isinstance(tree.body[0], ast.Expr) else None
    if docstring is not None and isinstance(docstring.value, ast.Constant) and isinstance(docstring.value.value, str):
        doc_start = _offset(lines, docstring.lineno, docstring.col_offset)
        doc_end = _offset(lines, docstring.end_lineno or docstring.lineno, docstring.end_col_offset or 0)
        revises = ", ".join(new)
        doc = re.sub(r"(?m)^([ \t]*Revises:)[^\r\n]*", lambda m: f"{m.group(1)} {revises}".rstrip(),
                     result[doc_start:doc_end], count=1)
        result = result[:doc_start] + doc + result[doc_end:]
    return result


def unified_diff(path: str, old: str, new: str) -> str:
    """Return a unified diff of one file, as `git diff` would show it."""
    name = path.lstrip("/")
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"a/{name}", tofile=f"b/{name}", n=2)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


# --- actions: files through the target, applied revisions through the database -----------------------

def _backend_path(ctx: RunContext, path: str) -> str:
    """Place a relative path like the backend's commands see it (in runbook.yml's backend workdir)."""
    workdir = ctx.config.backend.workdir
    # A target with a workdir of its own (local) resolves relative paths against it already.
    if posixpath.isabs(path) or not workdir or ctx.target.workdir is not None:
        return path
    return posixpath.join(workdir, path)


def _resolve_resource(ctx: RunContext, location: str) -> str:
    """Ask the backend's python where a package resource (`package:dir`) is, as Alembic finds it."""
    from runbook.frameworks.backend import split_manage

    interpreter = split_manage(list(ctx.config.backend.manage))[0]
    code = ("import importlib.resources as r, sys; p, _, d = sys.argv[1].partition(':'); "
            "print(r.files(p).joinpath(d) if d else r.files(p))")
    options = exec_options(ctx.config, "backend")
    result = ctx.target.exec("backend", [*interpreter, "-c", code, location], env=options.env,
                             workdir=options.workdir, user=options.user, timeout=ctx.config.step_timeout)
    found = result.stdout.strip().splitlines()[-1:] if result.exit_code == 0 else []
    if not found:
        raise GraphError(f"cannot find the package resource {location} in the backend: "
                         f"{(result.stderr.strip().splitlines() or ['?'])[-1]}",
                         hint="pass versions_dir with the directory of the version files")
    return found[0]


def _versions_dirs(ctx: RunContext, args: dict[str, Any]) -> list[str]:
    if args.get("versions_dir"):
        return [_backend_path(ctx, str(args["versions_dir"]))]
    alembic_argv = list(ctx.config.backend.alembic)
    ini = config_file(alembic_argv, args.get("config"))
    try:
        text = ctx.target.read_file("backend", _backend_path(ctx, ini)).decode("utf-8")
    except MissingFile:
        return [_backend_path(ctx, DEFAULT_VERSIONS_DIR)]
    except UnicodeDecodeError as exc:
        raise StepFailed(f"cannot read {ini} in backend: {exc}") from exc
    try:
        config = read_config(text, ini, section=config_section(alembic_argv))
    except AlembicConfigError as exc:
        raise GraphError(str(exc)) from None
    return [_backend_path(ctx, d) for d in config.versions_dirs(lambda loc: _resolve_resource(ctx, loc))]


def _read_revisions(ctx: RunContext, args: dict[str, Any]) -> tuple[RevisionGraph, dict[str, str], list[str]]:
    """Return the graph, each version file's text by path, and the version directories read."""
    dirs = _versions_dirs(ctx, args)
    texts: dict[str, str] = {}
    revisions = []
    for directory in dirs:
        for path in ctx.target.list_files("backend", directory, "*.py"):
            try:
                text = ctx.target.read_file("backend", path).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise StepFailed(f"cannot read {path} in backend: {exc}") from exc
            revision = parse_revision(text, path)
            if revision is not None:
                texts[path] = text
                revisions.append(revision)
    if not revisions:
        raise GraphError(f"no Alembic version files in {', '.join(dirs)} in backend",
                         hint="pass versions_dir, or set backend.workdir in runbook.yml")
    return RevisionGraph(revisions), texts, dirs


def _current(ctx: RunContext) -> list[str]:
    return [str(row[0]) for row in ctx.database.history().get("alembic_version", [])]


def _describe(graph: RevisionGraph, facts: dict[str, Any]) -> str:
    kinds = graph.kinds()
    heads = ", ".join(graph.revisions[h].label() for h in facts["heads"])
    lines = [f"{facts['count']} head{'s' if facts['count'] != 1 else ''}: {heads}"]
    if facts["count"] > 1:
        lines += [f"  {kinds.why[h]}" for h in facts["heads"]]
    lines.append(f"database at: {', '.join(facts['current']) or 'nothing applied (no alembic_version rows)'}")
    if facts["unapplied"]:
        lines.append(f"not applied: {', '.join(facts['unapplied'])}")
    return "\n".join(lines) + "\n"


def _branches(args: dict[str, Any]) -> list[str]:
    value = args.get("branches") or []
    if isinstance(value, str):
        value = re.split(r"[\s,]+", value)
    return [str(v) for v in value if str(v).strip()]


@action("alembic.heads")
def heads(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Report the heads of the version files, their kinds and where the database is; check with `expect: json:`."""
    graph, _, _ = _read_revisions(ctx, args)
    facts = summarize(graph, _current(ctx))
    return ActionResult(0, _describe(graph, facts), data=facts)


@action("alembic.merge-needed")
def merge_needed(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Say whether heads conflict, or `branches` names heads to join (`needed`); exit 0 either way."""
    graph, _, _ = _read_revisions(ctx, args)
    facts = summarize(graph, _current(ctx), _branches(args))
    facts["needed"] = bool(facts["join"])
    if facts["needed"]:
        verdict = "".join(f"to join: {', '.join(group)}\n" for group in facts["join"])
        if facts["intentional"] and not _branches(args):
            verdict += f"never joined (intentional): {', '.join(facts['intentional'])}\n"
        if args.get("preview") == "linearize":
            verdict += _preview_linearize(graph, facts["current"], args)
    else:
        verdict = f"{_one_head(graph, facts['heads'], graph.kinds())}; the repair steps are skipped\n"
    return ActionResult(0, _describe(graph, facts) + verdict, data=facts)


def _preview_linearize(graph: RevisionGraph, current: Sequence[str], args: dict[str, Any]) -> str:
    """Say, before any file changes, which revisions linearize will move and what other databases need."""
    order = args.get("order") or []
    if isinstance(order, str):
        order = [part for part in re.split(r"[\s,]+", order) if part]
    try:
        plan = plan_linearize(graph, current, order, _branches(args))
    except GraphError as exc:
        return f"linearize will refuse: {exc}\n"
    if not plan.moves:
        return ""
    final = graph.relinked({m.revision: m.new for m in plan.moves})
    return "plan: " + "\nplan: ".join(other_databases(graph, plan.moves, final.heads())) + "\n"


@action("alembic.merge")
def merge(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Write one merge revision per group of heads to join (`alembic merge -m MESSAGE HEAD...`)."""
    graph, _, _ = _read_revisions(ctx, args)
    facts = summarize(graph, _current(ctx), _branches(args))
    message = str(args.get("message") or "merge heads")
    options = exec_options(ctx.config, "backend")
    out, merged = [], []
    for group in facts["join"]:
        argv = [*ctx.config.backend.alembic, "merge", "-m", message, *group]
        result = ctx.target.exec("backend", argv, env=options.env, workdir=options.workdir, user=options.user,
                                 timeout=ctx.config.step_timeout)
        out.append(f"$ alembic merge -m {message!r} {' '.join(group)}\n{result.stdout}{result.stderr}")
        if result.exit_code != 0:
            return ActionResult(result.exit_code, "".join(out), data={"merged": merged})
        merged.append(group)
    if facts["intentional"] and not _branches(args):
        out.append(f"left alone (intentional): {', '.join(facts['intentional'])}\n")
    return ActionResult(0, "".join(out), data={"merged": merged})


def other_databases(graph: RevisionGraph, moves: Sequence[Move], head_after: Sequence[str]) -> list[str]:
    """Say which revisions a linearization moves, and how another database that applied them is stamped."""
    final = graph.relinked({m.revision: m.new for m in moves})
    lines = [f"re-points down_revision of {', '.join(m.revision for m in moves)} (applied nowhere in this database)"]
    for move in moves:
        tips = [h for h in head_after if move.revision in final.ancestors(h)] or [move.revision]
        # The revisions that came along with the moved one: its line up to the head, as they were.
        line = [r for r in graph.order() if move.revision in graph.ancestors(r) and r in final.ancestors(tips[0])]
        new = ", ".join(move.new)
        later = (f" (if it stopped earlier on {', '.join(line)}, name the last of them it applied instead)"
                 if len(line) > 1 else "")
        lines.append(
            f"any other database (staging, production, a colleague's) that applied {move.revision} has it "
            f"below {', '.join(move.old) or 'base'}, not below {new}: once it has applied {new} too, stamp it "
            f"with `alembic stamp --purge {' '.join(tips)}`{later}; if it has not, repair that database with "
            "alembic-merge-heads instead of this rewrite")
    return lines


@action("alembic.linearize")
def linearize(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Re-point `down_revision` of revisions no database has applied, so the conflicting heads form one line."""
    order = args.get("order") or []
    if isinstance(order, str):
        order = [part for part in re.split(r"[\s,]+", order) if part]
    graph, texts, _ = _read_revisions(ctx, args)
    current = _current(ctx)
    try:
        plan = plan_linearize(graph, current, order, _branches(args))
    except GraphRefused as exc:
        return ActionResult(2, "", f"{exc}\n", data={"changed": False}, problems=[f"refused: {exc}"], refused=True)
    out = [f"heads before: {', '.join(plan.heads_before)}", *plan.notes]
    data: dict[str, Any] = {"changed": bool(plan.moves), "moves": [], "head": plan.head_after, "trunk": plan.trunk}
    if not plan.moves:
        return ActionResult(0, "\n".join(out) + "\n", data=data)
    # Every new text is parsed back and the graph rebuilt before any file is written.
    rewritten = {m.path: rewrite_down_revision(texts[m.path], m.new, m.path) for m in plan.moves}
    check = RevisionGraph(_reparse(rewritten.get(path, text), path) for path, text in texts.items())
    if ", ".join(check.heads()) != plan.head_after:
        raise GraphError(f"rewriting the files would give heads {', '.join(check.heads())}, not {plan.head_after}")
    data["other_databases"] = other_databases(graph, plan.moves, check.heads())
    out += data["other_databases"]
    diffs = []
    for move in plan.moves:
        ctx.target.write_file("backend", move.path, rewritten[move.path].encode("utf-8"))
        _drop_bytecode(ctx, move.path)
        out.append(f"moved {move.revision}: down_revision {', '.join(move.old) or 'None'} -> {', '.join(move.new)}"
                   f" ({move.path})")
        diffs.append(unified_diff(move.path, texts[move.path], rewritten[move.path]))
        data["moves"].append({"revision": move.revision, "path": move.path, "old": list(move.old),
                              "new": list(move.new)})
    applied = graph.applied(current)
    pending = [r for r in check.order() if r not in applied]
    out.append(f"heads now: {plan.head_after}; `alembic upgrade heads` applies {', '.join(pending)}")
    data["to_apply"] = pending
    return ActionResult(0, "\n".join(out) + "\n\n" + "".join(diffs), data=data)


def _reparse(text: str, path: str) -> Revision:
    revision = parse_revision(text, path)
    if revision is None:
        raise GraphError(f"{path}: the rewritten file defines no revision")
    return revision


def _drop_bytecode(ctx: RunContext, path: str) -> None:
    """Delete cached bytecode of a rewritten file: a same-size rewrite within a second can look unchanged."""
    stem = posixpath.splitext(posixpath.basename(path))[0]
    cache = posixpath.join(posixpath.dirname(path), "__pycache__")
    try:
        for pyc in ctx.target.list_files("backend", cache, f"{stem}.*.pyc"):
            ctx.target.delete_file("backend", pyc)
    except StepFailed:
        pass  # best effort: Python also checks the source's size and mtime


def redundant_rows(graph: RevisionGraph, current: Sequence[str]) -> list[str]:
    """Return the alembic_version rows that are ancestors of another row (the descendant carries them)."""
    known = [c for c in current if c in graph]
    return sorted({a for a in known for b in known if a != b and a in graph.ancestors(b)})


@action("alembic.prune-ancestor-rows")
def prune_ancestor_rows(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Delete alembic_version rows that are ancestors of another row; refuse when there is none."""
    graph, _, _ = _read_revisions(ctx, args)
    current = _current(ctx)
    doomed = redundant_rows(graph, current)
    if not doomed:
        why = f"no row of alembic_version ({', '.join(current) or 'empty'}) is an ancestor of another"
        return ActionResult(2, "", f"refused: {why}\n", data={"deleted": []}, problems=[f"refused: {why}"],
                            refused=True)
    _, rows, _ = ctx.database.query("DELETE FROM alembic_version WHERE version_num = ANY(%(rows)s) "
                                    "RETURNING version_num", {"rows": doomed})
    deleted = sorted(str(r[0]) for r in rows)
    kept = [c for c in current if c not in deleted]
    return ActionResult(0, "".join(f"deleted row {d}: an ancestor of {', '.join(kept)}\n" for d in deleted),
                        data={"deleted": deleted, "kept": kept})


@action("alembic.plan-stamp-head")
def plan_stamp_head(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Prove the database is at the single head although alembic_version names a revision no file has."""
    from runbook.frameworks.alembic.inspection import inspect_scripts

    scripts = inspect_scripts(ctx, compare=True)
    current = _current(ctx)
    known = {r.revision for r in scripts.revisions}
    unknown = [c for c in current if c not in known]
    refusals = []
    if not unknown:
        refusals.append(f"alembic_version ({', '.join(current) or 'empty'}) names no unknown revision")
    conflicts = scripts.kinds().conflicts
    if conflicts:
        refusals.append(f"heads {', '.join(conflicts[0])} conflict; merge or linearize them first")
    diffs, error = scripts.raw.get("schema_diffs"), scripts.raw.get("compare_error")
    if error:
        refusals.append(f"cannot compare the schema with the models: {error}")
    elif diffs is None:
        refusals.append("env.py gives no target_metadata: nothing proves which revision the schema is at")
    elif diffs:
        refusals.append(f"the schema differs from the models at head ({len(diffs)} differences, first: {diffs[0]})")
    lines = [f"alembic_version holds {', '.join(current) or 'nothing'}; head is {', '.join(scripts.heads)}"]
    if refusals:
        text = "\n".join([*lines, "refused, nothing was changed:", *[f"  - {r}" for r in refusals]]) + "\n"
        return ActionResult(2, text, data={"needed": False}, problems=[f"refused: {r}" for r in refusals],
                            refused=True)
    lines.append(f"the live schema matches the models exactly: stamping {', '.join(scripts.heads)} in place of "
                 f"{', '.join(unknown)}")
    return ActionResult(0, "\n".join(lines) + "\n", data={"needed": True, "head": ", ".join(scripts.heads),
                                                          "unknown": unknown})
