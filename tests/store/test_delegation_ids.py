"""Migration 0013 on a real database (SQLite file and PostgreSQL): the four delegation_id columns
hold 255 characters, so the ids the original accepted (any id without ``/``, ``wmproxy-behaviour.md``
§5.1) fit; rows stored before it are kept."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tests.store.conftest import schema_diffs
from wmproxy.security.delegation import MAX_DELEGATION_ID_BYTES, check_delegation_id
from wmproxy.store import UnitOfWork

T0 = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)
TABLES = ("delegation_requests", "delegations", "jobs", "proxy_renewals")
DN = "/C=XX/O=wmproxy-demo/OU=Users/CN=Ids"
#: An id the original accepted and 0012's columns could not hold: 255 characters, ``@``, ``:``, a space.
LONG_ID = check_delegation_id(("user@host: x+y " * 20)[:MAX_DELEGATION_ID_BYTES])


def _lengths(engine: sa.Engine) -> dict[str, int | None]:
    inspector = sa.inspect(engine)
    return {table: next(c["type"].length for c in inspector.get_columns(table) if c["name"] == "delegation_id")
            for table in TABLES}


class TestMigration0013:
    def test_the_columns_hold_255_characters(self, factory: sessionmaker[Session]) -> None:
        assert _lengths(factory.kw["bind"]) == dict.fromkeys(TABLES, 255)
        assert len(LONG_ID) == 255
        with UnitOfWork(factory) as uow:
            uow.delegations.put_request(DN, LONG_ID, b"sealed", "csr", T0)
        with UnitOfWork(factory) as uow:
            request = uow.delegations.get_request(DN, LONG_ID)
            assert request is not None and request.delegation_id == LONG_ID
            uow.delegations.take_request(DN, LONG_ID)  # 0012's columns could not hold it (a later downgrade)

    def test_the_migration_matches_the_schema(self, factory: sessionmaker[Session]) -> None:
        diffs = schema_diffs(factory)
        assert [d for d in diffs if any(table in repr(d) for table in TABLES)] == []

    def test_rows_stored_before_it_are_kept(self, factory: sessionmaker[Session],
                                            down_to: Callable[[str], AbstractContextManager[None]]) -> None:
        engine = factory.kw["bind"]
        with down_to("0012"):
            assert _lengths(engine) == dict.fromkeys(TABLES, 64)
            with engine.begin() as conn:
                conn.execute(sa.text("insert into delegation_requests (owner_dn, delegation_id, sealed_key, csr_pem, "
                                     "created_at) values (:dn, 'before-0013', :key, 'csr', :at)")
                             .bindparams(sa.bindparam("key", type_=sa.LargeBinary()),
                                         sa.bindparam("at", type_=sa.DateTime())),  # not sqlite3's own adapter
                             {"dn": DN, "key": b"old", "at": T0.replace(tzinfo=None)})
        with UnitOfWork(factory) as uow:
            kept = uow.delegations.get_request(DN, "before-0013")
            assert kept is not None and kept.sealed_key == b"old" and kept.csr_pem == "csr"
