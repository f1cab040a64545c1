"""The terminal: the consoles, the plan as printed, y/N questions, and the live progress of a run.

Every line goes through rich with markup escaped; every line that can hold a secret goes through a Redactor.
"""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_plan(plan: Any, by_service: bool = False) -> None:
    """Print the plan step by step, secrets masked; by_service adds what each service would run."""
    # Imported here: `--help` and `list` import this module and need no redaction.
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


def print_note(text: str) -> None:
    """Print a progress line of a command that is not a run (snapshot, restore), indented under it."""
    console.print(f"   {escape(text)}")


def confirm(question: str) -> bool:
    """Ask y/N on the terminal; Ctrl-D or Ctrl-C at the prompt is a no, not an interrupted run."""
    try:
        return typer.confirm(question, default=False)
    except typer.Abort:
        console.print()  # the prompt line was left open
        return False


# The most of an unfinished output line the console holds back waiting for its newline.
PARTIAL_LIMIT = 64 * 1024


class _RunningStep:
    """The live status line of the step under way: spinner, step, service, seconds so far."""

    def __init__(self, data: dict[str, Any]):
        from rich.spinner import Spinner  # imported here: only a run on a terminal shows one

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
        from runbook.redact import Redactor  # imported here: like print_plan's, not needed by `--help`

        self.quiet_output = quiet_output
        # The run fills it with its secrets as it learns them; every line printed here goes through it.
        self.redactor = redactor if redactor is not None else Redactor()
        # Output arrives in chunks that split lines (Django prints "Applying x..." then " OK").
        self.partial = {"stdout": "", "stderr": ""}
        self.role = "step"
        self.live = console.is_terminal if live is None else live
        self._status: Any = None
        from runbook.cli.transfers import TransferDisplay

        self.transfers = TransferDisplay(console, live=self.live)  # the snapshot's and a rollback's bar

    def _start_status(self, data: dict[str, Any]) -> None:
        from rich.live import Live  # imported here: only a run on a terminal shows one

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
            mark = {"ok": "[green]ok[/green]", "failed": "[red]FAILED[/red]", "skipped": "skipped",
                    "not-run": "not run"}.get(step.status, step.status)
            console.print(f"   {mark} ({step.duration:.2f} s){' ' + self._masked(step.note) if step.note else ''}")
            for problem in step.problems:
                console.print(f"   [red]- {self._masked(problem)}[/red]")
