"""`runbook.yml`: optional project settings; zero config must work for a standard Compose stack."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runbook.errors import ConfigError
from runbook.options import CONFIG_NAME
from runbook.yamlload import load_yaml_with_lines, locate, read_text


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComposeSettings(_Strict):
    file: str | None = None
    project: str | None = None


class ServiceNames(_Strict):
    db: str = "db"
    backend: str = "backend"


class BackendSettings(_Strict):
    workdir: str | None = None
    manage: list[str] = Field(default_factory=lambda: ["python", "manage.py"])
    alembic: list[str] = Field(default_factory=lambda: ["alembic"])
    env: dict[str, str] = Field(default_factory=dict)
    user: str | None = None
    # Variables that name the database (a name, or a postgres URL): --rehearse points them at its copy.
    database_env: list[str] | None = None


class DatabaseConfig(_Strict):
    url: str | None = None
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None
    # Name of an environment variable holding the password, so it need not sit in the file.
    password_env: str | None = None
    name: str | None = None


class Config(_Strict):
    target: Literal["compose", "local"] = "compose"
    compose: ComposeSettings = Field(default_factory=ComposeSettings)
    services: ServiceNames = Field(default_factory=ServiceNames)
    backend: BackendSettings = Field(default_factory=BackendSettings)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    artifacts: str = ".runbook"
    playbook_dirs: list[str] = Field(default_factory=list)
    step_timeout: float | None = 3600.0

    # Not from the file: where the project lives.
    project_dir: Path = Field(default=Path("."), exclude=True)

    def artifacts_dir(self) -> Path:
        """Return the artifacts directory; never the project directory or above it (it is made owner-only)."""
        path = (self.project_dir / self.artifacts).resolve()
        project = self.project_dir.resolve()
        if path == project or path in project.parents:
            raise ConfigError(f"artifacts: {self.artifacts!r} is the project directory or above it, which runbook "
                              "would make readable by its owner only",
                              hint="give artifacts a directory of its own, such as .runbook")
        return path

    def extra_playbook_dirs(self) -> list[Path]:
        return [(self.project_dir / d).resolve() for d in self.playbook_dirs]


def load_config(project_dir: Path) -> Config:
    """Read runbook.yml from project_dir, or return the defaults when there is none."""
    path = project_dir / CONFIG_NAME
    if not path.exists():
        return Config(project_dir=project_dir)
    data, lines = load_yaml_with_lines(read_text(path, ConfigError), str(path), error=ConfigError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the top level must be a mapping of settings")
    for key in data:
        # `project_dir` is a field but not a setting; a non-string key cannot be a keyword.
        if not isinstance(key, str) or key == "project_dir":
            raise ConfigError(f"{path}:{locate(lines, (str(key),))}: {key}: unknown key")
    try:
        return Config(**data, project_dir=project_dir)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        raise ConfigError(
            f"{path}:{locate(lines, loc)}: {'.'.join(map(str, loc))}: {err['msg']}"
        ) from exc
