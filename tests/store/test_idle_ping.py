"""``[database] ping_after_idle`` (wmproxy/store/engine.py): a pooled PostgreSQL connection that
sat unused longer than the threshold is pinged when next checked out and replaced if the server
dropped it; one used more recently is handed out without the round trip."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from wmproxy.store import make_engine

pytestmark = pytest.mark.postgresql_only


@pytest.fixture
def url(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL behaviour")
    return database_url


def _pooled_backend(engine: sa.Engine) -> int:
    """Use the pool's one connection and return it; its server process id."""
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(url: str, pid: int) -> None:
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    finally:
        admin.dispose()


def test_a_connection_dropped_while_idle_is_replaced(url: str) -> None:
    engine = make_engine(url, ping_after_idle=0.0, pool_size=1, max_overflow=0)
    try:
        dropped = _pooled_backend(engine)
        _terminate(url, dropped)
        assert _pooled_backend(engine) != dropped  # the ping found it gone: a new connection served
    finally:
        engine.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(url: str) -> None:
    engine = make_engine(url, ping_after_idle=3600.0, pool_size=1, max_overflow=0)
    try:
        _terminate(url, _pooled_backend(engine))
        with pytest.raises(sa.exc.OperationalError), engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))  # no ping: the dead connection is used, and fails
        assert _pooled_backend(engine) > 0  # the pool recovers on its own after the failure
    finally:
        engine.dispose()
