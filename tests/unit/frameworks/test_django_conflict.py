"""The fake-conflict plan, decided purely from one inspection answer (no Docker, no database)."""

from __future__ import annotations

import pytest

from runbook.errors import InputError
from runbook.frameworks.django import inspection as django
from runbook.frameworks.django.conflict import describe, plan_conflict, target_names

A = "0003_billing_payment"
B = "0003_billing_alter"


def _check(table: str, ok: bool) -> dict:
    return {"subject": f"table {table}", "ok": ok, "message": f"table {table} {'exists' if ok else 'no'}",
            "problem": None if ok else "missing"}


def _fake(app: str, name: str, tables: dict[str, bool], applied: bool = False) -> dict:
    return {"requested": f"{app}.{name}", "migration": f"{app}.{name}", "status": "proven", "applied": applied,
            "operations": [{"type": "CreateModel", "describe": f"Create model {t}", "status": "proven",
                            "checks": [_check(t, ok)]} for t, ok in tables.items()]}


def _inspection(*, files: list[str], rows: list[str], leaves: list[str], fakes: list[dict]) -> django.Inspection:
    nodes = [{"app": "healthcare", "name": n, "dependencies": [], "replaces": [], "initial": False,
              "applied": n in rows, "operations": []} for n in files]
    problems = [{"kind": "no-file", "migration": f"healthcare.{r}", "message": f"no file for {r}"}
                for r in rows if r not in files]
    conflicts = {"healthcare": leaves} if len(leaves) > 1 else {}
    return django.parse_inspection({
        "format": 1, "migrations": nodes, "applied": [["healthcare", r, None] for r in rows],
        "history_table": True, "leaves": {"healthcare": leaves}, "conflicts": conflicts,
        "problems": problems, "fake_check": fakes})


def test_old_file_gone_prunes_its_row_only() -> None:
    found = _inspection(files=["0002_x", B], rows=["0002_x", A, "0001_gone"], leaves=[B],
                        fakes=[_fake("healthcare", B, {"billings": True, "payments": True})])
    repair = plan_conflict(found, "", None)
    assert repair.fake == [f"healthcare.{B}"]
    assert repair.prune == [f"healthcare.{A}"]
    assert repair.other_orphans == ["healthcare.0001_gone"]
    assert not repair.keep and not repair.merge
    assert any("prune the row" in line for line in describe(repair))


def test_both_files_keep_and_merge() -> None:
    found = _inspection(files=["0002_x", A, B], rows=["0002_x", A], leaves=[A, B],
                        fakes=[_fake("healthcare", B, {"billings": True})])
    repair = plan_conflict(found, "healthcare", None)
    assert repair.keep == [f"healthcare.{A}"] and repair.merge and not repair.prune


def test_no_existing_table_is_not_a_conflict() -> None:
    found = _inspection(files=["0002_x", B], rows=["0002_x", A], leaves=[B],
                        fakes=[_fake("healthcare", B, {"billings": False})])
    repair = plan_conflict(found, "", None)
    assert not repair.needed and "creates a table that already exists" in repair.why_not


def test_tables_exist_but_no_other_side_is_not_a_conflict() -> None:
    found = _inspection(files=["0002_x", B], rows=["0002_x"], leaves=[B],
                        fakes=[_fake("healthcare", B, {"billings": True})])
    repair = plan_conflict(found, "", None)
    assert not repair.needed and "fake-migrations" in repair.why_not


def test_two_candidates_need_a_choice() -> None:
    found = _inspection(files=["0002_x", B], rows=["0002_x", A], leaves=[B],
                        fakes=[_fake("healthcare", B, {"billings": True}), _fake("other", "0002_y", {"t": True})])
    found.leaves["other"] = ["0002_y"]
    with pytest.raises(InputError, match="several"):
        plan_conflict(found, "", None)
    assert plan_conflict(found, "healthcare", None).fake == [f"healthcare.{B}"]


@pytest.mark.parametrize(("app", "migration", "expected"), [
    ("", "", ("", None)),
    ("healthcare", "", ("healthcare", None)),
    ("", "healthcare.0003_b", ("healthcare", "0003_b")),
    ("healthcare", "0003", ("healthcare", "0003")),
])
def test_target_names(app: str, migration: str, expected: tuple) -> None:
    assert target_names(app, migration) == expected


@pytest.mark.parametrize(("app", "migration"), [("", "0003_b"), ("a", "b.0003"), ("bad-app", ""), ("a", "x;y")])
def test_target_names_refuses(app: str, migration: str) -> None:
    with pytest.raises(InputError):
        target_names(app, migration)
