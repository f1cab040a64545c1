"""Jinja2 rendering in a sandbox, strict about unknown names, with shell quoting where a shell is involved."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from runbook.errors import RenderError

# Names available while a run is under way but not when the plan is made.
RUNTIME_NAMES = frozenset({"kept"})
# One `{{ ... }}` and nothing else: the body may not itself close and reopen (`{{ a }}-{{ b }}`).
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{((?:(?!\}\}|\{\{).)+)\}\}\s*$", re.DOTALL)


def _to_shell_word(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(shlex.quote(str(v)) for v in value)
    return shlex.quote(str(value))


def _make_env(quote: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        # Every {{ expression }} in a shell line is quoted, so no value is ever parsed by the shell.
        finalize=_to_shell_word if quote else None,
    )
    # In shell mode finalize quotes already; quoting twice would hand the command literal quotes.
    env.filters["quote"] = str if quote else shlex.quote
    return env


_PLAIN = _make_env(quote=False)
_SHELL = _make_env(quote=True)


def referenced_names(template: str, where: str = "") -> set[str]:
    """Return the free names a template uses."""
    try:
        return set(meta.find_undeclared_variables(_PLAIN.parse(template)))
    except TemplateError as exc:
        raise RenderError(f"{where + ': ' if where else ''}template {template!r}: {exc}") from exc


def needs_runtime(template: str) -> bool:
    """Tell whether a template reads values that exist only while the run is under way."""
    return bool(referenced_names(template) & RUNTIME_NAMES)


def check_names(template: str, known: set[str], where: str) -> None:
    """Raise RenderError when a template names a variable the playbook does not define."""
    unknown = referenced_names(template, where) - known - RUNTIME_NAMES
    if unknown:
        names = ", ".join(sorted(unknown))
        raise RenderError(
            f"{where}: unknown variable {names} in {template!r}",
            hint="declare it under `variables:` in the playbook",
        )


def _wrap(exc: Exception, template: str, where: str) -> RenderError:
    if isinstance(exc, UndefinedError):
        return RenderError(f"{where}: {exc.message} in {template!r}")
    if isinstance(exc, SecurityError):
        return RenderError(f"{where}: not allowed in a playbook template: {exc}")
    return RenderError(f"{where}: cannot render {template!r}: {exc}")


def check_shell_template(template: str, where: str) -> None:
    """Refuse `{{ }}` inside shell quotes: the quoting of the value would cancel out."""
    quote, i = None, 0
    while i < len(template):
        for opening, closing in (("{{", "}}"), ("{%", "%}"), ("{#", "#}")):
            if template.startswith(opening, i):
                if quote and opening == "{{":
                    raise RenderError(
                        f"{where}: {{{{ }}}} inside {quote}...{quote} in shell line {template!r}",
                        hint="drop the quotes: every {{ }} value is shell-quoted already",
                    )
                end = template.find(closing, i + 2)
                i = len(template) if end < 0 else end + 2
                break
        else:
            char = template[i]
            if char == "\\" and quote != "'":
                i += 1
            elif quote is None and char in "'\"":
                quote = char
            elif char == quote:
                quote = None
            i += 1


def render_text(template: str, context: Mapping[str, Any], where: str, *, shell: bool = False) -> str:
    """Render one string; in shell mode every expression's value is shell-quoted."""
    if shell:
        check_shell_template(template, where)
    env = _SHELL if shell else _PLAIN
    try:
        return env.from_string(template).render(**context)
    except (TemplateError, TypeError, ValueError, AttributeError, KeyError) as exc:
        raise _wrap(exc, template, where) from exc


def render_argument(template: str, context: Mapping[str, Any], where: str) -> list[str]:
    """Render one argv element; a lone `{{ list }}` spreads into several, a lone empty value vanishes."""
    match = _SINGLE_EXPRESSION.match(template)
    if not match:
        return [render_text(template, context, where)]
    try:
        value = _PLAIN.compile_expression(match.group(1).strip(), undefined_to_none=False)(**context)
        if isinstance(value, StrictUndefined):
            str(value)  # raises the UndefinedError with the missing name
    except (TemplateError, TypeError, ValueError, AttributeError, KeyError) as exc:
        raise _wrap(exc, template, where) from exc
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    return [str(value)]


def evaluate(expression: str, context: Mapping[str, Any], where: str) -> Any:
    """Evaluate a bare Jinja expression (as used by `when:`); `{{ }}` around it is allowed."""
    match = _SINGLE_EXPRESSION.match(expression)
    source = match.group(1) if match else expression
    try:
        value = _PLAIN.compile_expression(source.strip(), undefined_to_none=False)(**context)
        if isinstance(value, StrictUndefined):
            bool(value)
    except (TemplateError, TypeError, ValueError, AttributeError, KeyError) as exc:
        raise _wrap(exc, expression, where) from exc
    return value


def render_native(template: str, context: Mapping[str, Any], where: str) -> Any:
    """Render a value keeping its type when it is one lone expression (SQL params, action args)."""
    if _SINGLE_EXPRESSION.match(template):
        return evaluate(template, context, where)
    return render_text(template, context, where)
