"""``alembic revision`` writes a file that passes the project's ruff configuration
(wmproxy/migrations/script.py.mako plus the post-write hook in alembic.ini)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

REPO = Path(__file__).resolve().parents[1]


def ruff(path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *options, str(path)],
                          cwd=path.parent, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("hook", [True, False], ids=["with-hook", "template-alone"])
def test_a_new_revision_is_ruff_clean(tmp_path: Path, hook: bool) -> None:
    """With the hook the file is clean; the template alone leaves at most the imports an
    empty revision does not use yet (F401), which the hook removes."""
    for name in ("alembic.ini", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "wmproxy" / "migrations", tmp_path / "wmproxy" / "migrations",
                    ignore=shutil.ignore_patterns("__pycache__"))
    config = Config(str(tmp_path / "alembic.ini"))
    if not hook:
        config.set_section_option("post_write_hooks", "hooks", "")
    command.revision(config, message="probe the template", rev_id="9999")
    (new,) = (tmp_path / "wmproxy" / "migrations" / "versions").glob("9999_*.py")
    text = new.read_text()
    assert "revision: str = '9999'" in text and "def upgrade() -> None:" in text, text
    lint = ruff(new) if hook else ruff(new, "--ignore", "F401")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    compile(text, str(new), "exec")
