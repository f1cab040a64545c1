"""One order for dependency graphs: parents first, ties by name."""

from __future__ import annotations

from graphlib import CycleError

import pytest

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


def test_migrations_come_after_their_dependencies_ties_by_name() -> None:
    nodes = {key: _node(key, deps) for key, deps in LINKS.items()}
    expected = ["catalog.0001", "catalog.0002", "contenttypes.0001", "auth.0001", "admin.0001",
                "contenttypes.0002", "auth.0002"]
    assert django.graph_order(nodes) == expected
