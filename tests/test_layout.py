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
