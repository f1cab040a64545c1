"""Repairs of the version table (`alembic_version`) alone, the version files untouched.

`alembic.prune-ancestor-rows` deletes rows another row already implies; `alembic.plan-stamp-head` proves
that a database whose row names a revision no file has is at the head, before a playbook stamps it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runbook.frameworks.actions import ActionResult, action, refuse
from runbook.frameworks.alembic.graph import RevisionGraph
from runbook.frameworks.alembic.inspection import current_versions, inspect_scripts
from runbook.frameworks.alembic.version_files import read_revisions

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext


def redundant_rows(graph: RevisionGraph, current: Sequence[str]) -> list[str]:
    """Return the alembic_version rows that are ancestors of another row (the descendant carries them)."""
    known = [c for c in current if c in graph]
    return sorted({a for a in known for b in known if a != b and a in graph.ancestors(b)})


@action("alembic.prune-ancestor-rows")
def prune_ancestor_rows(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Delete alembic_version rows that are ancestors of another row; refuse when there is none."""
    graph, _, _ = read_revisions(ctx, args)
    current = current_versions(ctx.database) or []
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
    scripts = inspect_scripts(ctx, compare=True)
    current = current_versions(ctx.database) or []
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
        return refuse(lines, refusals, {"needed": False})
    lines.append(f"the live schema matches the models exactly: stamping {', '.join(scripts.heads)} in place of "
                 f"{', '.join(unknown)}")
    return ActionResult(0, "\n".join(lines) + "\n", data={"needed": True, "head": ", ".join(scripts.heads),
                                                          "unknown": unknown})
