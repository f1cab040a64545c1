"""Find playbooks: the built-in ones shipped in the package, overridden by a project's own dirs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runbook.errors import InputError

if TYPE_CHECKING:
    from runbook.playbook.model import Playbook

SUFFIXES = (".yml", ".yaml")


def builtin_dir() -> Path:
    """Return the directory of built-in playbooks (inside the installed package, or the source tree)."""
    packaged = Path(__file__).parent / "playbooks"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "playbooks"


@dataclass(frozen=True)
class PlaybookRef:
    name: str
    path: Path
    origin: str  # "built-in" or the project directory it came from


def discover(extra_dirs: list[Path]) -> dict[str, PlaybookRef]:
    """Map playbook names (file stems) to files; later directories override earlier ones."""
    found: dict[str, PlaybookRef] = {}
    for directory, origin in [(builtin_dir(), "built-in"), *[(d, str(d)) for d in extra_dirs]]:
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.suffix in SUFFIXES and path.is_file():
                found[path.stem] = PlaybookRef(path.stem, path, origin)
    return found


def find(name: str, extra_dirs: list[Path]) -> Playbook:
    """Load a playbook by name, or by path when name is a file."""
    # Imported here: `list` discovers playbooks without the pydantic model.
    from runbook.playbook.model import load_playbook

    as_path = Path(name)
    if as_path.suffix in SUFFIXES and as_path.is_file():
        return load_playbook(as_path)
    refs = discover(extra_dirs)
    if name not in refs:
        known = ", ".join(sorted(refs)) or "none"
        raise InputError(f"no playbook named {name!r} (known: {known})", hint="see `runbook list`")
    return load_playbook(refs[name].path)
