"""The SQLite engine's pool (wmproxy/store/engine.py) hands out the connection returned last:
SQLite drops a connection's page cache when another connection committed since its last
transaction, so connections taking turns would read every page again (issue 14)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from wmproxy.store import make_engine


def _driver_connection(conn: sa.Connection) -> object:
    return conn.connection.driver_connection


def test_the_connection_returned_last_is_handed_out_next(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/pool.db")
    try:
        first, second = engine.connect(), engine.connect()
        older, newer = _driver_connection(first), _driver_connection(second)
        assert older is not newer
        first.close()
        second.close()  # returned last
        for _ in range(3):
            with engine.connect() as conn:
                assert _driver_connection(conn) is newer
                conn.execute(sa.text("SELECT 1"))
    finally:
        engine.dispose()


def test_a_caller_may_still_ask_for_the_fifo_order(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/pool.db", pool_use_lifo=False)
    try:
        first, second = engine.connect(), engine.connect()
        older = _driver_connection(first)
        first.close()
        second.close()
        with engine.connect() as conn:
            assert _driver_connection(conn) is older
    finally:
        engine.dispose()
