"""wmproxy.jdl.graph: the one topological sort (DAG expansion, DAG template, CLI)."""

from __future__ import annotations

import pytest

from wmproxy.jdl.graph import CycleError, topological_order


class TestTopologicalOrder:
    def test_parents_come_before_children_and_ties_go_by_name(self) -> None:
        order = topological_order(["d", "c", "b", "a"], [("c", "a"), ("d", "b")])
        assert order == ["c", "a", "d", "b"]

    def test_nodes_without_edges_are_sorted_by_name(self) -> None:
        assert topological_order(["b", "a", "c"], []) == ["a", "b", "c"]

    def test_a_diamond_lists_every_node_once(self) -> None:
        edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
        assert topological_order(["a", "b", "c", "d"], edges) == ["a", "b", "c", "d"]

    def test_a_cycle_is_reported_with_its_path(self) -> None:
        with pytest.raises(CycleError) as info:
            topological_order(["a", "b", "c", "x"], [("x", "a"), ("a", "b"), ("b", "c"), ("c", "a")])
        cycle = info.value.cycle
        assert cycle[0] == cycle[-1]
        assert set(cycle) == {"a", "b", "c"}
        assert str(info.value) == " -> ".join(cycle)

    def test_a_self_loop_is_a_cycle(self) -> None:
        with pytest.raises(CycleError) as info:
            topological_order(["a"], [("a", "a")])
        assert info.value.cycle == ["a", "a"]

    def test_an_edge_to_an_unknown_node_is_a_key_error(self) -> None:
        with pytest.raises(KeyError):
            topological_order(["a"], [("a", "zz")])
