"""Alembic's checks as actions: usable as steps and as verify checks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runbook.frameworks.actions import ActionResult, action, allow_keys, verdict
from runbook.frameworks.alembic import inspection as alembic
from runbook.frameworks.backend import backend_exec

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext


@action("alembic.single-head")
def alembic_single_head(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when the revision scripts have more than one head ("Multiple head revisions are present")."""
    allow_keys(args, "config", "python")
    scripts = alembic.inspect_scripts(ctx, config=args.get("config"), python=args.get("python"))
    return verdict(alembic.head_problems(scripts), f"one head: {', '.join(scripts.heads)}",
                    {"heads": scripts.heads})


@action("alembic.at-head")
def alembic_at_head(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when the version table is not exactly at the head revision(s) of the scripts."""
    allow_keys(args, "config", "python", "version_table")
    table = str(args.get("version_table", "alembic_version"))
    scripts = alembic.inspect_scripts(ctx, config=args.get("config"), python=args.get("python"))
    current = alembic.current_versions(ctx.database, table)
    return verdict(alembic.at_head_problems(scripts, current, table),
                    f"the database is at head {', '.join(scripts.heads)}",
                    {"heads": scripts.heads, "current": current})


@action("alembic.schema-matches")
def alembic_schema_matches(ctx: RunContext, args: dict[str, Any]) -> ActionResult:
    """Fail when `alembic check` finds the live schema differs from the models (env.py's target_metadata)."""
    allow_keys(args)
    result = backend_exec(ctx, [*ctx.config.backend.alembic, "check"])
    output = (result.stdout + result.stderr).strip()
    if result.exit_code == 0:
        return ActionResult(0, "the schema matches the models: alembic check found nothing to generate\n",
                            data={"ok": True, "checked": True})
    if "MetaData object" in output:
        # No models to compare with (target_metadata = None): say so rather than fail every repair.
        return ActionResult(0, "note: env.py gives no target_metadata, so the schema cannot be compared with "
                               "models; only the revisions were checked\n", data={"ok": True, "checked": False})
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    problems = [f"alembic check: {line}" for line in lines[-5:]] or [f"alembic check exited {result.exit_code}"]
    return ActionResult(1, output + "\n", data={"ok": False, "checked": True}, problems=problems)
