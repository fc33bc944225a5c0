"""Fixtures of the admin, key and lifecycle tests: a fresh database per test on each backend
(SQLite file, PostgreSQL) and the settings of a deployment rooted in ``tmp_path``."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.admin.support import SERVICE_USER, settings_for
from tests.conftest import Pki, _postgres_database
from wmproxy.admin import initialise
from wmproxy.config import DatabaseSettings, Settings


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


@pytest.fixture
def service_settings(settings: Settings, pki: Pki) -> Iterator[Settings]:
    """The deployment of ``settings``, initialised as root with ``init --user nobody``, in a
    directory the service user can enter (pytest's own directory is root's 0700)."""
    if os.geteuid() != 0:
        pytest.skip("handing files to the service user needs root (CI runs as root)")
    top = Path(tempfile.mkdtemp(prefix="wmproxy-owner-"))
    try:
        top.chmod(0o711)
        placed = settings_for(top / "state", settings.database.url, pki)
        if settings.database.url.startswith("sqlite"):
            placed = dataclasses.replace(placed, database=DatabaseSettings(url=f"sqlite:///{top}/db/wmproxy.db"))
        initialise(placed, user=SERVICE_USER)
        yield placed
    finally:
        shutil.rmtree(top)
