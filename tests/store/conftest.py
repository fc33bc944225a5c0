"""Fixtures of the store tests: a session factory on each module's fresh database (SQLite file and
PostgreSQL) migrated to the newest revision, and the execution tests' throwaway account and work root
(for the tests that run jobs: adoption, retries)."""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import Pki
from tests.support import build_runtime, close_runtime, delegate_in_process, principal_of
from tests.unit.execution.wrapper_support import job_account, work_root
from wmproxy.admin import upgrade_database
from wmproxy.config import DatabaseSettings, MappingSettings, Settings
from wmproxy.domain import Principal
from wmproxy.execution.identity import Account
from wmproxy.services.runtime import Runtime
from wmproxy.store import make_engine, make_session_factory
from wmproxy.store.schema import ExecutionRequest, ExecutionWorkerRow, Job, JobEvent

__all__ = ["alice", "factory", "job_account", "rt", "schema_diffs", "store_key_dir", "work_root"]

#: The delegation id of alice's proxy in the store tests' runtimes (``alice``); their jobs name it.
DELEGATION = "exec"


@pytest.fixture(scope="module")
def factory(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on the module's database, brought to the newest Alembic revision."""
    upgrade_database(Settings(database=DatabaseSettings(url=database_url)))
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


#: Indexes on an expression, which SQLite's reflection skips (with a warning): a comparison of
#: the schema with the migrated database leaves them out (their tests read their definitions).
EXPRESSION_INDEXES = frozenset({"ix_job_acl_trimmed_item"})


def schema_diffs(factory: sessionmaker[Session]) -> list[Any]:
    """What Alembic's autogenerate finds between the schema (:mod:`wmproxy.store.schema`) and
    the module's migrated database, :data:`EXPRESSION_INDEXES` left out."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from wmproxy.store.schema import Base

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return not (type_ == "index" and name in EXPRESSION_INDEXES)

    with factory() as session, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index",
                                sa.exc.SAWarning)
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression-based index",
                                UserWarning)
        context = MigrationContext.configure(session.connection(), opts={"include_object": include})
        return list(compare_metadata(context, Base.metadata))


@pytest.fixture
def down_to(factory: sessionmaker[Session],
            database_url: str) -> Callable[[str], contextlib.AbstractContextManager[None]]:
    """``with down_to("0011"):`` runs its block on the module's database migrated down to that
    revision (the factory's pooled connections dropped), then brings it back to the newest one."""
    from alembic import command
    from alembic.config import Config

    from wmproxy.admin import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = database_url
    config.attributes["configure_logger"] = False
    engine = factory.kw["bind"]

    @contextlib.contextmanager
    def migrated(revision: str) -> Iterator[None]:
        try:
            command.downgrade(config, revision)
            engine.dispose()
            yield
        finally:
            command.upgrade(config, "head")
            engine.dispose()

    return migrated


@contextlib.contextmanager
def store_runtime(root: Path, pki: Pki, database_url: str, store_key_dir: Path,
                  **database: Any) -> Iterator[Runtime]:
    """A runtime under ``root`` on the module's database (its one store key), with the test
    deployments' settings (``database``: more ``[database]`` fields); closed at the end."""
    runtime = build_runtime(root, pki, database={"url": database_url, **database},
                            security={"store_key_file": str(store_key_dir / "store.key")})
    try:
        yield runtime
    finally:
        close_runtime(runtime)


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, store_key_dir: Path) -> Iterator[Runtime]:
    """A runtime on the module's database (its one store key), with the test deployments'
    settings; a module that needs other settings defines its own ``rt``."""
    with store_runtime(tmp_path / "rt", pki, database_url, store_key_dir) as runtime:
        yield runtime


@pytest.fixture
def alice(rt: Runtime, pki: Pki) -> Principal:
    """alice, with a proxy delegated under :data:`DELEGATION` to the requesting module's ``rt``."""
    principal = principal_of(pki, "alice")
    delegate_in_process(rt, principal, pki.users["alice"].proxy, DELEGATION)
    return principal


@pytest.fixture(scope="module")
def store_key_dir(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store key per module database: the database records its key's fingerprint, so every
    runtime built on it (``tests.support.build_runtime``) must use the same key file."""
    return tmp_path_factory.mktemp("store-key")


@contextlib.contextmanager
def mapped_runtime(tmp_path: Path, pki: Pki, database_url: str, store_key_dir: Path, job_account: Account, *,
                   replace: dict[str, Any] | None = None, **sections: dict[str, Any]) -> Iterator[Runtime]:
    """A runtime on the module's database (its one store key) that maps alice to
    ``job_account`` by a grid-mapfile, with the execution queue, jobs and workers emptied
    first (one database per module: every test starts from an empty queue).

    Args:
        replace: further ``Settings`` fields set as they are (e.g. ``slurm=SlurmSettings(...)``).
        sections: ``build_runtime`` sections (``execution={...}``, ``jobs={...}``).
    """
    gridmap = tmp_path / "grid-mapfile"
    gridmap.write_text(f'"{pki.users["alice"].dn}" {job_account.name}\n')
    runtime = build_runtime(tmp_path / "rt", pki, database={"url": database_url},
                            security={"store_key_file": str(store_key_dir / "store.key")}, **sections)
    runtime.settings = dataclasses.replace(
        runtime.settings, mapping=MappingSettings(mode="gridmap", gridmap_file=str(gridmap)), **(replace or {}))
    with runtime.uow() as uow:
        for table in (ExecutionRequest, JobEvent, Job, ExecutionWorkerRow):
            uow.session.execute(sa.delete(table))
    try:
        yield runtime
    finally:
        close_runtime(runtime)
