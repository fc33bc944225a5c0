"""Fixtures of the store tests: a session factory on each module's fresh database (SQLite file and
PostgreSQL) migrated to the newest revision, and the execution tests' throwaway account and work root
(for the tests that run jobs: adoption, retries)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.unit.execution.wrapper_support import job_account, work_root
from wmproxy.admin import upgrade_database
from wmproxy.config import DatabaseSettings, Settings
from wmproxy.store import make_engine, make_session_factory

__all__ = ["factory", "job_account", "store_key_dir", "work_root"]


@pytest.fixture(scope="module")
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on the module's database, brought to the newest Alembic revision."""
    upgrade_database(Settings(database=DatabaseSettings(url=database_url)))
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def store_key_dir(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store key per module database: the database records its key's fingerprint, so every
    runtime built on it (``tests.support.build_runtime``) must use the same key file."""
    return tmp_path_factory.mktemp("store-key")
