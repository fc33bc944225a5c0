"""wmproxy.jdl: the modules import each other without a circle, and only what a pure layer may."""

from __future__ import annotations

import ast
from pathlib import Path

import wmproxy.jdl
from tests.support import imported_modules

PACKAGE = Path(wmproxy.jdl.__file__).parent


def _graph() -> dict[str, set[str]]:
    modules = {f"wmproxy.jdl.{p.stem}": p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    return {name: imported_modules(path, with_names=True) & modules.keys() for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        stack.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                return [*stack[stack.index(target):], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name)):
            return found
    return None


class TestJdlImportGraph:
    def test_the_split_modules_exist(self) -> None:
        assert {"attributes", "sandbox", "graph", "parametric", "compound", "description", "registered"} <= {
            name.rsplit(".", 1)[1] for name in _graph()
        }

    def test_the_modules_of_wmproxy_jdl_import_each_other_without_a_cycle(self) -> None:
        assert _cycle(_graph()) is None

    def test_the_cycle_finder_finds_a_planted_cycle(self) -> None:
        graph = _graph()
        graph["wmproxy.jdl.attributes"] = graph["wmproxy.jdl.attributes"] | {"wmproxy.jdl.registered"}

        cycle = _cycle(graph)

        assert cycle is not None and cycle[0] == cycle[-1]
        assert "wmproxy.jdl.registered" in cycle

    def test_no_private_name_is_imported_across_modules(self) -> None:
        for path in PACKAGE.glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wmproxy"):
                    private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__future__"]
                    assert not private, f"{path.name} imports {private} from {node.module}"

    def test_jdl_imports_no_server_layer(self) -> None:
        forbidden = ("wmproxy.store", "wmproxy.services", "wmproxy.soap", "wmproxy.sandbox", "sqlalchemy", "spyne")
        for path in PACKAGE.glob("*.py"):
            for name in imported_modules(path, with_names=True):
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
