"""The command line: parse options, call the engine, print. The only module that prints, prompts or exits."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from runbook.errors import Interrupted, RunbookError

app = typer.Typer(
    name="runbook",
    help="Safe, repeatable, recorded database-migration repairs for Django and Alembic on PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

VarOption = Annotated[list[str] | None, typer.Option("--var", help="Set a playbook variable: KEY=VALUE.")]


class State:
    options: Any = None
    # Set by Ctrl-C or SIGTERM and cleared once a command has said so itself.
    interrupted: bool = False


state = State()


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
    from runbook.catalog import full_entry, project_playbook_dirs, quick_entry
    from runbook.errors import PlaybookError
    from runbook.registry import discover

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
    from runbook.engine import load_project_config
    from runbook.redact import MASK, is_secret_name
    from runbook.registry import find

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


def _print_plan(plan: Any, by_service: bool = False) -> None:
    from runbook.redact import Redactor, is_secret_name

    redactor = Redactor()
    for key, value in plan.variables.items():
        spec = plan.playbook.variables.get(key)
        if (spec and spec.secret) or is_secret_name(key):
            redactor.add(str(value))
    console.print(f"[bold]plan for {plan.playbook.name}[/bold]"
                  f"{'  [red](destructive)[/red]' if plan.destructive else ''}")
    for key, value in redactor.value(plan.variables).items():
        console.print(f"  var {key} = {escape(repr(value))}")
    for role, actions in (("step", plan.steps), ("check", plan.checks)):
        for i, a in enumerate(actions, 1):
            where = a.service or ("db (psycopg)" if a.kind == "sql" else "runbook")
            line = f"  {role} {i}. [{where}] {a.name}: {redactor.text(a.display())}"
            if a.when:
                line += f"  (when {a.when})"
            console.print(escape(line))
    if by_service:
        groups: dict[str, list[str]] = {}
        for a in [*plan.steps, *plan.checks]:
            where = a.service or ("db (psycopg)" if a.kind == "sql" else "runbook")
            groups.setdefault(where, []).append(redactor.text(a.display()))
        for where, lines in groups.items():
            console.print(f"[bold]{escape(where)}[/bold] would run:")
            for line in lines:
                console.print(escape(f"    {line}"))


@app.command()
def plan(name: str, var: VarOption = None) -> None:
    """Show what a run would do, with variables filled in; touches nothing."""
    from runbook.engine import prepare

    _, the_plan = prepare(state.options, name, var or [])
    _print_plan(the_plan)


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Playbook files to check.")]) -> None:
    """Check playbook files; print FILE:LINE: key: problem for each error."""
    from runbook.errors import InputError, PlaybookError, RenderError, VariableError
    from runbook.plan import build_plan
    from runbook.playbook import load_playbook
    from runbook.variables import resolve_variables

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

    from runbook.engine import diagnose as run_diagnosis

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


# The most of an unfinished output line the console holds back waiting for its newline.
PARTIAL_LIMIT = 64 * 1024


class _RunningStep:
    """The live status line of the step under way: spinner, step, service, seconds so far."""

    def __init__(self, data: dict[str, Any]):
        from rich.spinner import Spinner

        step = data["step"]
        self.label = f"{data['role']} {data['number']}/{data['total']} {step.name} [{step.service or step.kind}]"
        self.started = time.monotonic()
        self.spinner = Spinner("dots")

    def __rich__(self) -> Any:
        self.spinner.update(text=escape(f"{self.label} {time.monotonic() - self.started:.0f} s"))
        return self.spinner


class Progress:
    """Console side of the executor's events: plain lines, output indented under its step.

    On a terminal, a live status line shows the running step below its output.
    """

    def __init__(self, quiet_output: bool = False, live: bool | None = None, redactor: Any = None):
        from runbook.redact import Redactor

        self.quiet_output = quiet_output
        # The run fills it with its secrets as it learns them; every line printed here goes through it.
        self.redactor = redactor if redactor is not None else Redactor()
        # Output arrives in chunks that split lines (Django prints "Applying x..." then " OK").
        self.partial = {"stdout": "", "stderr": ""}
        self.role = "step"
        self.live = console.is_terminal if live is None else live
        self._status: Any = None
        from runbook.progress import TransferDisplay

        self.transfers = TransferDisplay(console, live=self.live)  # the snapshot's and a rollback's bar

    def _start_status(self, data: dict[str, Any]) -> None:
        from rich.live import Live

        self.close()
        self._status = Live(_RunningStep(data), console=console, refresh_per_second=4, transient=True)
        self._status.start()

    def _masked(self, text: str) -> str:
        return escape(self.redactor.text(text))

    def close(self) -> None:
        """Take the live status line away (the step ended, or the run stopped mid-step)."""
        self.transfers.close()
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _print_output(self, stream: str, text: str) -> None:
        style = "dim" if stream == "stdout" else "yellow"
        for line in text.splitlines():
            console.print(f"   | {self._masked(line)}", style=style)

    def _header(self, data: dict[str, Any]) -> None:
        step = data["step"]
        console.print(self._masked(f"-> {data['role']} {data['number']}/{data['total']} "
                             f"[{step.service or step.kind}] {step.name}"))

    def _flush(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self._print_output(stream, rest)
            self.partial[stream] = ""

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "stage":
            console.print(f"[bold]== {data['name']}[/bold]")
        elif kind == "note":
            console.print(f"   {self._masked(data['text'])}")
        elif kind == "transfer":
            self.transfers(data["transfer"])
        elif kind == "warning":
            self._flush()
            console.print(f"   [yellow]warning: {self._masked(data['text'])}[/yellow]")
        elif kind == "step-start":
            # A check's output is evidence for the report; the console shows only its verdict.
            self.role = data["role"]
            self._header(data)
            if self.live:
                self._start_status(data)
        elif kind == "output" and not self.quiet_output and self.role == "step":
            stream = data["stream"]
            text = self.partial[stream] + data["text"]
            complete, _, self.partial[stream] = text.rpartition("\n")
            if complete:
                self._print_output(stream, complete)
            if len(self.partial[stream]) > PARTIAL_LIMIT:
                # Output with no newline (binary, one huge line): print it in pieces, never hold it whole.
                self._print_output(stream, self.partial[stream])
                self.partial[stream] = ""
        elif kind == "step-end":
            self.close()
            self._flush()
            step = data["step"]
            if step.status == "skipped":  # a skipped step never started
                self._header(data)
            mark = {"ok": "[green]ok[/green]", "failed": "[red]FAILED[/red]", "skipped": "skipped"}.get(
                step.status, step.status)
            console.print(f"   {mark} ({step.duration:.2f} s){' ' + self._masked(step.note) if step.note else ''}")
            for problem in step.problems:
                console.print(f"   [red]- {self._masked(problem)}[/red]")


def _confirm(question: str) -> bool:
    """Ask y/N on the terminal; Ctrl-D or Ctrl-C at the prompt is a no, not an interrupted run."""
    try:
        return typer.confirm(question, default=False)
    except typer.Abort:
        console.print()  # the prompt line was left open
        return False


def _raise_interrupt(signum: int, frame: Any) -> None:
    state.interrupted = True
    raise KeyboardInterrupt


@app.command()
def run(
    name: Annotated[str, typer.Argument(help="Playbook name or file.")],
    var: VarOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm a destructive playbook.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would run; touch nothing.")] = False,
    report: Annotated[Path | None, typer.Option(help="Also copy the Markdown report here.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not echo command output.")] = False,
    rollback_on_failure: Annotated[bool, typer.Option(
        "--rollback-on-failure", help="When the run does not succeed, restore the whole snapshot, data too: "
                                      "writes made since the snapshot are lost.")] = False,
    rehearse: Annotated[bool, typer.Option(
        "--rehearse", help="Run it all on a throwaway copy of the database and files; change nothing real.")] = False,
) -> None:
    """Run a playbook: snapshot, steps, verify, report."""
    from runbook.engine import execute, prepare
    from runbook.errors import InputError, Refused
    from runbook.report import summary_lines

    if rehearse and (dry_run or rollback_on_failure):
        other = "--dry-run" if dry_run else "--rollback-on-failure"
        raise InputError(f"--rehearse cannot be combined with {other}",
                         hint="a rehearsal changes nothing real, so drop one of them")
    config, the_plan = prepare(state.options, name, var or [])
    if dry_run:
        _print_plan(the_plan, by_service=True)
        console.print("dry run: nothing was run, nothing was written")
        return
    if the_plan.destructive and not yes and not rehearse:
        if not sys.stdin.isatty():
            raise Refused(f"playbook {the_plan.playbook.name} is destructive and there is no terminal to confirm",
                          hint="pass --yes to run it")
        _print_plan(the_plan)
        if not _confirm(f"Run destructive playbook {the_plan.playbook.name}?"):
            raise Refused("not confirmed; nothing was run")
    real_command = ""
    if rehearse:
        from runbook.rehearsal import real_run_command

        real_command = real_run_command(sys.argv[1:], the_plan.destructive)
    from runbook.redact import Redactor

    redactor = Redactor()
    progress = Progress(quiet_output=quiet, redactor=redactor)
    try:
        result, report_path = execute(config, the_plan, state.options, on_event=progress,
                                      rollback_on_failure=rollback_on_failure, rehearse=rehearse,
                                      real_command=real_command, redactor=redactor)
    finally:
        progress.close()
    console.print()
    for line in summary_lines(result, redactor):
        console.print(escape(line))
    copy_failed = False
    if report_path is not None:
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


def _print_note(text: str) -> None:
    console.print(f"   {escape(text)}")


@app.command("snapshot")
def snapshot_cmd() -> None:
    """Take a snapshot now: database dump, history rows, migration files (listed as playbook "manual")."""
    from runbook.engine import load_project_config, make_target
    from runbook.progress import TransferDisplay
    from runbook.snapshot import snapshot_now, summary

    config = load_project_config(state.options)
    display = TransferDisplay(console)
    try:
        manifest = snapshot_now(config, make_target(config, state.options), progress=_print_note, on_transfer=display)
    finally:
        display.close()
    facts = summary(manifest)
    console.print(f"snapshot {facts['id']} written: {facts['size']}"
                  + (f", {facts['tables']}" if "tables" in facts else ""))
    console.print(f"path: {facts['path']}")
    console.print(f"restore it with: runbook restore {facts['id']}")


@app.command("snapshots")
def snapshots_cmd() -> None:
    """List the snapshots of this project, oldest first."""
    from runbook.engine import load_project_config
    from runbook.snapshot import human_size, list_snapshots

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


@app.command()
def restore(
    snapshot_id: Annotated[str, typer.Argument(metavar="ID", help="Snapshot id, as `runbook snapshots` lists it.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm: the database and migration files are "
                                                          "replaced by the snapshot.")] = False,
    only: Annotated[str | None, typer.Option(
        "--only", help="Restore only these parts, comma-separated: database, history, files. "
                       "`--only history,files` puts back the history rows and migration files, no data.")] = None,
) -> None:
    """Put a snapshot back: database, migration files; then check them against its manifest."""
    from runbook.engine import load_project_config, make_target
    from runbook.errors import Refused, VerifyFailed
    from runbook.restore import parse_only, restore_now
    from runbook.snapshot import load_manifest, summary

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
        if not _confirm(f"Replace {what} with snapshot {snapshot_id}? "
                        + ("Everything written since is lost" if whole else "The data rows are not touched")):
            raise Refused("not confirmed; nothing was restored")
    from runbook.progress import TransferDisplay

    display = TransferDisplay(console)
    try:
        outcome = restore_now(config, make_target(config, state.options), snapshot_id, progress=_print_note,
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
