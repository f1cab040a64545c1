"""The diff of a file an action rewrote, shown in its output and the report."""

from __future__ import annotations

import difflib


def unified_diff(path: str, old: str, new: str, *, context: int = 3) -> str:
    """Return a unified diff of one file, as `git diff` would show it."""
    name = path.lstrip("/")
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"a/{name}", tofile=f"b/{name}", n=context)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
