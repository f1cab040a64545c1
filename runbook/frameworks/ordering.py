"""Order a dependency graph with graphlib: each node after what it depends on, ties by name.

Reports and playbook variables list migrations in this order, so it must be the same on every run and
on every machine: of the nodes that are ready together, the smallest comes first.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from graphlib import TopologicalSorter
from typing import Any


def dependency_order(parents: Mapping[Any, Iterable[Any]]) -> list[Any]:
    """Return the nodes, each after its parents, the smallest ready node first; raise graphlib.CycleError.

    A parent that is not a key of `parents` is ordered too; filter the links first to leave it out.
    """
    sorter = TopologicalSorter(parents)
    sorter.prepare()
    ready: list[Any] = []
    order: list[Any] = []
    while sorter.is_active():
        for node in sorter.get_ready():
            heapq.heappush(ready, node)
        node = heapq.heappop(ready)
        order.append(node)
        sorter.done(node)
    return order
