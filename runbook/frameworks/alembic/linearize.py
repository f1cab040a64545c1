"""Linearize conflicting Alembic heads: re-point the `down_revision` of revisions no database has applied.

The plan is pure and made before any file changes (`plan_linearize`); the action (`alembic.linearize`)
rewrites the files through the run's target only once the rewritten files parse back into one line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runbook.frameworks.actions import ActionResult, action
from runbook.frameworks.alembic.graph import MAIN, GraphError, GraphRefused, HeadKinds, RevisionGraph
from runbook.frameworks.alembic.inspection import current_versions
from runbook.frameworks.alembic.version_files import read_revisions, reparse, rewrite_down_revision, write_version_file
from runbook.frameworks.diff import unified_diff

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext


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
        return LinearizePlan([], heads, heads[0] if len(heads) == 1 else "", notes=[nothing_to_do(graph, heads, kinds)])
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
        plan.notes.append(nothing_to_do(graph, heads, kinds))
    return plan


def _refuse_intentional(graph: RevisionGraph, kinds: HeadKinds, plan: LinearizePlan) -> None:
    """Refuse an `order` that moves a revision of an intentional branch (`branches` must name it)."""
    for move in plan.moves:
        for head in kinds.intentional():
            if kinds.kinds[head] != MAIN and move.revision in graph.ancestors(head):
                raise GraphRefused(f"refusing to move {move.revision}: it is on the intentional branch of "
                                   f"{kinds.why[head]}; name the branches to join with --var branches=...")


def nothing_to_do(graph: RevisionGraph, heads: list[str], kinds: HeadKinds | None = None) -> str:
    """Say why there is nothing to join: no revisions, one head, or only intentional heads."""
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


def named_branches(args: dict[str, Any]) -> list[str]:
    """Read `branches`: the heads (or branch labels) to join, a list or one string."""
    value = args.get("branches") or []
    if isinstance(value, str):
        value = re.split(r"[\s,]+", value)
    return [str(v) for v in value if str(v).strip()]


def _order(args: dict[str, Any]) -> list[Any]:
    """Read `order`: the revisions in the order to put them, a list or one string."""
    order = args.get("order") or []
    if isinstance(order, str):
        order = [part for part in re.split(r"[\s,]+", order) if part]
    return order


def preview_linearize(graph: RevisionGraph, current: Sequence[str], args: dict[str, Any]) -> str:
    """Say, before any file changes, which revisions linearize will move and what other databases need."""
    try:
        plan = plan_linearize(graph, current, _order(args), named_branches(args))
    except GraphError as exc:
        return f"linearize will refuse: {exc}\n"
    if not plan.moves:
        return ""
    final = graph.relinked({m.revision: m.new for m in plan.moves})
    return "plan: " + "\nplan: ".join(other_databases(graph, plan.moves, final.heads())) + "\n"


@action("alembic.linearize")
def linearize(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Re-point `down_revision` of revisions no database has applied, so the conflicting heads form one line."""
    graph, texts, _ = read_revisions(ctx, args)
    current = current_versions(ctx.database) or []
    try:
        plan = plan_linearize(graph, current, _order(args), named_branches(args))
    except GraphRefused as exc:
        return ActionResult(2, "", f"{exc}\n", data={"changed": False}, problems=[f"refused: {exc}"], refused=True)
    out = [f"heads before: {', '.join(plan.heads_before)}", *plan.notes]
    data: dict[str, Any] = {"changed": bool(plan.moves), "moves": [], "head": plan.head_after, "trunk": plan.trunk}
    if not plan.moves:
        return ActionResult(0, "\n".join(out) + "\n", data=data)
    # Every new text is parsed back and the graph rebuilt before any file is written.
    rewritten = {m.path: rewrite_down_revision(texts[m.path], m.new, m.path) for m in plan.moves}
    check = RevisionGraph(reparse(rewritten.get(path, text), path) for path, text in texts.items())
    if ", ".join(check.heads()) != plan.head_after:
        raise GraphError(f"rewriting the files would give heads {', '.join(check.heads())}, not {plan.head_after}")
    data["other_databases"] = other_databases(graph, plan.moves, check.heads())
    out += data["other_databases"]
    diffs = []
    for move in plan.moves:
        write_version_file(ctx, move.path, rewritten[move.path])
        out.append(f"moved {move.revision}: down_revision {', '.join(move.old) or 'None'} -> {', '.join(move.new)}"
                   f" ({move.path})")
        diffs.append(unified_diff(move.path, texts[move.path], rewritten[move.path], context=2))
        data["moves"].append({"revision": move.revision, "path": move.path, "old": list(move.old),
                              "new": list(move.new)})
    applied = graph.applied(current)
    pending = [r for r in check.order() if r not in applied]
    out.append(f"heads now: {plan.head_after}; `alembic upgrade heads` applies {', '.join(pending)}")
    data["to_apply"] = pending
    return ActionResult(0, "\n".join(out) + "\n\n" + "".join(diffs), data=data)

