"""The one reader of an Alembic configuration (alembic.ini), shared by inspection, snapshot and repairs.

Pure: it reads the text it is given and never imports Alembic or touches a target; it imports only
`errors`, so the artifacts layer (the snapshot's file listing) may use it as it uses `config`. It follows what
Alembic's own `Config` does (1.16+ `path_separator`, the older `version_path_separator`, the legacy
split on spaces and commas when neither is set, `%(here)s`), so every part of runbook finds the same
version directories that `alembic` itself reads.
"""

from __future__ import annotations

import configparser
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from runbook.errors import StepFailed

DEFAULT_INI = "alembic.ini"
DEFAULT_SECTION = "alembic"
# `os` is the backend's os.pathsep: the backends runbook drives are POSIX containers.
SEPARATORS = {"os": ":", ":": ":", ";": ";", "space": " ", "comma": ",", ",": ",", "newline": "\n"}
_LEGACY_SPLIT = re.compile(r", *|(?: +)")  # Alembic's split when no separator is configured


class AlembicConfigError(StepFailed):
    """alembic.ini cannot be read, or names something runbook cannot place."""


@dataclass(frozen=True)
class AlembicConfig:
    """What alembic.ini says about where the revision files are."""

    ini: str
    script_location: str
    version_locations: list[str] = field(default_factory=list)  # as configured, %(here)s substituted
    separator: str | None = None
    recursive: bool = False

    def versions_dirs(self, resolve: Callable[[str], str] | None = None) -> list[str]:
        """Return the version directories, each relative to the backend's workdir or absolute.

        `resolve` turns a package resource (`package:dir`) into a directory; without it the package is
        taken to be importable from the workdir (`myapp.db:migrations` -> `myapp/db/migrations`).
        """
        resolve = resolve or resource_in_workdir
        locations = self.version_locations or [_join(self.script_location, "versions")]
        return list(dict.fromkeys(posixpath.normpath(resolve(loc) if is_resource(loc) else loc)
                                  for loc in locations))


def is_resource(location: str) -> bool:
    """Return whether a location names a package resource (`package:dir`) rather than a path."""
    return ":" in location and not location.startswith("/")


def resource_in_workdir(location: str) -> str:
    """Place `package.sub:dir` at `package/sub/dir`, where an importable package of the workdir lives."""
    package, _, path = location.partition(":")
    return posixpath.join(*package.split("."), path) if path else posixpath.join(*package.split("."))


def _join(location: str, child: str) -> str:
    if is_resource(location):
        package, _, path = location.partition(":")
        return f"{package}:{posixpath.join(path, child) if path else child}"
    return posixpath.join(location, child)


def split_locations(value: str, separator: str | None) -> list[str]:
    """Split `version_locations` the way Alembic does for this `path_separator` (None: spaces/commas)."""
    if separator is None:
        parts = _LEGACY_SPLIT.split(value.strip())
    else:
        if separator not in SEPARATORS:
            raise AlembicConfigError(f"path_separator {separator!r} is not one Alembic knows "
                                     "(os, space, comma, newline, ':' or ';')")
        parts = value.split(SEPARATORS[separator])
    return [part.strip() for part in parts if part.strip()]


def read_config(text: str, ini: str = DEFAULT_INI, *, workdir: str = ".", section: str = DEFAULT_SECTION
                ) -> AlembicConfig:
    """Read alembic.ini's text; `ini` is its path as the backend's alembic command is given it.

    `%(here)s` is the directory of the ini file (absolute when `workdir` is); relative locations stay
    relative to the workdir, as Alembic resolves them against its current directory.
    """
    here = posixpath.normpath(posixpath.join(workdir, posixpath.dirname(ini) or "."))
    parser = configparser.ConfigParser(defaults={"here": here})
    try:
        parser.read_string(text, source=ini)
        if not parser.has_section(section):
            raise AlembicConfigError(f"{ini} has no [{section}] section")
        script_location = parser.get(section, "script_location", fallback="").strip()
        locations = parser.get(section, "version_locations", fallback="")
        separator = parser.get(section, "path_separator", fallback=None)
        if separator is None:
            separator = parser.get(section, "version_path_separator", fallback=None)
        recursive = parser.getboolean(section, "recursive_version_locations", fallback=False)
    except (configparser.Error, ValueError) as exc:
        raise AlembicConfigError(f"cannot read {ini}: {str(exc).splitlines()[0]}") from None
    if not script_location:
        raise AlembicConfigError(f"{ini} has no script_location in [{section}]")
    separator = separator.strip() if separator is not None else None
    return AlembicConfig(ini, script_location, split_locations(locations, separator) if locations.strip() else [],
                         separator, recursive)


def config_file(alembic_argv: list[str], override: str | None = None) -> str:
    """Return the alembic.ini the configured alembic command uses (`-c`/`--config`), or alembic.ini."""
    if override:
        return override
    for index, part in enumerate(alembic_argv):
        if part in ("-c", "--config") and index + 1 < len(alembic_argv):
            return alembic_argv[index + 1]
        if part.startswith("--config="):
            return part.split("=", 1)[1]
    return DEFAULT_INI


def config_section(alembic_argv: list[str]) -> str:
    """Return the ini section the configured alembic command reads (`-n`/`--name`), or `alembic`."""
    for index, part in enumerate(alembic_argv):
        if part in ("-n", "--name") and index + 1 < len(alembic_argv):
            return alembic_argv[index + 1]
        if part.startswith("--name="):
            return part.split("=", 1)[1]
    return DEFAULT_SECTION
