"""The command line: parse options, call the engine, print. The only module that prints, prompts or exits."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from runbook.cli import snapshots
from runbook.cli.console import Progress, confirm, console, err_console, print_plan
from runbook.cli.state import state
from runbook.errors import Interrupted, RunbookError

app = typer.Typer(
    name="runbook",
    help="Safe, repeatable, recorded database-migration repairs for Django and Alembic on PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Imports inside the commands keep `runbook --help` and `list` fast: jinja2, psycopg, docker and pydantic
# models load only for the commands that use them.
VarOption = Annotated[list[str] | None, typer.Option("--var", help="Set a playbook variable: KEY=VALUE.")]


@app.callback()
def global_options(
    project_dir: Annotated[Path, typer.Option(help="Directory holding the compose file and runbook.yml.")] = Path("."),
    target: Annotated[str | None, typer.Option(help="Where steps run: compose or local.")] = None,
    compose_file: Annotated[str | None, typer.Option(help="Compose file (default: as Compose finds it).")] = None,
    project_name: Annotated[str | None, typer.Option(help="Compose project name.")] = None,
    db_service: Annotated[str | None, typer.Option(help="Compose service of the database (default: db).")] = None,
    backend_service: Annotated[str | None, typer.Option(
        help="Compose service of the app (default: backend).")] = None,
) -> None:
    from runbook.options import Options

    if target not in (None, "compose", "local"):
        raise typer.BadParameter("must be compose or local", param_hint="--target")
    state.options = Options(project_dir=project_dir, target=target, compose_file=compose_file,
                            project_name=project_name, db_service=db_service, backend_service=backend_service)


@app.command("list")
def list_playbooks() -> None:
    """List the playbooks: built-in and the project's own."""
    from runbook.cli.catalog import full_entry, project_playbook_dirs, quick_entry
    from runbook.errors import PlaybookError
    from runbook.playbook.registry import discover

    refs = discover(project_playbook_dirs(state.options)).values()
    table = Table(box=None)
    # A name is what people type into `runbook run`: never cut or wrapped; the description takes what is left.
    table.add_column("name", no_wrap=True, min_width=max((len(ref.name) for ref in refs), default=4))
    table.add_column("framework", no_wrap=True)
    table.add_column("destructive", no_wrap=True)
    table.add_column("what it does", ratio=1)
    table.add_column("from", no_wrap=True)
    for ref in refs:
        try:
            pb = quick_entry(ref.path) if ref.origin == "built-in" else full_entry(ref.path)
            table.add_row(ref.name, pb.framework, "yes" if pb.destructive else "no", escape(pb.summary), ref.origin)
        except PlaybookError as exc:
            table.add_row(ref.name, "?", "?", f"[red]invalid: {escape(str(exc))}[/red]", ref.origin)
    console.print(table)


@app.command()
def show(name: Annotated[str, typer.Argument(help="Playbook name or file.")]) -> None:
    """Describe a playbook: what it does, its variables, steps and checks."""
    from runbook.engine.prepare import load_project_config
    from runbook.playbook.registry import find
    from runbook.redact import MASK, is_secret_name

    config = load_project_config(state.options)
    pb = find(name, config.extra_playbook_dirs())
    console.print(f"[bold]{pb.name}[/bold]  ({pb.framework}{', destructive' if pb.destructive else ''})")
    console.print(escape(pb.description.strip()))
    console.print(f"source: {pb.source}")
    if pb.fits != "any":
        console.print(escape(f"fits: {', '.join(pb.fits)} (diagnose's findings, checked before the snapshot)"))
    if pb.variables:
        table = Table("variable", "type", "default", "required", "help", box=None, title="variables",
                      title_justify="left")
        for key, var in pb.variables.items():
            secret = var.secret or is_secret_name(key)
            default = MASK if secret and var.default not in (None, "") else repr(var.default)
            table.add_row(key, var.type, default, "yes" if var.required else "no", escape(var.help))
        console.print(table)
    console.print("steps:")
    for i, step in enumerate(pb.steps, 1):
        console.print(escape(f"  {i}. {step.name} [{step.service or step.kind}]"))
    if pb.verify:
        console.print("verify:")
        for i, check in enumerate(pb.verify, 1):
            console.print(f"  {i}. {escape(check.name)}")


@app.command()
def plan(name: str, var: VarOption = None) -> None:
    """Show what a run would do, with variables filled in; touches nothing."""
    from runbook.engine.prepare import prepare

    _, the_plan = prepare(state.options, name, var or [])
    print_plan(the_plan)


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Playbook files to check.")]) -> None:
    """Check playbook files; print FILE:LINE: key: problem for each error."""
    from runbook.errors import InputError, PlaybookError, RenderError, VariableError
    from runbook.playbook.model import load_playbook
    from runbook.playbook.plan import build_plan
    from runbook.playbook.variables import resolve_variables

    bad = 0
    for path in files:
        try:
            pb = load_playbook(path)
            # Rendering with defaults catches unknown names in templates.
            defaults = {k: v.default for k, v in pb.variables.items()}
            values = resolve_variables(pb.model_copy(update={"variables": {
                k: v.model_copy(update={"required": False}) for k, v in pb.variables.items()}}),
                {k: str(v) for k, v in defaults.items() if v is not None and not isinstance(v, list)})
            build_plan(pb, values)
            console.print(f"{path}: ok")
        except PlaybookError as exc:
            bad += 1
            for line in exc.problems or [str(exc)]:
                err_console.print(escape(line))
        except RenderError as exc:
            bad += 1
            err_console.print(escape(str(exc)))  # it starts with FILE:LINE already
        except VariableError as exc:
            bad += 1
            # Only a default can be wrong here: point at it.
            key = ("variables", exc.variable or "", "default")
            line = pb.lines.get(key) or pb.lines.get(key[:2]) or 1
            err_console.print(escape(f"{path}:{line}: {'.'.join(key)}: {exc}"))
        except InputError as exc:
            bad += 1
            err_console.print(escape(f"{path}: {exc}"))
    if bad:
        raise typer.Exit(2)


@app.command()
def diagnose(json_output: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False) -> None:
    """Say what is wrong with the migration history and the exact command that repairs it; change nothing."""
    import json

    from runbook.engine.prepare import diagnose as run_diagnosis

    framework, findings, facts = run_diagnosis(state.options)
    if json_output:
        print(json.dumps({"framework": framework, "target": facts, "healthy": not findings,
                          "findings": [f.as_dict() for f in findings]}, indent=2))
    elif not findings:
        console.print(f"healthy: no finding ({framework}, {facts.get('database', '')})")
    else:
        table = Table(box=None, title_justify="left",
                      title=f"{len(findings)} finding(s), most serious first ({framework})")
        table.add_column("#")
        table.add_column("finding", ratio=2)
        # Migration names are the evidence: folded onto the next line, never cut with an ellipsis.
        table.add_column("evidence", ratio=3, overflow="fold")
        table.add_column("fix", no_wrap=True)
        for number, finding in enumerate(findings, 1):
            evidence = finding.evidence[:4] + ([f"... and {len(finding.evidence) - 4} more"]
                                               if len(finding.evidence) > 4 else [])
            table.add_row(str(number), escape(f"{finding.kind}: {finding.title}"), escape("\n".join(evidence)),
                          escape(finding.playbook or finding.advice))
        console.print(table)
        # The commands below the table, each alone on its line: a table cell would wrap them.
        commands = [f.command for f in findings if f.command]
        if commands:
            console.print("to repair, run (the most serious first):")
            for line in dict.fromkeys(commands):
                console.print(escape(line), style="bold", overflow="ignore", crop=False)
    if findings:
        raise typer.Exit(3)


def _raise_interrupt(signum: int, frame: Any) -> None:
    state.interrupted = True
    raise KeyboardInterrupt


@app.command()
def run(
    name: Annotated[str, typer.Argument(help="Playbook name or file.")],
    var: VarOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm a destructive playbook.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Go through the run with a target that records what would run; touch nothing.")] = False,
    report: Annotated[Path | None, typer.Option(
        help="Also copy the Markdown report here (a dry run's report is kept only here).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not echo command output.")] = False,
    rollback_on_failure: Annotated[bool, typer.Option(
        "--rollback-on-failure", help="When the run does not succeed, restore the whole snapshot, data too: "
                                      "writes made since the snapshot are lost.")] = False,
    rehearse: Annotated[bool, typer.Option(
        "--rehearse", help="Run it all on a throwaway copy of the database and files; change nothing real.")] = False,
) -> None:
    """Run a playbook: snapshot, steps, verify, report."""
    from runbook.artifacts.report import summary_lines
    from runbook.engine.prepare import dry_run as run_dry
    from runbook.engine.prepare import execute, prepare
    from runbook.errors import InputError, Refused
    from runbook.redact import Redactor

    if rehearse and (dry_run or rollback_on_failure):
        other = "--dry-run" if dry_run else "--rollback-on-failure"
        raise InputError(f"--rehearse cannot be combined with {other}",
                         hint="a rehearsal changes nothing real, so drop one of them")
    config, the_plan = prepare(state.options, name, var or [])
    if dry_run:
        print_plan(the_plan, by_service=True)
    elif the_plan.destructive and not yes and not rehearse:
        if not sys.stdin.isatty():
            raise Refused(f"playbook {the_plan.playbook.name} is destructive and there is no terminal to confirm",
                          hint="pass --yes to run it")
        print_plan(the_plan)
        if not confirm(f"Run destructive playbook {the_plan.playbook.name}?"):
            raise Refused("not confirmed; nothing was run")
    real_command = ""
    if rehearse:
        from runbook.engine.rehearsal import real_run_command  # only a rehearsal quotes the real command

        real_command = real_run_command(sys.argv[1:], the_plan.destructive)
    redactor = Redactor()
    progress = Progress(quiet_output=quiet, redactor=redactor)
    try:
        if dry_run:
            result, report_path = run_dry(config, the_plan, on_event=progress, redactor=redactor, report=report)
        else:
            result, report_path = execute(config, the_plan, state.options, on_event=progress,
                                          rollback_on_failure=rollback_on_failure, rehearse=rehearse,
                                          real_command=real_command, redactor=redactor)
    finally:
        progress.close()
    console.print()
    for line in summary_lines(result, redactor):
        console.print(escape(line))
    copy_failed = False
    if dry_run:
        copy_failed = report is not None and report_path is None
        _say_dry_run_changed_nothing(report_path, report)
    elif report_path is not None:
        console.print(f"report: {report_path}")
        if report is not None:
            copy_failed = not _copy_report(report_path, report)
    # After "nothing to do" there is no real run to suggest.
    if rehearse and result.exit_code == 0 and any(step.status != "skipped" for step in result.steps):
        console.print("the real run:")
        console.print(f"  {escape(redactor.text(real_command))}", style="bold")
    if result.exit_code:
        err_console.print(f"runbook: error: {escape(redactor.text(result.error or result.status))}")
        state.interrupted = False  # said in the line above
        raise typer.Exit(result.exit_code)
    if copy_failed:
        raise typer.Exit(2)


def _say_dry_run_changed_nothing(report_path: Path | None, asked: Path | None) -> None:
    """End a dry run with what it did not do; its report, kept only where --report asked, is all it wrote."""
    if report_path is not None:
        console.print("dry run: nothing was run, nothing was changed; "
                      f"the only file written is the report: {escape(str(report_path))}")
        return
    console.print("dry run: nothing was run, nothing was changed, nothing was written")
    if asked is not None:
        err_console.print(f"runbook: error: cannot write the dry run's report to {escape(str(asked))} "
                          "(the reason is in the note above)")


def _copy_report(report_path: Path, dest: Path) -> bool:
    """Copy the report for --report, owner-only like the original; say so in one line when it cannot."""
    from runbook.targets.base import create_output_file

    try:
        with create_output_file(dest) as sink:
            sink.write(report_path.read_bytes())
    except OSError as exc:
        err_console.print(f"runbook: error: cannot copy the report to {escape(str(dest))}: {exc.strerror or exc} "
                          f"(the report is still at {escape(str(report_path))})")
        return False
    console.print(f"report copied to {escape(str(dest))}")
    return True


# Defined with the other snapshot commands; registered here, after `run`, to keep the order `--help` lists.
app.command("snapshot")(snapshots.take)
app.command("snapshots")(snapshots.list_all)
app.command("restore")(snapshots.restore)


def main() -> None:
    """Entry point: the one place errors become an exit code and one line."""
    # SIGTERM stops every command like Ctrl-C does: exit 130, the report written, no lock left.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_interrupt)
    try:
        # Without standalone mode, a `typer.Exit` raised by a command comes back as the return value.
        code = app(standalone_mode=False)
    except RunbookError as exc:
        if os.environ.get("RUNBOOK_TRACEBACK"):
            raise
        if getattr(exc, "problems", None) and len(exc.problems) > 1:
            for line in exc.problems:
                err_console.print(escape(line))
        else:
            err_console.print(f"runbook: error: {escape(str(exc))}")
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("runbook: aborted")
        sys.exit(Interrupted.exit_code)
    except KeyboardInterrupt:
        err_console.print("runbook: interrupted")
        sys.exit(Interrupted.exit_code)
    except Exception as exc:  # click usage errors and the like
        if isinstance(exc, _usage_errors()):
            exc.show()
            sys.exit(2)
        if os.environ.get("RUNBOOK_TRACEBACK"):
            raise
        # A bug in runbook: one line, not a traceback; the run's report was written before this.
        message = " ".join(str(exc).split())
        err_console.print(f"runbook: internal error: {escape(type(exc).__name__)}: {escape(message)} "
                          "(set RUNBOOK_TRACEBACK=1 for details)")
        sys.exit(1)
    if state.interrupted and code == Interrupted.exit_code:
        # typer turns a KeyboardInterrupt that leaves a command into a silent exit 130.
        err_console.print("runbook: interrupted")
        sys.exit(Interrupted.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_errors() -> tuple[type[Exception], ...]:
    # Recent typer vendors click as `typer._click`; its errors derive from `typer.TyperException`.
    kinds: list[type[Exception]] = [k for k in (getattr(typer, "TyperException", None),) if k]
    try:
        import click

        kinds.append(click.ClickException)
    except ImportError:
        pass
    return tuple(kinds)
