"""How the engine reports progress: by callback, never by printing (the CLI owns the terminal)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]


def no_progress(text: str) -> None:
    return None
