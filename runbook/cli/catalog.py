"""What `runbook list` shows, read cheaply: a playbook's name, framework, whether destructive, and its summary.

`list` is run often and must start fast, so the playbooks it only lists are read with libyaml and a few
checks, not the pydantic model; a project's own playbooks, which may be half-written, still get the full
validation so that a broken one shows as invalid with the loader's `FILE:LINE` message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from runbook.errors import PlaybookError
from runbook.options import CONFIG_NAME, Options
from runbook.playbook.summary import summarize

FRAMEWORKS = ("django", "alembic", "any")


@dataclass(frozen=True)
class Entry:
    name: str
    framework: str
    destructive: bool
    summary: str


def quick_entry(path: Path) -> Entry:
    """Read what `list` shows from a playbook file; raise PlaybookError when even that is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except OSError as exc:
        raise PlaybookError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise PlaybookError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PlaybookError(f"{path}:1: a playbook must be a mapping with name, description and steps")
    framework, destructive = data.get("framework", "any"), data.get("destructive", False)
    if not isinstance(data.get("name"), str) or not isinstance(data.get("description"), str):
        raise PlaybookError(f"{path}: name and description must be given as text")
    if framework not in FRAMEWORKS or not isinstance(destructive, bool) or not data.get("steps"):
        # The full loader says exactly what is wrong, with its line (or accepts what pydantic coerces).
        return full_entry(path)
    return Entry(data["name"], framework, destructive, summarize(data["description"]))


def full_entry(path: Path) -> Entry:
    """Validate a playbook completely (line numbers, duplicate keys, every step) and return what `list` shows."""
    from runbook.playbook.model import load_playbook

    pb = load_playbook(path)
    return Entry(pb.name, pb.framework, pb.destructive, pb.summary())


def project_playbook_dirs(options: Options) -> list[Path]:
    """Return the project's own playbook directories; pydantic is imported only when runbook.yml exists."""
    if not (options.resolved_project_dir() / CONFIG_NAME).exists():
        return []
    from runbook.engine.prepare import load_project_config

    return load_project_config(options).extra_playbook_dirs()
