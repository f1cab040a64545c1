"""One order for dependency graphs, in runbook and in the script the backend runs: parents first, ties by name."""

from __future__ import annotations

import types
from graphlib import CycleError

import pytest

from runbook.frameworks import backend
from runbook.frameworks.django import inspection as django
from runbook.frameworks.ordering import dependency_order


def test_parents_come_first_and_ties_go_by_name() -> None:
    # c depends on b; a, b and d are ready together: a, b, then c (ready now and smaller than d), then d.
    assert dependency_order({"d": [], "c": ["b"], "b": [], "a": []}) == ["a", "b", "c", "d"]
    assert dependency_order({"b": ["z"], "a": ["b"], "z": []}) == ["z", "b", "a"]


def test_a_cycle_is_named() -> None:
    with pytest.raises(CycleError) as info:
        dependency_order({"a": ["b"], "b": ["a"], "c": []})
    assert set(info.value.args[1]) == {"a", "b"}


def _node(key: str, deps: list[str]) -> django.MigrationNode:
    app, name = key.split(".")
    return django.MigrationNode(app, name, deps, [], not deps, False, [])


# contenttypes before auth before admin, as in Django; catalog on its own; a dependency on a missing node.
LINKS = {"admin.0001": ["auth.0001", "contenttypes.0001"], "auth.0001": ["contenttypes.0001"],
         "contenttypes.0001": [], "contenttypes.0002": ["contenttypes.0001"],
         "auth.0002": ["auth.0001", "contenttypes.0002"],
         "catalog.0001": [], "catalog.0002": ["catalog.0001", "gone.0001"]}


def test_migrations_in_runbook_and_in_the_backend_script_share_the_order() -> None:
    nodes = {key: _node(key, deps) for key, deps in LINKS.items()}
    expected = ["catalog.0001", "catalog.0002", "contenttypes.0001", "auth.0001", "admin.0001",
                "contenttypes.0002", "auth.0002"]
    assert django.graph_order(nodes) == expected
    # The script orders Django's graph: nodes keyed (app, name) whose parents have a key.
    script = types.ModuleType("inside_django_inspect")
    exec(compile(backend.script_source("django_inspect.py"), "django_inspect", "exec"), script.__dict__)
    keys = {tuple(k.split(".")): [tuple(d.split(".")) for d in deps if d in LINKS] for k, deps in LINKS.items()}
    node_map = {k: types.SimpleNamespace(parents=[types.SimpleNamespace(key=p) for p in parents])
                for k, parents in keys.items()}
    graph = types.SimpleNamespace(nodes=keys, node_map=node_map)
    order = script.graph_order(graph)
    assert [f"{a}.{n}" for a, n in sorted(order, key=order.__getitem__)] == expected
