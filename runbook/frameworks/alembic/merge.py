"""What the Alembic heads are and how to join them: `alembic.heads`, `alembic.merge-needed`, `alembic.merge`.

The version files are read through the run's target, the applied revisions (`alembic_version`) through
its database; `alembic merge` runs in the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runbook.frameworks.actions import ActionResult, action
from runbook.frameworks.alembic.graph import RevisionGraph, summarize
from runbook.frameworks.alembic.inspection import current_versions
from runbook.frameworks.alembic.linearize import named_branches, nothing_to_do, preview_linearize
from runbook.frameworks.alembic.version_files import read_revisions
from runbook.frameworks.backend import backend_exec

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext


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


@action("alembic.heads")
def heads(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Report the heads of the version files, their kinds and where the database is; check with `expect: json:`."""
    graph, _, _ = read_revisions(ctx, args)
    facts = summarize(graph, current_versions(ctx.database) or [])
    return ActionResult(0, _describe(graph, facts), data=facts)


@action("alembic.merge-needed")
def merge_needed(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Say whether heads conflict, or `branches` names heads to join (`needed`); exit 0 either way."""
    graph, _, _ = read_revisions(ctx, args)
    facts = summarize(graph, current_versions(ctx.database) or [], named_branches(args))
    facts["needed"] = bool(facts["join"])
    if facts["needed"]:
        verdict = "".join(f"to join: {', '.join(group)}\n" for group in facts["join"])
        if facts["intentional"] and not named_branches(args):
            verdict += f"never joined (intentional): {', '.join(facts['intentional'])}\n"
        if args.get("preview") == "linearize":
            verdict += preview_linearize(graph, facts["current"], args)
    else:
        verdict = f"{nothing_to_do(graph, facts['heads'], graph.kinds())}; the repair steps are skipped\n"
    return ActionResult(0, _describe(graph, facts) + verdict, data=facts)


@action("alembic.merge")
def merge(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Write one merge revision per group of heads to join (`alembic merge -m MESSAGE HEAD...`)."""
    graph, _, _ = read_revisions(ctx, args)
    facts = summarize(graph, current_versions(ctx.database) or [], named_branches(args))
    message = str(args.get("message") or "merge heads")
    out, merged = [], []
    for group in facts["join"]:
        result = backend_exec(ctx, [*ctx.config.backend.alembic, "merge", "-m", message, *group])
        out.append(f"$ alembic merge -m {message!r} {' '.join(group)}\n{result.stdout}{result.stderr}")
        if result.exit_code != 0:
            return ActionResult(result.exit_code, "".join(out), data={"merged": merged})
        merged.append(group)
    if facts["intentional"] and not named_branches(args):
        out.append(f"left alone (intentional): {', '.join(facts['intentional'])}\n")
    return ActionResult(0, "".join(out), data={"merged": merged})

