"""The test tree's layout: test modules never import each other; shared helpers live in support
modules (tests/support.py, tests/voms_support.py, ...), which pytest does not collect."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports (absolute names; ``from . import x`` gives ``x``), at any depth."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.module:
                names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" if node.module else alias.name for alias in node.names)
    return names


def imported_test_modules(names: list[str]) -> list[str]:
    return [name for name in names if name.rsplit(".", 1)[-1].startswith("test_")]


def test_no_module_under_tests_imports_a_test_module() -> None:
    offenders = {
        str(path.relative_to(TESTS)): found
        for path in sorted(TESTS.rglob("*.py"))
        if (found := imported_test_modules(imported_modules(path)))
    }
    assert offenders == {}, "move the shared helpers into a support module: " + repr(offenders)


def test_the_check_sees_every_import_form(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text(
        "import tests.unit.test_a\n"
        "from tests.integration.test_b import helper\n"
        "from tests.unit.execution import test_c as c\n"
        "from . import test_d\n"
        "def f():\n    import tests.test_e\n"
        "from tests.support import wait_for\n"
    )
    assert imported_test_modules(imported_modules(module)) == [
        "tests.unit.test_a", "tests.integration.test_b", "tests.unit.execution.test_c", "test_d", "tests.test_e",
    ]


def test_every_long_module_named_for_the_order_exists() -> None:
    """``tests/conftest.py`` runs :data:`~tests.conftest.LONG_MODULES` first (CI's time); a file
    renamed or removed would silently drop out of that order."""
    from tests.conftest import LONG_MODULES

    root = TESTS.parent
    assert [name for name in LONG_MODULES if not (root / name).is_file()] == []


def test_the_long_modules_come_first_longest_first_then_the_files_with_most_tests() -> None:
    from tests.conftest import LONG_MODULES, _longest_first

    class Item:
        def __init__(self, nodeid: str) -> None:
            self.nodeid = nodeid

    wall, start = "tests/integration/test_wall_time.py", "tests/admin/test_process_start.py"
    names = ["tests/unit/test_a.py::t1", f"{wall}::t1", "tests/unit/test_b.py::t1", "tests/unit/test_b.py::t2",
             f"{start}::t1", f"{wall}::t2"]
    items = [Item(name) for name in names]
    _longest_first(items)  # type: ignore[arg-type]
    first, second = sorted((wall, start), key=lambda name: -LONG_MODULES[name])
    assert [item.nodeid for item in items] == [
        *(name for name in names if name.startswith(first)), *(name for name in names if name.startswith(second)),
        "tests/unit/test_b.py::t1", "tests/unit/test_b.py::t2", "tests/unit/test_a.py::t1"]
