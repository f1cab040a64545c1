"""Decide whether a step's or check's result holds its expectations: pure, one problem per line."""

from __future__ import annotations

import re
from typing import Any

from runbook.playbook.model import Expect

_MISSING = object()


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def dig(data: Any, path: str) -> Any:
    """Follow a dotted path (`a.b.0.c`) into parsed JSON; return _MISSING when absent."""
    current = data
    for part in path.split(".") if path else []:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit() and -len(current) <= int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_expectations(
    expect: Expect,
    *,
    exit_code: int | None,
    stdout: str = "",
    stderr: str = "",
    parsed: Any = None,
    rows: list[list[Any]] | None = None,
) -> list[str]:
    """Return what did not hold; an empty list means the expectations are met."""
    problems: list[str] = []
    if expect.exit_code is not None and exit_code != expect.exit_code:
        problems.append(f"exit code {exit_code}, expected {expect.exit_code}")
    for stream, text, wanted, unwanted, pattern in (
        ("stdout", stdout, expect.stdout_contains, expect.stdout_not_contains, expect.stdout_regex),
        ("stderr", stderr, expect.stderr_contains, expect.stderr_not_contains, expect.stderr_regex),
    ):
        for needle in _as_list(wanted):
            if needle not in text:
                problems.append(f"{stream} does not contain {needle!r}")
        for needle in _as_list(unwanted):
            if needle in text:
                problems.append(f"{stream} contains {needle!r}")
        if pattern and not re.search(pattern, text, re.MULTILINE):
            problems.append(f"{stream} does not match /{pattern}/")
    if expect.json_paths is not None:
        data = parsed if parsed is not None else rows
        for path, wanted_value in expect.json_paths.items():
            got = dig(data, path)
            if got is _MISSING:
                problems.append(f"JSON has no {path!r}")
            elif got != wanted_value:
                problems.append(f"JSON {path} is {_short(repr(got))}, expected {wanted_value!r}")
    if expect.rows is not None and rows != expect.rows:
        problems.append(f"rows are {_short(repr(rows))}, expected {_short(repr(expect.rows))}")
    if expect.scalar is not None or expect.scalar_min is not None or expect.scalar_max is not None:
        problems.extend(_check_scalar(expect, rows))
    return problems


def _check_scalar(expect: Expect, rows: list[list[Any]] | None) -> list[str]:
    if not rows or len(rows) != 1 or len(rows[0]) != 1:
        return [f"expected one value, got {_short(repr(rows))}"]
    value = rows[0][0]
    problems = []
    if expect.scalar is not None and value != expect.scalar and str(value) != str(expect.scalar):
        problems.append(f"value is {value!r}, expected {expect.scalar!r}")
    try:
        if expect.scalar_min is not None and float(value) < expect.scalar_min:
            problems.append(f"value {value!r} is below {expect.scalar_min}")
        if expect.scalar_max is not None and float(value) > expect.scalar_max:
            problems.append(f"value {value!r} is above {expect.scalar_max}")
    except (TypeError, ValueError):
        problems.append(f"value {value!r} is not a number")
    return problems
