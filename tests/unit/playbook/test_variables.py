"""--var KEY=VALUE into typed playbook variables; unknown, missing or mistyped is exit 2."""

from __future__ import annotations

import pytest

from runbook.errors import VariableError
from runbook.playbook.model import parse_playbook
from runbook.playbook.variables import parse_assignments, resolve_variables

PLAYBOOK = parse_playbook(
    """\
name: demo
description: d
variables:
  app: {required: true, help: the Django app label}
  count: {type: int, default: 3}
  force: {type: bool}
  apps: {type: list}
  mode: {choices: [fake, apply], default: fake}
  level: {type: int, choices: [1, 2], default: 1}
steps:
  - name: s
    run: [echo]
""",
    "demo.yml",
)


def resolve(**given: str):
    return resolve_variables(PLAYBOOK, {"app": "shop", **given})


def test_parse_assignments():
    assert parse_assignments(["a=1", "url=postgresql://u@h/db?x=y", "empty=", " sp =v"]) == {
        "a": "1",
        "url": "postgresql://u@h/db?x=y",
        "empty": "",
        "sp": "v",
    }


@pytest.mark.parametrize("pair", ["novalue", "=x", " =x"])
def test_parse_assignments_refuses_non_pairs(pair):
    with pytest.raises(VariableError) as info:
        parse_assignments([pair])
    assert "is not KEY=VALUE" in str(info.value)
    assert info.value.exit_code == 2


def test_parse_assignments_refuses_twice():
    with pytest.raises(VariableError) as info:
        parse_assignments(["a=1", "a=2"])
    assert str(info.value) == "--var a given twice"


def test_defaults_and_empty_values():
    assert resolve() == {
        "app": "shop", "count": 3, "force": None, "apps": [], "mode": "fake", "level": 1,
    }


def test_unknown_variable_names_the_known_ones():
    with pytest.raises(VariableError) as info:
        resolve(nope="1")
    message = str(info.value)
    assert "unknown variable nope for playbook demo" in message
    assert "(it takes: app, apps, count, force, level, mode)" in message
    assert "runbook show demo" in message
    assert info.value.exit_code == 2


def test_unknown_variable_when_playbook_takes_none():
    pb = parse_playbook("name: bare\ndescription: d\nsteps:\n  - name: s\n    run: [echo]\n", "b.yml")
    with pytest.raises(VariableError) as info:
        resolve_variables(pb, {"x": "1"})
    assert "(it takes: none)" in str(info.value)


def test_missing_required_variable():
    with pytest.raises(VariableError) as info:
        resolve_variables(PLAYBOOK, {})
    err = info.value
    assert err.message == "missing variable app for playbook demo: the Django app label"
    assert err.hint == "pass --var app=VALUE"
    assert "--var app=VALUE" in str(err)


def test_int_conversion():
    assert resolve(count="42")["count"] == 42
    assert resolve(count="-1")["count"] == -1


def test_bad_int():
    with pytest.raises(VariableError) as info:
        resolve(count="ten")
    assert str(info.value) == "variable count must be a whole number, got 'ten'"


@pytest.mark.parametrize(("raw", "value"), [("yes", True), ("TRUE", True), ("1", True), ("on", True),
                                            ("no", False), ("false", False), ("0", False), ("", False)])
def test_bool_conversion(raw, value):
    assert resolve(force=raw)["force"] is value


def test_bad_bool():
    with pytest.raises(VariableError) as info:
        resolve(force="maybe")
    assert str(info.value) == "variable force must be true or false, got 'maybe'"


def test_list_conversion():
    assert resolve(apps="a, b,,c ")["apps"] == ["a", "b", "c"]
    assert resolve(apps="")["apps"] == []


def test_choices():
    assert resolve(mode="apply")["mode"] == "apply"
    assert resolve(level="2")["level"] == 2
    with pytest.raises(VariableError) as info:
        resolve(mode="delete")
    assert str(info.value) == "variable mode must be one of fake, apply, got 'delete'"
    with pytest.raises(VariableError) as info:
        resolve(level="3")
    assert str(info.value) == "variable level must be one of 1, 2, got 3"


def test_choices_not_applied_to_a_variable_left_unset():
    # Choices, no default, not required: leaving it out is not a wrong choice (`runbook validate` does this).
    pb = parse_playbook(
        "name: d\ndescription: d\nvariables:\n  strategy: {choices: [linearize, merge]}\n"
        "steps:\n  - name: s\n    run: [echo]\n",
        "d.yml",
    )
    assert resolve_variables(pb, {}) == {"strategy": ""}
    assert resolve_variables(pb, {"strategy": "merge"}) == {"strategy": "merge"}
    with pytest.raises(VariableError):
        resolve_variables(pb, {"strategy": "rebase"})


def test_string_default_converted_by_type():
    pb = parse_playbook(
        "name: d\ndescription: d\nvariables:\n  n: {type: int, default: '7'}\n"
        "  l: {type: list, default: 'a,b'}\n  b: {type: bool, default: 'yes'}\n"
        "steps:\n  - name: s\n    run: [echo]\n",
        "d.yml",
    )
    assert resolve_variables(pb, {}) == {"n": 7, "l": ["a", "b"], "b": True}


@pytest.mark.parametrize("spec, given", [
    ("db_password: {type: int}", "db_password=s3cr3t-value"),
    ("code: {type: bool, secret: true}", "code=s3cr3t-value"),
    ("api_token: {choices: [a, b]}", "api_token=s3cr3t-value"),
])
def test_a_bad_secret_value_is_not_echoed(spec, given):
    pb = parse_playbook(f"name: d\ndescription: d\nvariables:\n  {spec}\nsteps:\n  - name: s\n    run: [echo]\n",
                        "d.yml")
    with pytest.raises(VariableError) as info:
        resolve_variables(pb, parse_assignments([given]))
    assert "s3cr3t" not in str(info.value)
    assert "******" in str(info.value)

