"""Run commands in the backend service, and the scripts shipped in `runbook/frameworks/inside/` with its own python.

A script is sent as `python -c SOURCE ARGS --compress`: nothing is installed or left in the backend. Its
source is the parts it needs concatenated, the entry point last (PARTS). It answers with one marked line of
base64 zlib JSON on stdout, so noise printed by the app's settings cannot corrupt it and a large answer stays
far below the output runbook keeps of a command.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from runbook.config import Config
from runbook.errors import EnvironmentNotReady, StepFailed
from runbook.targets.base import ExecResult

if TYPE_CHECKING:
    from runbook.frameworks.context import RunContext

# One argv string may be at most 128 KiB on Linux (MAX_ARG_STRLEN); stay well below.
MAX_SOURCE = 100_000
# Exit codes the scripts use (see their docstrings).
EXIT_CANNOT_START, EXIT_DATABASE, EXIT_NOT_IMPORTABLE, EXIT_GRAPH, EXIT_NO_PROJECT = 2, 3, 5, 6, 7
MARKER = "RUNBOOK-ANSWER:"
# The parts sent before each entry point in inside/, in order (the scripts are never imported, so they share
# code by concatenation). django_restore_schema.py, the only part that changes the schema, is added by the
# caller that asks for a change (runbook/frameworks/django/inspection.py).
DJANGO = ("answer.py", "django_settings.py")
PARTS = {
    "django_inspect.py": (*DJANGO, "django_history.py", "django_schema.py", "django_proof.py"),
    "django_locate.py": DJANGO,
    "which_database.py": DJANGO,
    "alembic_inspect.py": ("answer.py",),
}


@dataclass(frozen=True)
class ExecOptions:
    env: dict[str, str]
    workdir: str | None
    user: str | None


def exec_options(config: Config, service: str, env: dict[str, str] | None = None,
                 workdir: str | None = None, user: str | None = None) -> ExecOptions:
    """Apply the backend's configured env, workdir and user to a command for `service`."""
    env = dict(env or {})
    if service == "backend":
        env = {**config.backend.env, **env}
        workdir = workdir or config.backend.workdir
        user = user or config.backend.user
    return ExecOptions(env, workdir, user)


def split_manage(manage: list[str]) -> tuple[list[str], str]:
    """Split the configured manage command into the interpreter argv and the manage.py path."""
    for index, part in enumerate(manage):
        if part.endswith("manage.py"):
            return (list(manage[:index]) or ["python"]), part
    return ["python"], "manage.py"


def script_source(name: str, *extra: str) -> str:
    """Return the source of a script shipped in runbook/frameworks/inside/: its PARTS, then `extra`, then itself."""
    inside = resources.files("runbook.frameworks").joinpath("inside")
    return "\n\n".join(inside.joinpath(part).read_text(encoding="utf-8")
                        for part in (*PARTS.get(name, ()), *extra, name))


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def backend_exec(ctx: RunContext, argv: list[str], env: dict[str, str] | None = None) -> ExecResult:
    """Run argv in the backend service with runbook.yml's env, workdir and user, under the step timeout."""
    options = exec_options(ctx.config, "backend", env)
    return ctx.target.exec("backend", argv, env=options.env, workdir=options.workdir, user=options.user,
                           timeout=ctx.config.step_timeout)


def manage(ctx: RunContext, argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the configured `manage.py` with argv in the backend; return its exit code and its output."""
    result = backend_exec(ctx, [*ctx.config.backend.manage, *argv], env)
    return result.exit_code, result.stdout + result.stderr


def run_script(ctx: RunContext, name: str, args: list[str], *, interpreter: list[str], what: str,
               source: str | None = None) -> Any:
    """Run a shipped script (or the given source) in the backend and return its parsed answer."""
    source = source or script_source(name)
    if len(source.encode()) > MAX_SOURCE:
        raise AssertionError(f"the source of {name or what} is too large to pass as one argument")
    result = backend_exec(ctx, [*interpreter, "-c", source, *args, "--compress"])
    if result.exit_code != 0:
        raise script_error(result, what, " ".join(interpreter))
    if result.truncated:
        raise StepFailed(f"{what}: the answer is larger than the output runbook keeps of a command")
    return decode_answer(result.stdout, what)


def decode_answer(stdout: str, what: str) -> Any:
    """Return the JSON of the last marked line of a script's stdout."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            try:
                return json.loads(zlib.decompress(base64.b64decode(line[len(MARKER):], validate=True)))
            except (binascii.Error, zlib.error, ValueError) as exc:
                raise StepFailed(f"{what}: the answer is damaged ({exc})") from exc
    raise StepFailed(f"{what}: no answer on stdout" + (f" (last line: {last_line(stdout)[:200]})"
                                                      if stdout.strip() else ""))


def script_error(result: ExecResult, what: str, python: str) -> Exception:
    """Turn a failed script run into the error of the contract, with the last line of its stderr."""
    why = last_line(result.stderr) or last_line(result.stdout) or f"exit {result.exit_code}"
    why = why.removeprefix("runbook-inspect: ")
    if result.timed_out:
        return StepFailed(f"{what} timed out")
    if result.exit_code in (126, 127):
        return EnvironmentNotReady(f"{what}: cannot run {python} in the backend: {why}",
                                   hint="set backend.manage in runbook.yml to the python that runs the app")
    if result.exit_code == EXIT_NO_PROJECT:
        return EnvironmentNotReady(f"{what}: {why}", hint="set backend.workdir in runbook.yml")
    if result.exit_code == EXIT_NOT_IMPORTABLE:
        return EnvironmentNotReady(f"{what}: {why}",
                                   hint="set backend.manage in runbook.yml to the python that runs the app")
    if result.exit_code == EXIT_GRAPH:
        return EnvironmentNotReady(f"{what}: {why}",
                                   hint="fix or restore that migration file (Django itself cannot load the graph)")
    if result.exit_code == EXIT_DATABASE:
        return EnvironmentNotReady(f"{what}: {why}", hint="is the db service up and the backend's settings right?")
    return StepFailed(f"{what} failed (exit {result.exit_code}): {why}")
