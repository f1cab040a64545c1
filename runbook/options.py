"""The global command-line options: a tiny module so that `runbook --help` and `list` import no engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runbook.errors import InputError

CONFIG_NAME = "runbook.yml"


@dataclass
class Options:
    """Global options from the command line; None means: take runbook.yml or the default."""

    project_dir: Path = Path(".")
    target: str | None = None
    compose_file: str | None = None
    project_name: str | None = None
    db_service: str | None = None
    backend_service: str | None = None

    def resolved_project_dir(self) -> Path:
        """Return the project directory as an absolute path; refuse one that does not exist."""
        project_dir = self.project_dir.resolve()
        if not project_dir.is_dir():
            raise InputError(f"project directory {project_dir} does not exist", hint="check --project-dir")
        return project_dir
