"""Migration 0016 on a real database (SQLite file and PostgreSQL): the indexes of
``inspection_requests`` the ``[inspection]`` caps and retention read (``requester_dn`` for the
per-user count, ``asked_at`` for the deletes), matching the schema, and gone on a downgrade."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tests.store.conftest import schema_diffs

INDEXES = {"ix_inspection_requests_requester_dn": ["requester_dn"], "ix_inspection_requests_asked_at": ["asked_at"]}


def indexes(factory: sessionmaker[Session]) -> dict[str, list[str]]:
    with factory() as session:
        found = sa.inspect(session.get_bind()).get_indexes("inspection_requests")
    return {str(ix["name"]): list(ix["column_names"]) for ix in found}


def test_the_migration_makes_the_indexes_of_the_schema(factory: sessionmaker[Session]) -> None:
    assert INDEXES.items() <= indexes(factory).items()
    assert [d for d in schema_diffs(factory) if "inspection_requests" in repr(d)] == []


def test_a_downgrade_drops_them(factory: sessionmaker[Session],
                                down_to: Callable[[str], contextlib.AbstractContextManager[None]]) -> None:
    with down_to("0015"):
        assert not INDEXES.keys() & indexes(factory).keys()
    assert INDEXES.items() <= indexes(factory).items()
