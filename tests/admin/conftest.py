"""Fixtures of the admin, key and lifecycle tests: a fresh database per test on each backend
(SQLite file, PostgreSQL) and the settings of a deployment rooted in ``tmp_path``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admin.support import settings_for
from tests.conftest import Pki, _postgres_database
from wmproxy.config import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own for this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/db/wmproxy.db"
    else:
        yield from _postgres_database()


@pytest.fixture
def settings(tmp_path: Path, fresh_url: str, pki: Pki) -> Settings:
    """A deployment under ``tmp_path/state`` on the fresh database (not initialised)."""
    return settings_for(tmp_path / "state", fresh_url, pki)
