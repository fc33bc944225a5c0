"""The layers import one way (house style §2): the inner layers never import an edge.

``services``, ``store``, ``jdl``, ``security`` and ``sandbox.storage`` hold the rules and the data;
``soap``, ``sandbox.http``, ``renewal``, ``execution``, ``client`` and ``cli`` are edges that call them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import wmproxy
from tests.support import imported_modules

ROOT = Path(wmproxy.__file__).parent
INNER = ("services", "store", "jdl", "security", "sandbox/storage.py", "sandbox/confined.py", "sandbox/trees.py",
         "errors.py", "domain.py", "config.py")
EDGES = ("wmproxy.soap", "wmproxy.sandbox.http", "wmproxy.renewal", "wmproxy.execution", "wmproxy.client",
         "wmproxy.cli", "wmproxy.admin", "spyne", "zeep", "gunicorn", "werkzeug", "click", "rich")


def inner_files() -> list[Path]:
    files: list[Path] = []
    for entry in INNER:
        path = ROOT / entry
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def edge_imports(path: Path) -> list[str]:
    return sorted(m for m in imported_modules(path) if any(m == e or m.startswith(e + ".") for e in EDGES))


@pytest.mark.parametrize("path", inner_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_an_inner_layer_imports_no_edge(path: Path) -> None:
    assert edge_imports(path) == []


def test_the_check_sees_an_edge_import(tmp_path: Path) -> None:
    planted = tmp_path / "bad.py"
    planted.write_text("def f():\n    from wmproxy.execution.identity import install_proxy\nimport spyne.model\n")
    assert edge_imports(planted) == ["spyne.model", "wmproxy.execution.identity"]
