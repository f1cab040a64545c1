"""The playbook model and loader: pure, no Docker, no database.

A playbook is YAML: its framework, variables, whether it is destructive, what to snapshot, the steps,
and the verify checks. Every schema error is reported as `FILE:LINE: key: what is wrong`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runbook.errors import PlaybookError
from runbook.playbook.summary import summarize
from runbook.yamlload import load_yaml_with_lines, locate, read_text

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
SERVICES = ("db", "backend")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Variable(_Strict):
    type: Literal["str", "int", "bool", "list"] = "str"
    default: Any = None
    required: bool = False
    help: str = ""
    choices: list[Any] | None = None
    # A secret is masked in the plan, the console and the report.
    secret: bool = False


class Expect(_Strict):
    """What a step or check must show; every given field must hold."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    exit_code: int | None = 0
    stdout_contains: str | list[str] | None = None
    stdout_not_contains: str | list[str] | None = None
    stdout_regex: str | None = None
    stderr_contains: str | list[str] | None = None
    stderr_not_contains: str | list[str] | None = None
    stderr_regex: str | None = None
    # Dotted paths into the parsed JSON stdout (or SQL rows) and the value each must equal.
    json_paths: dict[str, Any] | None = Field(default=None, alias="json")
    # For SQL: the rows (list of lists), or the single value of a one-row one-column result.
    rows: list[list[Any]] | None = None
    scalar: Any = None
    scalar_min: float | None = None
    scalar_max: float | None = None

    @field_validator("stdout_regex", "stderr_regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


class Action(_Strict):
    """One thing to do: a command in a service, SQL, or a built-in action.

    Exactly one of `run`, `manage`, `alembic`, `shell`, `sql`, `action` is given.
    """

    name: str
    description: str = ""
    service: str | None = None
    run: list[str] | None = None
    manage: list[str] | None = None
    alembic: list[str] | None = None
    shell: str | None = None
    sql: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    # Names (tables, columns) put into `sql` by `{name}` placeholders, always quoted as identifiers.
    identifiers: dict[str, str] = Field(default_factory=dict)
    action: str | None = None
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    timeout: float | None = None
    when: str | None = None
    keep: str | None = None
    parse: Literal["text", "json"] = "text"
    expect: Expect = Field(default_factory=Expect)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _name_is_short(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("keep")
    @classmethod
    def _keep_is_identifier(cls, value: str | None) -> str | None:
        if value is not None and not value.isidentifier():
            raise ValueError(f"{value!r} is not a valid name (letters, digits, underscore)")
        return value

    @field_validator("service")
    @classmethod
    def _known_service(cls, value: str | None) -> str | None:
        if value is not None and value not in SERVICES:
            raise ValueError(f"must be one of {', '.join(SERVICES)} (renamed in runbook.yml, not here)")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Action:
        kinds = [k for k in ("run", "manage", "alembic", "shell", "sql", "action") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one of run, manage, alembic, shell, sql, action"
                + (f" (got {', '.join(kinds)})" if kinds else "")
            )
        if self.sql is None and self.action is None and self.service is None:
            self.service = "backend"
        return self

    @property
    def kind(self) -> str:
        for k in ("run", "manage", "alembic", "shell", "sql", "action"):
            if getattr(self, k):
                return k
        raise AssertionError("validated to have one kind")


class Snapshot(_Strict):
    database: bool = True
    history: bool = True
    files: list[str] = Field(default_factory=list)


class Playbook(_Strict):
    name: str
    description: str
    framework: Literal["django", "alembic", "any"] = "any"
    # The `runbook diagnose` finding kinds this playbook repairs, checked before the snapshot; any: no check.
    fits: list[str] | Literal["any"] = "any"
    # Variables that, given a value, ask for the repair whatever diagnose finds: the steps check the request.
    fits_when_given: list[str] = Field(default_factory=list)
    destructive: bool = False
    variables: dict[str, Variable] = Field(default_factory=dict)
    snapshot: Snapshot = Field(default_factory=Snapshot)
    steps: Annotated[list[Action], Field(min_length=1)]
    verify: list[Action] = Field(default_factory=list)

    # Not from the file.
    source: str = Field(default="", exclude=True)
    # Key path -> line in the file, so errors found after loading can point at a line too.
    lines: dict[Any, int] = Field(default_factory=dict, exclude=True, repr=False)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError("use lower-case letters, digits, '-', '_' or '.'")
        return value

    @field_validator("variables")
    @classmethod
    def _valid_variable_names(cls, value: dict[str, Variable]) -> dict[str, Variable]:
        for key in value:
            if not key.isidentifier():
                raise ValueError(f"variable name {key!r} is not a valid identifier")
        return value

    @model_validator(mode="after")
    def _fits_when_given_are_variables(self) -> Playbook:
        unknown = [name for name in self.fits_when_given if name not in self.variables]
        if unknown:
            raise ValueError(f"fits_when_given names {', '.join(unknown)}, which are not variables of the playbook")
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Playbook:
        seen: set[str] = set()
        for action in [*self.steps, *self.verify]:
            if action.keep:
                if action.keep in seen:
                    raise ValueError(f"two steps keep their output as {action.keep!r}")
                seen.add(action.keep)
        return self

    def summary(self) -> str:
        """Return the first sentence of the description, on one line."""
        return summarize(self.description)


def _format_error(path: str, lines: dict, err: dict) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{path}:{locate(lines, loc)}: {key}: {msg}"


def parse_playbook(text: str, source: str) -> Playbook:
    """Build a Playbook from YAML text; raise PlaybookError with every problem found."""
    data, lines = load_yaml_with_lines(text, source, error=PlaybookError)
    if not isinstance(data, dict):
        raise PlaybookError(f"{source}:1: a playbook must be a mapping with name, description and steps")
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        problems = [_format_error(source, lines, err) for err in exc.errors()]
        raise PlaybookError(problems[0] if len(problems) == 1 else f"{source}: {len(problems)} problems",
                            problems) from exc
    playbook.source = source
    playbook.lines = lines
    return playbook


def load_playbook(path: Path) -> Playbook:
    """Read and validate one playbook file."""
    return parse_playbook(read_text(path, PlaybookError), str(path))
