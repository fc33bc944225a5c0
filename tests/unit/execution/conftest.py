"""Fixtures of the execution tests: a throwaway local account and a work root every account can traverse."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.execution.wrapper_support import create_account
from wmproxy.execution.identity import Account


@pytest.fixture(scope="session")
def job_account() -> Iterator[Account]:
    yield from create_account("wmpwrap01")


@pytest.fixture
def work_root() -> Iterator[Path]:
    """A work root every account can traverse (pytest's tmp_path is 0700 root)."""
    root = Path(tempfile.mkdtemp(prefix="wmpwrap-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
