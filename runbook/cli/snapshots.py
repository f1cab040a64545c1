"""The snapshot commands: take one now, list them, put one back. Registered on the app by `cli.app`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from runbook.cli.console import confirm, console, err_console, print_note
from runbook.cli.state import state

# Every engine and artifacts import below is inside its command: `runbook --help` and `list` load this
# module too, and psycopg, docker and the snapshot code cost start-up they do not need.


def take() -> None:
    """Take a snapshot now: database dump, history rows, migration files (listed as playbook "manual")."""
    from runbook.artifacts.snapshot import snapshot_now, summary
    from runbook.cli.transfers import TransferDisplay
    from runbook.engine.prepare import load_project_config, make_target

    config = load_project_config(state.options)
    display = TransferDisplay(console)
    try:
        manifest = snapshot_now(config, make_target(config, state.options), progress=print_note,
                                on_transfer=display)
    finally:
        display.close()
    facts = summary(manifest)
    console.print(f"snapshot {facts['id']} written: {facts['size']}"
                  + (f", {facts['tables']}" if "tables" in facts else ""))
    console.print(f"path: {facts['path']}")
    console.print(f"restore it with: runbook restore {facts['id']}")


def list_all() -> None:
    """List the snapshots of this project, oldest first."""
    from runbook.artifacts.snapshot import human_size, list_snapshots
    from runbook.engine.prepare import load_project_config

    config = load_project_config(state.options)
    found = list_snapshots(config.artifacts_dir())
    if not found:
        console.print(f"no snapshots in {config.artifacts_dir() / 'snapshots'}")
        return
    # Plain columns, never cut: the id is what people copy into `runbook restore`.
    rows = [("id", "time", "playbook", "size")]
    for manifest in found:
        size = "damaged manifest" if manifest.get("damaged") else human_size(
            sum(p.get("size", 0) for p in manifest.get("parts", [])))
        rows.append((str(manifest.get("id")), str(manifest.get("created", "?")), str(manifest.get("playbook", "?")),
                     size))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        console.print(escape(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}"))


def restore(
    snapshot_id: Annotated[str, typer.Argument(metavar="ID", help="Snapshot id, as `runbook snapshots` lists it.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm: the database and migration files are "
                                                          "replaced by the snapshot.")] = False,
    only: Annotated[str | None, typer.Option(
        "--only", help="Restore only these parts, comma-separated: database, history, files. "
                       "`--only history,files` puts back the history rows and migration files, no data.")] = None,
) -> None:
    """Put a snapshot back: database, migration files; then check them against its manifest."""
    from runbook.artifacts.restore import parse_only, restore_now
    from runbook.artifacts.snapshot import load_manifest, summary
    from runbook.engine.prepare import load_project_config, make_target
    from runbook.errors import Refused, VerifyFailed

    parts = parse_only(only)
    config = load_project_config(state.options)
    _, manifest = load_manifest(config.artifacts_dir(), snapshot_id)
    whole = "database" in parts
    what = "the database and migration files" if whole else " and ".join(
        {"history": "the history rows", "files": "the migration files"}[p] for p in ("history", "files") if p in parts)
    if not yes:
        if not sys.stdin.isatty():
            raise Refused(f"restoring snapshot {snapshot_id} replaces {what} and there is no terminal "
                          "to confirm", hint="pass --yes to restore it")
        for key, value in summary(manifest).items():
            console.print(escape(f"  {key}: {value}"))
        if not confirm(f"Replace {what} with snapshot {snapshot_id}? "
                       + ("Everything written since is lost" if whole else "The data rows are not touched")):
            raise Refused("not confirmed; nothing was restored")
    from runbook.cli.transfers import TransferDisplay

    display = TransferDisplay(console)
    try:
        outcome = restore_now(config, make_target(config, state.options), snapshot_id, progress=print_note,
                              only=parts, on_transfer=display)
    finally:
        display.close()
    for note in outcome.notes:
        console.print(f"   note: {escape(note)}")
    console.print(escape(f"restored: {'; '.join(outcome.restored) or 'nothing'}"))
    if outcome.problems:
        for problem in outcome.problems:
            err_console.print(f"   [red]- {escape(problem)}[/red]")
        raise VerifyFailed(f"snapshot {snapshot_id} was restored but differs from its manifest: "
                           f"{len(outcome.problems)} problem(s)")
    console.print(escape(f"checked: {'; '.join(outcome.checked)}"))
    if whole:
        console.print(f"the data is back as of snapshot {escape(snapshot_id)}")
    else:
        console.print(escape(f"{what} are back as of snapshot {snapshot_id}; the data rows were not touched"))
