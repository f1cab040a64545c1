"""Expectations: every kind, holding and not, and the text of each problem."""

from __future__ import annotations

import pytest

from runbook.playbook.expect import check_expectations, dig
from runbook.playbook.model import Expect


def check(spec: dict, **result) -> list[str]:
    result.setdefault("exit_code", 0)
    return check_expectations(Expect.model_validate(spec), **result)


def test_default_expects_exit_zero():
    assert check({}) == []
    assert check({}, exit_code=2) == ["exit code 2, expected 0"]


def test_exit_code():
    assert check({"exit_code": 3}, exit_code=3) == []
    assert check({"exit_code": 3}, exit_code=0) == ["exit code 0, expected 3"]
    assert check({"exit_code": None}, exit_code=9) == []


def test_stdout_contains():
    assert check({"stdout_contains": "ok"}, stdout="all ok\n") == []
    assert check({"stdout_contains": ["a", "b"]}, stdout="a\n") == ["stdout does not contain 'b'"]


def test_stdout_not_contains():
    assert check({"stdout_not_contains": "[ ]"}, stdout="[X] 0001\n") == []
    assert check({"stdout_not_contains": ["[ ]", "x"]}, stdout="[ ] 0002\n") == ["stdout contains '[ ]'"]


def test_stdout_regex_is_multiline():
    assert check({"stdout_regex": "^head: [0-9a-f]+$"}, stdout="x\nhead: ae10\n") == []
    assert check({"stdout_regex": "^head"}, stdout="no head\n") == ["stdout does not match /^head/"]


def test_stderr_kinds():
    spec = {"stderr_contains": "boom", "stderr_not_contains": ["warn"], "stderr_regex": "x+"}
    assert check(spec, stderr="boom xx\n") == []
    assert check(spec, stderr="warn\n") == [
        "stderr does not contain 'boom'",
        "stderr contains 'warn'",
        "stderr does not match /x+/",
    ]


def test_streams_kept_apart():
    assert check({"stdout_contains": "err"}, stderr="err") == ["stdout does not contain 'err'"]


def test_json_paths_on_parsed_output():
    parsed = {"heads": [{"rev": "a1"}, {"rev": "b2"}], "count": 2, "none": None}
    assert check({"json": {"heads.1.rev": "b2", "count": 2, "none": None, "heads.-1.rev": "b2"}},
                 parsed=parsed) == []
    assert check({"json": {"heads.0.rev": "zz", "missing.x": 1, "heads.5": 1}}, parsed=parsed) == [
        "JSON heads.0.rev is 'a1', expected 'zz'",
        "JSON has no 'missing.x'",
        "JSON has no 'heads.5'",
    ]


def test_json_paths_fall_back_to_rows():
    assert check({"json": {"0.1": "shop"}}, rows=[[1, "shop"]]) == []
    assert check({"json": {"0.1": "x"}}, rows=[[1, "shop"]]) == ["JSON 0.1 is 'shop', expected 'x'"]


def test_rows():
    assert check({"rows": [[1, "a"], [2, "b"]]}, rows=[[1, "a"], [2, "b"]]) == []
    assert check({"rows": [[1, "a"]]}, rows=[[1, "b"]]) == ["rows are [[1, 'b']], expected [[1, 'a']]"]
    assert check({"rows": []}, rows=None) == ["rows are None, expected []"]


def test_scalar():
    assert check({"scalar": 3}, rows=[[3]]) == []
    assert check({"scalar": 3}, rows=[["3"]]) == []
    assert check({"scalar": 0}, rows=[[0]]) == []
    assert check({"scalar": 3}, rows=[[4]]) == ["value is 4, expected 3"]
    assert check({"scalar": False}, rows=[[True]]) == ["value is True, expected False"]


@pytest.mark.parametrize("rows", [None, [], [[1], [2]], [[1, 2]]])
def test_scalar_needs_one_value(rows):
    assert check({"scalar": 1}, rows=rows) == [f"expected one value, got {rows!r}"]


def test_scalar_bounds():
    spec = {"scalar_min": 1, "scalar_max": 2}
    assert check(spec, rows=[[1]]) == []
    assert check(spec, rows=[["2"]]) == []
    assert check(spec, rows=[[0]]) == ["value 0 is below 1.0"]
    assert check(spec, rows=[[3]]) == ["value 3 is above 2.0"]
    assert check(spec, rows=[["abc"]]) == ["value 'abc' is not a number"]
    assert check(spec, rows=[[None]]) == ["value None is not a number"]


def test_all_problems_listed_together():
    problems = check({"exit_code": 0, "stdout_contains": "done", "rows": [[1]]}, exit_code=1, rows=[[2]])
    assert problems == ["exit code 1, expected 0", "stdout does not contain 'done'",
                        "rows are [[2]], expected [[1]]"]


def test_long_values_are_shortened():
    problems = check({"rows": [[1]]}, rows=[["x" * 500]])
    assert len(problems) == 1
    assert problems[0].startswith("rows are [['xxx")
    assert "..." in problems[0] and len(problems[0]) < 300


def test_dig():
    data = {"a": [{"b": 1}], "c": {"d": None}}
    assert dig(data, "a.0.b") == 1
    assert dig(data, "c.d") is None
    assert dig(data, "") is data
    missing = dig(data, "a.1")
    assert dig(data, "a.x") is missing and dig(data, "c.d.e") is missing
