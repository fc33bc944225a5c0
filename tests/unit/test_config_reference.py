"""docs/configuration.md is generated from the settings dataclasses and kept current."""

from __future__ import annotations

from pathlib import Path

from wmproxy import config
from wmproxy.config_reference import main, render

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_reference_in_docs_is_current() -> None:
    assert REFERENCE.read_text() == render(), "regenerate: python -m wmproxy.config_reference > docs/configuration.md"


def test_every_key_is_documented_with_its_variable() -> None:
    text = render()
    for section, cls in config.areas().items():
        assert f"## [{section}]" in text
        for key in config.keys(cls):
            row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |")
                       and config.env_name(section, key) in line)
            assert "(undocumented)" not in row, f"[{section}] {key}: describe it under Attributes: in its docstring"


def test_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(render().replace("[database]", "[databse]"))
    assert main(["--check", str(stale)]) == 1
    stale.write_text(render())
    assert main(["--check", str(stale)]) == 0
