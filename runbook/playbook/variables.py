"""Turn `--var KEY=VALUE` strings into typed playbook variables; unknown or missing is exit 2."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runbook.errors import VariableError
from runbook.playbook.model import Playbook, Variable
from runbook.redact import MASK, is_secret_name

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """Split `KEY=VALUE` strings; a value may itself contain '='."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise VariableError(f"--var {pair!r} is not KEY=VALUE", hint="write it as --var name=value")
        if key in values:
            raise VariableError(f"--var {key} given twice")
        values[key] = value
    return values


def _shown(name: str, spec: Variable, value: Any) -> str:
    """Return the value as an error message may quote it: a secret's value never reaches the console."""
    return MASK if spec.secret or is_secret_name(name) else repr(value)


def _convert(name: str, spec: Variable, raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    if spec.type == "int":
        try:
            return int(raw)
        except ValueError:
            raise VariableError(f"variable {name} must be a whole number, got {_shown(name, spec, raw)}",
                                variable=name) from None
    if spec.type == "bool":
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise VariableError(f"variable {name} must be true or false, got {_shown(name, spec, raw)}", variable=name)
    if spec.type == "list":
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def resolve_variables(playbook: Playbook, given: dict[str, str]) -> dict[str, Any]:
    """Return every variable's value from --var, then the default; raise on unknown or missing."""
    unknown = sorted(set(given) - set(playbook.variables))
    if unknown:
        known = ", ".join(sorted(playbook.variables)) or "none"
        raise VariableError(
            f"unknown variable {', '.join(unknown)} for playbook {playbook.name} (it takes: {known})",
            hint=f"see `runbook show {playbook.name}`",
        )
    values: dict[str, Any] = {}
    for name, spec in playbook.variables.items():
        if name in given:
            value = _convert(name, spec, given[name])
        elif spec.default is not None:
            value = _convert(name, spec, spec.default)
        elif spec.required:
            raise VariableError(
                f"missing variable {name} for playbook {playbook.name}: {spec.help or 'no help given'}",
                hint=f"pass --var {name}=VALUE",
            )
        else:
            # Not given, no default: the empty value is not held to `choices`.
            values[name] = [] if spec.type == "list" else ("" if spec.type == "str" else None)
            continue
        if spec.choices is not None and value not in spec.choices:
            raise VariableError(
                f"variable {name} must be one of {', '.join(map(str, spec.choices))}, got {_shown(name, spec, value)}",
                variable=name,
            )
        values[name] = value
    return values
