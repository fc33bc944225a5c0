"""A DN stores at most ``[limits] max_delegations_per_user`` delegations (delegation ids): a
putProxy of a new id beyond them is refused in the transaction of the insert, nothing written and
its request left pending; replacing a stored id is always allowed. Both databases, through the
store's write (``wmproxy.store.delegation_writes``) and through putProxy (``services/delegation.py``)
with real proxies. Before, a user could store new ids forever, each a row with a sealed key."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import Pki
from tests.store.conftest import DELEGATION
from wmproxy.domain import Principal, utcnow
from wmproxy.errors import DelegationLimitError
from wmproxy.security.proxy import load_credential, sign_proxy_request
from wmproxy.services import delegation
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork
from wmproxy.store.delegation_writes import delegation_writes
from wmproxy.store.keypool import PooledDelegationKey
from wmproxy.store.schema import Delegation, DelegationRequest

ALICE = "/C=XX/O=Grid/CN=Alice"
BOB = "/C=XX/O=Grid/CN=Bob"
NOT_BEFORE = dt.datetime(2026, 12, 1, 10, 0, 0, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2026, 12, 2, 10, 0, 0, tzinfo=dt.UTC)


def _ids(factory: sessionmaker[Session], table: type[Delegation] | type[DelegationRequest],
         dn: str) -> set[str]:
    with factory() as session:
        return set(session.scalars(sa.select(table.delegation_id).where(table.owner_dn == dn)))


def _delete_all(factory: sessionmaker[Session]) -> None:
    with UnitOfWork(factory) as uow:
        for table in (PooledDelegationKey, DelegationRequest, Delegation):
            uow.session.execute(sa.delete(table))


class TestStoreWrite:
    @pytest.fixture(autouse=True)
    def _empty(self, factory: sessionmaker[Session]) -> Iterator[None]:
        """No delegation rows before and after (their fake sealed values are sealed with no key)."""
        _delete_all(factory)
        yield
        _delete_all(factory)

    @staticmethod
    def _request(factory: sessionmaker[Session], dn: str, delegation_id: str, key: bytes) -> None:
        with UnitOfWork(factory) as uow:
            uow.delegations.put_request(dn, delegation_id, key, "csr", utcnow())

    def _put(self, factory: sessionmaker[Session], dn: str, delegation_id: str, key: bytes, bound: int) -> bool:
        """getProxyReq's request, then putProxy's write under ``bound``: whether it stored."""
        self._request(factory, dn, delegation_id, key)
        return delegation_writes(factory).put_proxy_for_request(
            dn, delegation_id, key, b"proxy-" + key, NOT_BEFORE, NOT_AFTER, (), utcnow(),
            max_delegations=bound) is not None

    def test_a_new_id_beyond_the_bound_is_not_stored_and_its_request_stays(
            self, factory: sessionmaker[Session]) -> None:
        writes = delegation_writes(factory)
        assert [self._put(factory, ALICE, f"d{i}", f"k{i}".encode(), 2) for i in range(3)] == [True, True, False]
        assert _ids(factory, Delegation, ALICE) == {"d0", "d1"}
        assert _ids(factory, DelegationRequest, ALICE) == {"d2"}
        assert writes.no_room(ALICE, "d2", 2)
        assert not writes.no_room(ALICE, "d0", 2)  # a stored id: a replacement
        assert not writes.no_room(ALICE, "d2", 3)
        assert not writes.no_room(BOB, "d2", 2)

    def test_a_stored_id_is_replaced_at_the_bound(self, factory: sessionmaker[Session]) -> None:
        assert self._put(factory, ALICE, "d0", b"k0", 1)
        assert self._put(factory, ALICE, "d0", b"k0-again", 1)
        with factory() as session:
            assert session.scalars(sa.select(Delegation.sealed_proxy)).all() == [b"proxy-k0-again"]

    def test_the_bound_is_per_dn(self, factory: sessionmaker[Session]) -> None:
        assert self._put(factory, ALICE, "d0", b"a0", 1)
        assert self._put(factory, BOB, "d0", b"b0", 1)
        assert self._put(factory, BOB, "d1", b"b1", 2)
        assert not self._put(factory, BOB, "d2", b"b2", 2)
        assert (_ids(factory, Delegation, ALICE), _ids(factory, Delegation, BOB)) == ({"d0"}, {"d0", "d1"})

    def test_room_made_by_a_destroy_lets_the_pending_request_be_stored(
            self, factory: sessionmaker[Session]) -> None:
        assert self._put(factory, ALICE, "d0", b"k0", 1)
        assert not self._put(factory, ALICE, "d1", b"k1", 1)
        with UnitOfWork(factory) as uow:
            assert uow.delegations.delete_proxy(ALICE, "d0")
        assert delegation_writes(factory).put_proxy_for_request(
            ALICE, "d1", b"k1", b"proxy-k1", NOT_BEFORE, NOT_AFTER, (), utcnow(), max_delegations=1) is not None
        assert _ids(factory, Delegation, ALICE) == {"d1"}


class TestPutProxy:
    @pytest.fixture
    def bounded(self, rt: Runtime, alice: Principal, monkeypatch: pytest.MonkeyPatch) -> Runtime:
        """``rt`` with room for two delegations of alice besides the ``alice`` fixture's one."""
        assert len(_ids(rt.session_factory, Delegation, alice.dn)) == 1
        limits = dataclasses.replace(rt.settings.limits, max_delegations_per_user=3)
        monkeypatch.setattr(rt, "settings", dataclasses.replace(rt.settings, limits=limits))
        return rt

    @staticmethod
    def _signed(rt: Runtime, alice: Principal, pki: Pki, delegation_id: str) -> str:
        _, csr = delegation.create_proxy_request(rt, alice, delegation_id)
        return sign_proxy_request(csr.encode(), load_credential(pki.users["alice"].proxy), lifetime=3600).decode()

    def test_put_proxy_of_a_new_id_beyond_the_bound_is_refused(
            self, bounded: Runtime, alice: Principal, pki: Pki) -> None:
        for name in ("first", "second"):
            delegation.store_proxy(bounded, alice, name, self._signed(bounded, alice, pki, name))
        third = self._signed(bounded, alice, pki, "third")
        with pytest.raises(DelegationLimitError, match=r"stored delegations is reached \(3 per user\)"):
            delegation.store_proxy(bounded, alice, "third", third)
        factory = bounded.session_factory
        assert _ids(factory, Delegation, alice.dn) == {DELEGATION, "first", "second"}
        assert "third" in _ids(factory, DelegationRequest, alice.dn)
        # a stored id is renewed at the bound; once one is destroyed the refused request is stored
        delegation.store_proxy(bounded, alice, "first", self._signed(bounded, alice, pki, "first"))
        delegation.destroy(bounded, alice, "second")
        delegation.store_proxy(bounded, alice, "third", third)
        assert _ids(factory, Delegation, alice.dn) == {DELEGATION, "first", "third"}
