"""getProxyReq's and putProxy's transactions on the driver's connection
(``wmproxy.store.delegation_writes``), on a real database (SQLite file and PostgreSQL): the same
rows as the ORM repositories write, each pooled key served once, nothing written by a transaction
that fails, a request taken by one putProxy only."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tests.store.locking_support import run_together
from wmproxy.domain import utcnow
from wmproxy.store import UnitOfWork
from wmproxy.store.delegation_writes import delegation_writes
from wmproxy.store.keypool import PooledDelegationKey
from wmproxy.store.schema import Delegation, DelegationRequest

ALICE = "/C=XX/O=Grid/CN=Alice"
BOB = "/C=XX/O=Grid/CN=Bob"
#: Seconds a racing thread may take; generous, the machine is shared.
DEADLINE = 120.0
NOT_BEFORE = dt.datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2026, 12, 2, 10, 0, 0, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _empty(factory: sessionmaker[Session]) -> None:
    with UnitOfWork(factory) as uow:
        for table in (PooledDelegationKey, DelegationRequest, Delegation):
            uow.session.execute(sa.delete(table))


def _requests(factory: sessionmaker[Session]) -> dict[tuple[str, str], tuple[bytes, str, dt.datetime]]:
    with factory() as session:
        return {(r.owner_dn, r.delegation_id): (r.sealed_key, r.csr_pem, r.created_at)
                for r in session.scalars(sa.select(DelegationRequest))}


def _delegations(factory: sessionmaker[Session]) -> dict[tuple[str, str], Delegation]:
    with factory() as session:
        return {(r.owner_dn, r.delegation_id): r for r in session.scalars(sa.select(Delegation))}


def _add(factory: sessionmaker[Session], *keys: tuple[bytes, str, int]) -> None:
    with UnitOfWork(factory) as uow:
        for sealed, csr, bits in keys:
            uow.key_pool.add(sealed, csr, bits, utcnow())


def _pool(factory: sessionmaker[Session], bits: int = 2048) -> int:
    with UnitOfWork(factory) as uow:
        return uow.key_pool.size(bits)


class TestClaim:
    def test_the_oldest_key_of_the_size_becomes_the_request(self, factory: sessionmaker[Session]) -> None:
        _add(factory, (b"sealed-a", "csr-a", 2048), (b"sealed-b", "csr-b", 4096), (b"sealed-c", "csr-c", 2048))
        now = utcnow()
        assert delegation_writes(factory).claim_into_request(2048, ALICE, "d1", now) == ("csr-a", b"sealed-a")
        assert _requests(factory) == {(ALICE, "d1"): (b"sealed-a", "csr-a", now)}
        assert (_pool(factory, 2048), _pool(factory, 4096)) == (1, 1)

    def test_a_new_request_replaces_the_older_one_of_its_dn_and_id_only(self, factory: sessionmaker[Session]) -> None:
        _add(factory, *((f"sealed-{c}".encode(), f"csr-{c}", 2048) for c in "abc"))
        writes = delegation_writes(factory)
        writes.claim_into_request(2048, ALICE, "d1", utcnow())
        writes.claim_into_request(2048, BOB, "d1", utcnow())
        assert writes.claim_into_request(2048, ALICE, "d1", utcnow()) == ("csr-c", b"sealed-c")
        assert {k: v[:2] for k, v in _requests(factory).items()} == {
            (ALICE, "d1"): (b"sealed-c", "csr-c"), (BOB, "d1"): (b"sealed-b", "csr-b")}

    def test_an_empty_pool_stores_nothing(self, factory: sessionmaker[Session]) -> None:
        _add(factory, (b"sealed-big", "csr-big", 4096))
        assert delegation_writes(factory).claim_into_request(2048, ALICE, "d1", utcnow()) is None
        assert _requests(factory) == {}
        assert _pool(factory, 4096) == 1

    def test_concurrent_requests_get_each_key_once(self, factory: sessionmaker[Session]) -> None:
        keys = 8
        _add(factory, *((f"sealed-{i}".encode(), f"csr-{i}", 2048) for i in range(keys)))

        def claim(n: int) -> tuple[str, bytes] | None:
            return delegation_writes(factory).claim_into_request(2048, ALICE, f"d{n}", utcnow())

        got = run_together(2 * keys, claim, DEADLINE)
        served = sorted(claimed[0] for claimed in got if claimed is not None)
        assert all(sealed == f"sealed-{csr.split('-')[1]}".encode() for csr, sealed in filter(None, got))
        assert served == sorted(f"csr-{i}" for i in range(keys))  # each key once, none lost
        stored = _requests(factory)
        assert sorted(csr for _, csr, _ in stored.values()) == served
        assert all(sealed == f"sealed-{csr.split('-')[1]}".encode() for sealed, csr, _ in stored.values())

    def test_connections_go_back_to_the_pool_transactional(self, factory: sessionmaker[Session]) -> None:
        """PostgreSQL's claim runs in autocommit (one statement); the connection it used must go
        back to the pool out of autocommit, after a claim and after a failing one, or the next
        transactions on it would not be atomic."""
        engine = factory.kw["bind"]
        postgres = engine.dialect.name == "postgresql"
        autocommit: list[bool] = []

        def checked_in(dbapi_conn: object, _record: object) -> None:
            autocommit.append(bool(dbapi_conn.autocommit) if postgres else False)  # type: ignore[attr-defined]

        _add(factory, (b"sealed-a", "csr-a", 2048))
        sa.event.listen(engine, "checkin", checked_in)
        try:
            writes = delegation_writes(factory)
            assert writes.claim_into_request(2048, ALICE, "d1", utcnow()) == ("csr-a", b"sealed-a")
            assert writes.claim_into_request(2048, ALICE, "d2", utcnow()) is None
            if postgres:  # SQLite compares a text with an integer column without an error
                with pytest.raises(sa.exc.DataError, match=r"(?i)integer"):
                    writes.claim_into_request("not bits", ALICE, "d3", utcnow())  # type: ignore[arg-type]
        finally:
            sa.event.remove(engine, "checkin", checked_in)
        assert len(autocommit) == (3 if postgres else 2)
        assert not any(autocommit)
        with UnitOfWork(factory) as uow:  # the next transaction on the pool rolls back as one
            uow.delegations.put_request(ALICE, "d4", b"sealed-x", "csr-x", utcnow())
            uow.session.flush()
            uow.session.rollback()
        assert set(_requests(factory)) == {(ALICE, "d1")}


def _pending(factory: sessionmaker[Session], dn: str, delegation_id: str, sealed: bytes) -> None:
    with UnitOfWork(factory) as uow:
        uow.delegations.put_request(dn, delegation_id, sealed, "csr", utcnow())


class TestPutProxy:
    def test_take_and_store_write_the_rows_the_orm_repository_writes(self, factory: sessionmaker[Session]) -> None:
        _pending(factory, ALICE, "d1", b"key-1")
        now = utcnow()
        writes = delegation_writes(factory)
        assert writes.pending_key(ALICE, "d1") == b"key-1"
        made = writes.put_proxy_for_request(ALICE, "d1", b"key-1", b"proxy-1", NOT_BEFORE, NOT_AFTER,
                                            ("/vo", "/vo/g"), now)
        assert made is not None
        with UnitOfWork(factory) as uow:  # the same through the ORM repository, for comparison
            uow.delegations.put_proxy(ALICE, "d2", b"proxy-1", NOT_BEFORE, NOT_AFTER, ("/vo", "/vo/g"), now)
        rows = _delegations(factory)
        columns = ("sealed_proxy", "not_before", "not_after", "fqans", "created_at", "updated_at")
        assert [getattr(rows[ALICE, "d1"], c) for c in columns] == [getattr(rows[ALICE, "d2"], c) for c in columns]
        assert rows[ALICE, "d1"].not_before == NOT_BEFORE and rows[ALICE, "d1"].created_at == now
        assert (made.id, made.created_at, made.fqans) == (rows[ALICE, "d1"].id, now, "/vo\n/vo/g")
        assert made.created_at.tzinfo is not None
        assert _requests(factory) == {}

    @pytest.mark.postgresql_only  # psycopg's result format
    def test_postgresql_reads_the_rows_in_binary(self, factory: sessionmaker[Session],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        """On PostgreSQL the claim, the key's read and the take-and-store read their rows in the
        binary format: a sealed key comes back as its bytes, not as hexadecimal text that the
        server writes and psycopg decodes (issue 14); the values are the text format's."""
        import psycopg

        formats: list[bool | None] = []
        execute = psycopg.Cursor.execute

        def recorded(self: psycopg.Cursor, query: object, params: object = None, **options: object) -> object:
            formats.append(options.get("binary"))  # type: ignore[arg-type]
            return execute(self, query, params, **options)  # type: ignore[arg-type]

        sealed = bytes(range(256)) * 10
        _add(factory, (sealed, "csr-a", 2048))
        monkeypatch.setattr(psycopg.Cursor, "execute", recorded)
        writes = delegation_writes(factory)
        now = utcnow()
        assert writes.claim_into_request(2048, ALICE, "d1", now) == ("csr-a", sealed)
        assert writes.pending_key(ALICE, "d1") == sealed
        made = writes.put_proxy_for_request(ALICE, "d1", sealed, b"proxy", NOT_BEFORE, NOT_AFTER, (), now)
        assert formats == [True, True, True]
        monkeypatch.undo()
        assert made is not None and made.created_at == now and made.created_at.tzinfo is not None
        assert made.id == _delegations(factory)[ALICE, "d1"].id

    def test_a_replaced_proxy_keeps_its_row_and_creation_time(self, factory: sessionmaker[Session]) -> None:
        first = utcnow()
        writes = delegation_writes(factory)
        _pending(factory, ALICE, "d1", b"key-1")
        original = writes.put_proxy_for_request(ALICE, "d1", b"key-1", b"proxy-1", NOT_BEFORE, NOT_AFTER, (), first)
        _pending(factory, ALICE, "d1", b"key-2")
        later = first + dt.timedelta(seconds=30)
        assert writes.pending_key(ALICE, "d1") == b"key-2"
        replaced = writes.put_proxy_for_request(ALICE, "d1", b"key-2", b"proxy-2", NOT_BEFORE, NOT_AFTER, (), later)
        assert original is not None and replaced is not None
        assert (replaced.id, replaced.created_at, replaced.updated_at) == (original.id, first, later)
        row = _delegations(factory)[ALICE, "d1"]
        assert (row.sealed_proxy, row.created_at, row.updated_at) == (b"proxy-2", first, later)

    def test_a_request_replaced_since_its_key_was_read_stores_nothing(self, factory: sessionmaker[Session]) -> None:
        _pending(factory, ALICE, "d1", b"key-1")
        writes = delegation_writes(factory)
        read = writes.pending_key(ALICE, "d1")
        assert read == b"key-1"
        _pending(factory, ALICE, "d1", b"key-2")  # a new getProxyReq while the proxy was checked
        assert writes.put_proxy_for_request(ALICE, "d1", read, b"proxy-1", NOT_BEFORE, NOT_AFTER, (),
                                            utcnow()) is None
        assert _delegations(factory) == {}
        assert [v[0] for v in _requests(factory).values()] == [b"key-2"]  # the new request stays pending

    def test_an_old_key_does_not_replace_a_stored_proxy(self, factory: sessionmaker[Session]) -> None:
        first = utcnow()
        writes = delegation_writes(factory)
        _pending(factory, ALICE, "d1", b"key-1")
        assert writes.put_proxy_for_request(ALICE, "d1", b"key-1", b"proxy-1", NOT_BEFORE, NOT_AFTER, (), first)
        _pending(factory, ALICE, "d1", b"key-2")
        # A putProxy checked against the used key-1 (a replayed body): nothing changes.
        assert writes.put_proxy_for_request(ALICE, "d1", b"key-1", b"proxy-old", NOT_BEFORE, NOT_AFTER, (),
                                            first + dt.timedelta(seconds=30)) is None
        row = _delegations(factory)[ALICE, "d1"]
        assert (row.sealed_proxy, row.updated_at) == (b"proxy-1", first)
        assert [v[0] for v in _requests(factory).values()] == [b"key-2"]

    def test_a_refused_store_leaves_the_request_pending(self, factory: sessionmaker[Session]) -> None:
        _pending(factory, ALICE, "d1", b"key-1")
        with pytest.raises(sa.exc.IntegrityError):  # a NOT NULL column left NULL, raised as SQLAlchemy raises it
            delegation_writes(factory).put_proxy_for_request(
                ALICE, "d1", b"key-1", None, NOT_BEFORE, NOT_AFTER, (), utcnow())  # type: ignore[arg-type]
        assert _delegations(factory) == {}
        assert [v[0] for v in _requests(factory).values()] == [b"key-1"]

    def test_another_dn_cannot_take_the_request(self, factory: sessionmaker[Session]) -> None:
        _pending(factory, ALICE, "d1", b"key-1")
        writes = delegation_writes(factory)
        assert writes.pending_key(BOB, "d1") is None
        assert writes.put_proxy_for_request(BOB, "d1", b"key-1", b"proxy", NOT_BEFORE, NOT_AFTER, (),
                                            utcnow()) is None
        assert list(_requests(factory)) == [(ALICE, "d1")]
        assert _delegations(factory) == {}

    def test_concurrent_takers_of_one_request_get_it_once(self, factory: sessionmaker[Session]) -> None:
        _pending(factory, ALICE, "d1", b"key-1")

        def take(n: int) -> int | None:
            stored = delegation_writes(factory).put_proxy_for_request(
                ALICE, "d1", b"key-1", f"proxy-{n}".encode(), NOT_BEFORE, NOT_AFTER, (), utcnow())
            return None if stored is None else n

        got = run_together(4, take, DEADLINE)
        taken = [n for n in got if n is not None]
        assert len(taken) == 1
        assert _delegations(factory)[ALICE, "d1"].sealed_proxy == f"proxy-{taken[0]}".encode()
        assert _requests(factory) == {}


@pytest.mark.parametrize("call", ["claim", "pending_key", "put_proxy"])
def test_a_lost_connection_is_a_disconnect_and_the_next_call_works(factory: sessionmaker[Session], call: str) -> None:
    """The driver's connection gone as a delegation write checks it out (a database restart,
    say): the error is SQLAlchemy's disconnect, the connection is invalidated, nothing is
    written, and the next call connects anew."""
    _add(factory, (b"sealed-a", "csr-a", 2048))
    _pending(factory, ALICE, "d1", b"key-1")
    engine = factory.kw["bind"]
    writes = delegation_writes(factory)
    calls = {
        "claim": lambda: writes.claim_into_request(2048, ALICE, "d2", utcnow()),
        "pending_key": lambda: writes.pending_key(ALICE, "d1"),
        "put_proxy": lambda: writes.put_proxy_for_request(ALICE, "d1", b"key-1", b"proxy-1", NOT_BEFORE,
                                                          NOT_AFTER, (), utcnow()),
    }
    broken: list[object] = []

    def close_once(dbapi_conn: object, _record: object, _proxy: object) -> None:
        if not broken:
            broken.append(dbapi_conn)
            dbapi_conn.close()  # type: ignore[attr-defined]

    sa.event.listen(engine, "checkout", close_once)
    try:
        with pytest.raises(sa.exc.DBAPIError) as raised:
            calls[call]()
    finally:
        sa.event.remove(engine, "checkout", close_once)
    assert raised.value.connection_invalidated
    assert set(_requests(factory)) == {(ALICE, "d1")} and _delegations(factory) == {}
    assert calls[call]() is not None
