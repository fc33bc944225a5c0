"""Directed graphs of DAG nodes: the one topological sort and cycle finder of the project.

Used by DAG expansion (:mod:`wmproxy.jdl.compound`), the DAG template
(:mod:`wmproxy.jdl.templates`) and the CLI. Each caller turns :class:`CycleError` into
its own fault. Pure: no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence


class CycleError(ValueError):
    """The dependencies loop; ``cycle`` is ``[a, b, ..., a]`` (parent before child)."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__(" -> ".join(cycle))
        self.cycle = cycle


def topological_order(names: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """Kahn's algorithm: parents before children, ties broken by name.

    Args:
        names: every node once.
        edges: ``(parent, child)`` pairs over ``names``.

    Returns:
        Every name once.

    Raises:
        CycleError: the edges have a cycle (the error names one).
        KeyError: an edge names a node not in ``names``.
    """
    pairs = list(edges)
    children: dict[str, list[str]] = {name: [] for name in names}
    waiting = dict.fromkeys(names, 0)
    for parent, child in pairs:
        children[parent].append(child)
        waiting[child] += 1
    ready = [name for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for child in children[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    if len(order) < len(waiting):
        left = {name for name, count in waiting.items() if count > 0}
        raise CycleError(_find_cycle(left, pairs))
    return order


def _find_cycle(left: set[str], pairs: list[tuple[str, str]]) -> list[str]:
    """A cycle among the nodes Kahn could not order, as ``[a, b, ..., a]``.

    Every such node still has a parent among them, so walking from parent to parent
    must come back to a node already seen.
    """
    parents: dict[str, list[str]] = {name: [] for name in left}
    for parent, child in pairs:
        if parent in left and child in left:
            parents[child].append(parent)
    walk, seen = [min(left)], {min(left): 0}
    while True:
        parent = min(parents[walk[-1]])
        if parent in seen:
            cycle = [*walk[seen[parent]:], parent]
            return cycle[::-1]
        seen[parent] = len(walk)
        walk.append(parent)
