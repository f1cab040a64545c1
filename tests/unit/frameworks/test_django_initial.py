"""fake-initial's plan: what it records, applies and refuses, decided from inspection answers alone."""

from __future__ import annotations

from runbook.frameworks.django import inspection as django
from runbook.frameworks.django.initial import plan_fake_initial


def _node(key, deps=(), applied=False, initial=True):
    app, name = key.split(".")
    return {"app": app, "name": name, "dependencies": [d.split(".") for d in deps], "replaces": [],
            "initial": initial, "applied": applied, "operations": []}


def _found(*nodes, fake=()):
    return django.parse_inspection({
        "format": 1, "django": "5.2", "settings": "s", "migrations": list(nodes), "applied": [],
        "history_table": True, "leaves": {}, "conflicts": {}, "problems": [], "fake_check": list(fake)})


def _check(subject, ok, problem=None):
    return {"subject": subject, "ok": ok, "message": f"{subject} {ok}",
            "problem": problem if ok is False else ("cannot-prove" if ok is None else None)}


def _fake(key, *ops, initial=True):
    return {"requested": key, "migration": key, "status": "x", "applied": False, "initial": initial,
            "operations": [{"type": t, "describe": t, "status": "x", "note": None, "checks": c} for t, c in ops]}


NODES = [_node("contenttypes.0001_initial"), _node("contenttypes.0002_remove", ["contenttypes.0001_initial"],
                                                   initial=False)]


def test_a_later_removal_proves_both_and_both_are_recorded() -> None:
    checked = _found(*NODES, fake=[
        _fake("contenttypes.0001_initial", ("CreateModel", [_check("table ct", True),
                                                              _check("column ct.name", False, "missing")])),
        _fake("contenttypes.0002_remove", ("RemoveField", [_check("column ct.name", True)]), initial=False)])
    plan = plan_fake_initial(_found(*NODES), checked, None)
    assert plan.record == ["contenttypes.0001_initial", "contenttypes.0002_remove"] and not plan.apply
    assert not plan.refusals and "not initial" in plan.reasons["contenttypes.0002_remove"]


def test_absent_changes_are_applied_and_so_is_what_depends_on_them() -> None:
    nodes = [_node("a.0001_initial"), _node("a.0002_more", ["a.0001_initial"], initial=False),
             _node("a.0003_data", ["a.0002_more"], initial=False)]
    checked = _found(*nodes, fake=[
        _fake("a.0001_initial", ("CreateModel", [_check("table a_t", True)])),
        _fake("a.0002_more", ("AddField", [_check("column a_t.x", False, "missing")]), initial=False),
        _fake("a.0003_data", ("RunPython", [_check("operation RunPython", None)]), initial=False)])
    plan = plan_fake_initial(_found(*nodes), checked, None)
    assert plan.record == ["a.0001_initial"]
    assert plan.apply == ["a.0002_more", "a.0003_data"]


def test_a_partly_present_migration_refuses_the_whole_plan() -> None:
    nodes = [_node("a.0001_initial")]
    checked = _found(*nodes, fake=[_fake("a.0001_initial", ("CreateModel", [
        _check("table a_t", True), _check("column a_t.x", False, "missing")]))])
    plan = plan_fake_initial(_found(*nodes), checked, None)
    assert plan.refusals == ["a.0001_initial: partly in the schema, neither recorded nor applied: column a_t.x False"]
    assert plan.as_data()["needed"] is False


def test_a_data_migration_nothing_proven_needs_is_recorded_only_when_accepted() -> None:
    nodes = [_node("auth.0011_update", initial=False)]
    checked = _found(*nodes, fake=[_fake("auth.0011_update", ("RunPython", [_check("operation RunPython", None)]),
                                         initial=False)])
    plan = plan_fake_initial(_found(*nodes), checked, None, ["auth.0011_update"])
    assert plan.record == ["auth.0011_update"] and plan.unproven_code
    refused = plan_fake_initial(_found(*nodes), checked, None)
    assert not refused.record and not refused.apply
    assert "pass --var data_migrations=auth.0011_update" in refused.refusals[0]


def test_an_app_limits_the_plan_to_it_and_its_unapplied_ancestors() -> None:
    nodes = [_node("a.0001_initial"), _node("b.0001_initial", ["a.0001_initial"]), _node("c.0001_initial")]
    checked = _found(*nodes, fake=[_fake(k, ("CreateModel", [_check(f"table {k}", True)]))
                                   for k in ("a.0001_initial", "b.0001_initial")])
    plan = plan_fake_initial(_found(*nodes), checked, ["b"])
    assert plan.record == ["a.0001_initial", "b.0001_initial"]
