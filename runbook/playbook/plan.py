"""Render a playbook with its variables into a plan: plain data, computed before anything runs.

`runbook plan` prints it, `--dry-run` shows it service by service, and the executor runs it.
Templates that read a kept output (`kept.NAME`) are rendered when the run reaches them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbook.errors import RenderError
from runbook.playbook.model import Action, Expect, Playbook
from runbook.playbook.render import (
    check_names,
    check_shell_template,
    needs_runtime,
    render_argument,
    render_native,
    render_text,
)

COMMAND_KINDS = ("run", "manage", "alembic", "shell")
# `run: [sh, -c, SCRIPT]` hands SCRIPT to a shell: it is rendered like a `shell:` step, values quoted.
SHELLS = frozenset({"sh", "bash", "dash"})


@dataclass(frozen=True)
class Commands:
    """How the backend runs its framework tools (from runbook.yml)."""

    manage: tuple[str, ...] = ("python", "manage.py")
    alembic: tuple[str, ...] = ("alembic",)

    @classmethod
    def from_backend(cls, backend: Any) -> Commands:
        """Take the commands from runbook.yml's `backend:` settings."""
        return cls(manage=tuple(backend.manage), alembic=tuple(backend.alembic))


@dataclass
class PlannedAction:
    """One step or check with everything rendered that can be rendered before the run."""

    name: str
    kind: str
    service: str | None
    argv: list[str] | None = None
    sql: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    identifiers: dict[str, str] = field(default_factory=dict)
    action: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    timeout: float | None = None
    when: str | None = None
    keep: str | None = None
    parse: str = "text"
    expect: Expect = field(default_factory=Expect)
    description: str = ""
    # Set when some part reads kept outputs: the executor renders `source` again at run time.
    deferred: bool = False
    source: Action | None = field(default=None, repr=False)

    def display(self) -> str:
        """Return the command as a person would type it."""
        import shlex

        if self.argv is not None:
            return shlex.join(self.argv)
        if self.sql is not None:
            text = " ".join(self.sql.split())
            if self.identifiers:
                text += "  -- identifiers: " + ", ".join(f"{k}={v}" for k, v in self.identifiers.items())
            if self.params:
                text += "  -- params: " + ", ".join(f"{k}={v!r}" for k, v in self.params.items())
            return text
        args = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{self.action}({args})"


@dataclass
class Plan:
    playbook: Playbook
    variables: dict[str, Any]
    steps: list[PlannedAction]
    checks: list[PlannedAction]

    @property
    def destructive(self) -> bool:
        return self.playbook.destructive


def _render_value(value: Any, context: dict[str, Any], where: str, native: bool = False) -> Any:
    if isinstance(value, str):
        return render_native(value, context, where) if native else render_text(value, context, where)
    if isinstance(value, list):
        return [_render_value(v, context, where, native) for v in value]
    if isinstance(value, dict):
        return {k: _render_value(v, context, where, native) for k, v in value.items()}
    return value


def _templates_of(action: Action) -> list[str]:
    texts: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, str):
            texts.append(value)
        elif isinstance(value, list):
            for v in value:
                collect(v)
        elif isinstance(value, dict):
            for v in value.values():
                collect(v)

    for part in (action.run, action.manage, action.alembic, action.shell, action.params,
                 action.identifiers, action.with_, action.env, action.workdir, action.user):
        collect(part)
    return texts


def shell_script_index(argv: list[str]) -> int | None:
    """Return the index of the script in a `sh -c SCRIPT` style argv (also bash/dash, `-lc`, `-e -c`)."""
    if not argv or argv[0].rsplit("/", 1)[-1] not in SHELLS:
        return None
    index = 1
    while index < len(argv) - 1:
        option = argv[index]
        if option in ("-o", "+o"):  # takes the next word as its argument
            index += 2
            continue
        if len(option) < 2 or option[0] not in "-+" or option.startswith("--"):
            return None
        if "c" in option[1:]:
            return index + 1
        index += 1
    return None


def plan_action(action: Action, context: dict[str, Any], commands: Commands, where: str) -> PlannedAction:
    """Render one step; call again at run time with `kept` in the context for deferred steps."""
    known = set(context)
    for text in _templates_of(action):
        check_names(text, known, where)
    if action.when:
        check_names("{{ " + action.when.strip().strip("{}") + " }}", known, where)
    script = shell_script_index(action.run) if action.run else None
    for shell_line in (action.shell, action.run[script] if action.run and script is not None else None):
        if shell_line:
            check_shell_template(shell_line, where)  # before deferral, so it fails before anything runs
    deferred = any(needs_runtime(t) for t in _templates_of(action)) and "kept" not in context
    planned = PlannedAction(
        name=action.name,
        kind=action.kind,
        service=action.service,
        sql=action.sql,
        action=action.action,
        timeout=action.timeout,
        when=action.when,
        keep=action.keep,
        parse=action.parse,
        expect=action.expect,
        description=action.description,
        deferred=deferred,
        source=action,
    )
    if deferred:
        # Shown as written until the run reaches it.
        planned.argv = _raw_argv(action, commands)
        planned.params, planned.args = dict(action.params), dict(action.with_)
        planned.identifiers, planned.env = dict(action.identifiers), dict(action.env)
        planned.workdir, planned.user = action.workdir, action.user
        return planned
    planned.argv = _render_argv(action, context, commands, where)
    # Parameters keep their types: a list variable binds as an array for `= ANY(%(apps)s)`.
    planned.params = _render_value(action.params, context, where, native=True)
    planned.identifiers = _render_value(action.identifiers, context, where)
    planned.args = _render_value(action.with_, context, where, native=True)
    planned.env = _render_value(action.env, context, where)
    planned.workdir = render_text(action.workdir, context, where) if action.workdir else None
    planned.user = render_text(action.user, context, where) if action.user else None
    return planned


def _raw_argv(action: Action, commands: Commands) -> list[str] | None:
    if action.run:
        return list(action.run)
    if action.manage:
        return [*commands.manage, *action.manage]
    if action.alembic:
        return [*commands.alembic, *action.alembic]
    if action.shell:
        return ["sh", "-c", action.shell]
    return None


def _render_argv(action: Action, context: dict[str, Any], commands: Commands, where: str) -> list[str] | None:
    def render_list(items: list[str], script: int | None = None) -> list[str]:
        out: list[str] = []
        for index, item in enumerate(items):
            if index == script:
                out.append(render_text(item, context, where, shell=True))
            else:
                out.extend(render_argument(item, context, where))
        return out

    if action.run:
        argv = render_list(action.run, shell_script_index(action.run))
        if not argv:
            raise RenderError(f"{where}: the command renders to nothing")
        return argv
    if action.manage:
        return [*commands.manage, *render_list(action.manage)]
    if action.alembic:
        return [*commands.alembic, *render_list(action.alembic)]
    if action.shell:
        return ["sh", "-c", render_text(action.shell, context, where, shell=True)]
    return None


def build_plan(playbook: Playbook, variables: dict[str, Any], commands: Commands | None = None) -> Plan:
    """Render every step and check of a playbook; raise RenderError before anything runs."""
    commands = commands or Commands()
    context = dict(variables)

    def where(section: str, index: int, role: str, name: str) -> str:
        # FILE:LINE like a schema error, when the playbook came from a file.
        line = playbook.lines.get((section, index - 1))
        return f"{playbook.source or playbook.name}{f':{line}' if line else ''}: {role} {index} ({name})"

    steps = [plan_action(step, context, commands, where("steps", i, "step", step.name))
             for i, step in enumerate(playbook.steps, 1)]
    checks = [plan_action(check, context, commands, where("verify", i, "check", check.name))
              for i, check in enumerate(playbook.verify, 1)]
    return Plan(playbook=playbook, variables=dict(variables), steps=steps, checks=checks)
