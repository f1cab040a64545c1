"""The one reader of alembic.ini (runbook.alembic_ini): separators, %(here)s, package resources."""

from __future__ import annotations

import pytest

from runbook.alembic_ini import AlembicConfigError, config_file, config_section, read_config


def dirs(text: str, ini: str = "alembic.ini", workdir: str = ".") -> list[str]:
    return read_config(text, ini, workdir=workdir).versions_dirs()


@pytest.mark.parametrize(
    ("separator", "value", "expected"),
    [
        ("os", "v1:%(here)s/v2", ["v1", "/srv/app/v2"]),
        ("space", "v1  v2", ["v1", "v2"]),
        ("comma", "v1, v2", ["v1", "v2"]),
        ("newline", "\n    v1 dir\n    v2", ["v1 dir", "v2"]),
        (";", "v1;v2", ["v1", "v2"]),
        (None, "v1, v2 v3", ["v1", "v2", "v3"]),  # Alembic's legacy split when no separator is set
    ],
)
def test_version_locations_split_like_alembic(separator: str | None, value: str, expected: list[str]) -> None:
    setting = f"path_separator = {separator}\n" if separator else ""
    text = f"[alembic]\nscript_location = migrations\nversion_locations = {value}\n{setting}"
    assert dirs(text, workdir="/srv/app") == expected


def test_the_old_version_path_separator_is_honoured() -> None:
    text = "[alembic]\nscript_location = m\nversion_locations = a:b\nversion_path_separator = os\n"
    assert dirs(text) == ["a", "b"]


def test_here_is_the_directory_of_the_ini() -> None:
    text = "[alembic]\nscript_location = %(here)s/alembic\n"
    assert dirs(text, "deploy/alembic.ini", "/srv/app") == ["/srv/app/deploy/alembic/versions"]
    assert dirs(text) == ["alembic/versions"]


def test_a_package_resource_is_resolved_by_the_callback_or_in_the_workdir() -> None:
    config = read_config("[alembic]\nscript_location = myapp.db:migrations\n")
    assert config.versions_dirs() == ["myapp/db/migrations/versions"]
    assert config.versions_dirs(lambda loc: "/site/" + loc.replace(":", "/")) == ["/site/myapp.db/migrations/versions"]
    extra = read_config("[alembic]\nscript_location = m\nversion_locations = %(here)s/v, plugin:versions\n"
                        "path_separator = comma\n", workdir="/srv")
    assert extra.versions_dirs() == ["/srv/v", "plugin/versions"]


def test_errors_are_one_line() -> None:
    with pytest.raises(AlembicConfigError, match=r"no \[alembic\] section"):
        read_config("[other]\nx = 1\n")
    with pytest.raises(AlembicConfigError, match="no script_location"):
        read_config("[alembic]\nsqlalchemy.url = x\n")
    with pytest.raises(AlembicConfigError, match="path_separator 'tab'"):
        read_config("[alembic]\nscript_location = m\nversion_locations = a\npath_separator = tab\n")


def test_the_ini_and_section_come_from_the_alembic_command() -> None:
    assert config_file(["alembic", "-c", "deploy/alembic.ini"]) == "deploy/alembic.ini"
    assert config_file(["alembic", "--config=x.ini"]) == "x.ini"
    assert config_file(["alembic"], "y.ini") == "y.ini"
    assert config_section(["alembic", "-n", "tenant"]) == "tenant"
    assert config_section(["alembic"]) == "alembic"
    text = "[tenant]\nscript_location = t\n"
    assert read_config(text, section="tenant").versions_dirs() == ["t/versions"]


def test_the_snapshot_lists_every_version_location(tmp_path) -> None:
    """With `path_separator = os` the snapshot takes each directory that linearize may rewrite."""
    from runbook.artifacts.snapshot import file_patterns, find_files
    from runbook.config import Config
    from runbook.targets.local import LocalTarget

    for path in ["migrations/versions/m1_main.py", "audit_versions/a1_audit.py", "pkg/db/versions/p1.py"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("# x\n")
    (tmp_path / "alembic.ini").write_text(
        "[alembic]\nscript_location = %(here)s/migrations\n"
        "version_locations = %(here)s/migrations/versions:%(here)s/audit_versions\n"
        "path_separator = os\n")
    target = LocalTarget(Config(project_dir=tmp_path))
    patterns = file_patterns(target, str(tmp_path), [])
    assert patterns == ["**/migrations/*.py", "migrations/versions/*.py", "audit_versions/*.py"]
    assert find_files(target, str(tmp_path), patterns) == ["audit_versions/a1_audit.py",
                                                           "migrations/versions/m1_main.py"]
    # A package resource needs a separator other than `os` (`:` is part of it), as in Alembic.
    (tmp_path / "alembic.ini").write_text(
        "[alembic]\nscript_location = %(here)s/migrations\n"
        "version_locations = %(here)s/audit_versions, pkg.db:versions\npath_separator = comma\n")
    assert file_patterns(target, str(tmp_path), []) == ["**/migrations/*.py", "audit_versions/*.py",
                                                        "pkg/db/versions/*.py"]
