"""Finding playbooks: built-in ones, every one valid, and a project's own overriding them."""

from __future__ import annotations

import pytest

from runbook.errors import InputError
from runbook.playbook.model import load_playbook
from runbook.playbook.plan import build_plan
from runbook.playbook.registry import builtin_dir, discover, find
from runbook.playbook.variables import resolve_variables

OVERRIDE = """\
name: fake-initial
description: The project's own fake-initial.
steps:
  - name: only step
    run: [echo, project]
"""

BUILTINS = sorted(p for p in builtin_dir().iterdir() if p.suffix in (".yml", ".yaml"))


def test_builtin_playbooks_are_found():
    refs = discover([])
    assert "fake-initial" in refs
    ref = refs["fake-initial"]
    assert ref.origin == "built-in"
    assert ref.path.parent == builtin_dir()
    pb = find("fake-initial", [])
    assert pb.name == "fake-initial"
    assert pb.framework == "django" and pb.destructive


@pytest.mark.parametrize("path", BUILTINS, ids=[p.stem for p in BUILTINS])
def test_every_builtin_playbook_validates(path):
    pb = load_playbook(path)
    assert pb.name == path.stem, "a playbook's name must match its file name"
    assert pb.description.strip()
    # Its templates must render with the defaults (required variables given a dummy value).
    given = {k: "1" if v.type in ("int", "bool") else "x" for k, v in pb.variables.items()
             if v.required and v.default is None}
    for key, spec in pb.variables.items():
        if key in given and spec.choices:
            given[key] = str(spec.choices[0])
    build_plan(pb, resolve_variables(pb, given))


def test_builtins_ship_at_least_one():
    assert BUILTINS


def test_project_dir_overrides_builtin(tmp_path):
    (tmp_path / "fake-initial.yml").write_text(OVERRIDE)
    (tmp_path / "own.yaml").write_text(OVERRIDE.replace("name: fake-initial", "name: own"))
    (tmp_path / "notes.txt").write_text("not a playbook")
    refs = discover([tmp_path])
    assert refs["fake-initial"].path == tmp_path / "fake-initial.yml"
    assert refs["fake-initial"].origin == str(tmp_path)
    assert refs["own"].path == tmp_path / "own.yaml"
    assert "notes" not in refs
    pb = find("fake-initial", [tmp_path])
    assert pb.description == "The project's own fake-initial."
    assert pb.steps[0].run == ["echo", "project"]


def test_later_dirs_override_earlier(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "x.yml").write_text(OVERRIDE.replace("name: fake-initial", "name: x"))
    (second / "x.yml").write_text(OVERRIDE.replace("name: fake-initial", "name: x").replace("project]", "b]"))
    assert find("x", [first, second]).steps[0].run == ["echo", "b"]


def test_missing_extra_dir_is_skipped(tmp_path):
    assert "fake-initial" in discover([tmp_path / "does-not-exist"])


def test_find_by_path(tmp_path):
    path = tmp_path / "mine.yml"
    path.write_text(OVERRIDE.replace("name: fake-initial", "name: mine"))
    assert find(str(path), []).name == "mine"


def test_unknown_name_lists_known_names(tmp_path):
    (tmp_path / "own.yml").write_text(OVERRIDE.replace("name: fake-initial", "name: own"))
    with pytest.raises(InputError) as info:
        find("fix-everything", [tmp_path])
    message = str(info.value)
    assert message.startswith("no playbook named 'fix-everything' (known: ")
    known = message.split("(known: ", 1)[1].split(")", 1)[0].split(", ")
    assert "fake-initial" in known and "own" in known
    assert known == sorted(known)
    assert "runbook list" in message
    assert info.value.exit_code == 2
