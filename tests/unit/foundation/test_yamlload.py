"""YAML loading: safe_load semantics, duplicate keys refused, a line for every key."""

from __future__ import annotations

import pytest

from runbook.errors import ConfigError, InputError
from runbook.yamlload import load_yaml_with_lines, locate

TEXT = """\
name: demo
steps:
  - name: first
    run: [echo, hi]
  - name: second
    sql: select 1
"""


def test_data_and_line_of_every_key():
    data, lines = load_yaml_with_lines(TEXT, "pb.yml")
    assert data == {
        "name": "demo",
        "steps": [{"name": "first", "run": ["echo", "hi"]}, {"name": "second", "sql": "select 1"}],
    }
    assert lines[("name",)] == 1
    assert lines[("steps",)] == 2
    assert lines[("steps", 0)] == 3
    assert lines[("steps", 1, "sql")] == 6
    assert lines[("steps", 0, "run", 1)] == 4


def test_empty_text_is_none():
    assert load_yaml_with_lines("", "pb.yml") == (None, {})
    assert load_yaml_with_lines("# only a comment\n", "pb.yml") == (None, {})


def test_duplicate_key_rejected_with_both_lines():
    text = "name: a\nsteps:\n  - name: x\n    run: [a]\n    name: y\n"
    with pytest.raises(InputError) as info:
        load_yaml_with_lines(text, "pb.yml")
    assert str(info.value) == "pb.yml:5: steps.0.name: duplicate key (first given on line 3)"
    assert info.value.exit_code == 2


def test_same_key_in_different_mappings_is_fine():
    data, _ = load_yaml_with_lines("a: {x: 1}\nb: {x: 2}\n", "f.yml")
    assert data == {"a": {"x": 1}, "b": {"x": 2}}


def test_syntax_error_gives_file_and_line():
    with pytest.raises(InputError) as info:
        load_yaml_with_lines("name: x\nsteps: [\n  - a\n", "pb.yml")
    message = str(info.value)
    assert message.startswith("pb.yml:")
    line = int(message.split(":")[1])
    assert 2 <= line <= 4


def test_error_class_is_chosen_by_the_caller():
    with pytest.raises(ConfigError):
        load_yaml_with_lines("a: 1\na: 2\n", "runbook.yml", error=ConfigError)


def test_safe_load_refuses_python_tags():
    with pytest.raises(InputError) as info:
        load_yaml_with_lines("x: !!python/object/apply:os.system [echo hi]\n", "pb.yml")
    assert str(info.value).startswith("pb.yml:1:")


def test_locate_takes_longest_known_prefix():
    _, lines = load_yaml_with_lines(TEXT, "pb.yml")
    assert locate(lines, ("steps", 1, "sql")) == 6
    # pydantic adds parts the file does not have (union members, missing keys).
    assert locate(lines, ("steps", 1, "str", "sql")) == 6
    assert locate(lines, ("steps", 0, "expect")) == 3
    assert locate(lines, ("description",)) == 1
    assert locate(lines, ()) == 1


def test_duplicate_key_in_a_flow_mapping_names_its_path():
    with pytest.raises(InputError) as info:
        load_yaml_with_lines("variables:\n  app: {default: a, default: b}\n", "pb.yml")
    assert str(info.value) == "pb.yml:2: variables.app.default: duplicate key (first given on line 2)"


def test_keys_equal_as_text_but_not_as_values_are_two_keys():
    data, _ = load_yaml_with_lines("expect:\n  json: {'1': a, 1: b}\n", "pb.yml")
    assert data == {"expect": {"json": {"1": "a", 1: "b"}}}
