"""putProxy after a getProxyReq served by the same process (services/delegation.py, issue 14):
the sealed key the process stored is not read back, and what another process did meanwhile
(a new getProxyReq for the same DN and id, the request's removal) is still seen. Each
Runtime stands for one gunicorn worker process (its own engine, its own caches) on the
shared database."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.support import close_runtime
from wmproxy.domain import Principal
from wmproxy.errors import DelegationNotFoundError, ProxyVerificationError
from wmproxy.security.proxy import load_credential, sign_proxy_request
from wmproxy.services import delegation, delegation_keys
from wmproxy.services.runtime import Runtime
from wmproxy.store.delegation_writes import delegation_writes
from wmproxy.store.schema import Delegation, DelegationRequest


@pytest.fixture
def other(rt: Runtime) -> Iterator[Runtime]:
    """A second process of the same service: same settings, same database."""
    runtime = Runtime.from_settings(rt.settings)
    yield runtime
    close_runtime(runtime)


def _sign(pki: Pki, csr: str) -> str:
    return sign_proxy_request(csr.encode(), load_credential(pki.users["alice"].proxy), lifetime=3600).decode()


def _stored(rt: Runtime, dn: str, delegation_id: str) -> tuple[bool, bool]:
    """(a proxy is stored, a request is pending) for (DN, id)."""
    with rt.uow() as uow:
        return (uow.delegations.get(dn, delegation_id) is not None,
                uow.delegations.get_request(dn, delegation_id) is not None)


@pytest.fixture(params=["pooled", "inline"])
def keys(request: pytest.FixtureRequest, rt: Runtime) -> str:
    """Keys from the pool, or made inline when it is empty: both paths keep the request."""
    if request.param == "pooled":
        delegation_keys.fill_pool(rt, 4)
    return str(request.param)


class TestSameProcess:
    def test_put_proxy_does_not_read_the_pending_key_back(self, rt: Runtime, alice: Principal, pki: Pki,
                                                          keys: str) -> None:
        _, csr = delegation.create_proxy_request(rt, alice, "same")
        statements: list[str] = []
        engine = rt.session_factory.kw["bind"]
        engine.dispose()  # the next connections are traced
        sa.event.listen(engine, "connect", lambda conn, _record: conn.set_trace_callback(statements.append))
        delegation.store_proxy(rt, alice, "same", _sign(pki, csr))
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and "delegation_requests" in s]
        assert reads == [], reads
        assert _stored(rt, alice.dn, "same") == (True, False)

    def test_a_second_put_proxy_reads_the_store(self, rt: Runtime, alice: Principal, pki: Pki) -> None:
        _, csr = delegation.create_proxy_request(rt, alice, "twice")
        signed = _sign(pki, csr)
        delegation.store_proxy(rt, alice, "twice", signed)
        with pytest.raises(DelegationNotFoundError, match="no proxy request"):
            delegation.store_proxy(rt, alice, "twice", signed)


class TestAnotherProcess:
    def test_a_request_replaced_there_is_accepted_with_the_new_key(
        self, rt: Runtime, other: Runtime, alice: Principal, pki: Pki, keys: str
    ) -> None:
        delegation.create_proxy_request(rt, alice, "moved")
        _, newer = delegation.create_proxy_request(other, alice, "moved")
        delegation.store_proxy(rt, alice, "moved", _sign(pki, newer))
        assert _stored(rt, alice.dn, "moved") == (True, False)

    def test_a_proxy_for_the_replaced_key_is_refused_and_nothing_is_written(
        self, rt: Runtime, other: Runtime, alice: Principal, pki: Pki, keys: str
    ) -> None:
        _, first = delegation.create_proxy_request(rt, alice, "stale")
        delegation.create_proxy_request(other, alice, "stale")
        with pytest.raises((DelegationNotFoundError, ProxyVerificationError), match=r"replaced|does not match"):
            delegation.store_proxy(rt, alice, "stale", _sign(pki, first))
        assert _stored(rt, alice.dn, "stale") == (False, True)

    def test_a_request_removed_there_is_no_request(
        self, rt: Runtime, alice: Principal, pki: Pki, keys: str
    ) -> None:
        _, csr = delegation.create_proxy_request(rt, alice, "gone")
        with rt.uow() as uow:  # as the purger or another process's putProxy would
            uow.session.execute(sa.delete(DelegationRequest))
        with pytest.raises(DelegationNotFoundError, match="no proxy request"):
            delegation.store_proxy(rt, alice, "gone", _sign(pki, csr))
        with rt.uow() as uow:
            assert uow.session.scalars(sa.select(Delegation)).all() == []


class TestPendingBound:
    def test_a_dn_keeps_its_newest_pending_requests_only(
        self, rt: Runtime, alice: Principal, pki: Pki, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A user asking with new ids and never answering filled the table with sealed keys for
        a day ([purge] request_age). Beyond ``max_pending_delegation_requests`` its oldest go."""
        limits = dataclasses.replace(rt.settings.limits, max_pending_delegation_requests=3)
        monkeypatch.setattr(rt, "settings", dataclasses.replace(rt.settings, limits=limits))
        monkeypatch.setattr(delegation, "TRIM_EVERY", 1)
        delegation_keys.fill_pool(rt, 6)
        csrs = [delegation.create_proxy_request(rt, alice, f"many{i}")[1] for i in range(5)]
        writes = delegation_writes(rt.session_factory)
        assert writes.pending_count(alice.dn) == 3
        assert writes.pending_count("/CN=somebody else") == 0
        assert [_stored(rt, alice.dn, f"many{i}")[1] for i in range(5)] == [False, False, True, True, True]
        with pytest.raises(DelegationNotFoundError, match="no proxy request"):
            delegation.store_proxy(rt, alice, "many0", _sign(pki, csrs[0]))
        delegation.store_proxy(rt, alice, "many4", _sign(pki, csrs[4]))
        assert _stored(rt, alice.dn, "many4") == (True, False)

    def test_the_count_is_looked_at_every_so_many_requests(
        self, rt: Runtime, alice: Principal, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        limits = dataclasses.replace(rt.settings.limits, max_pending_delegation_requests=1)
        monkeypatch.setattr(rt, "settings", dataclasses.replace(rt.settings, limits=limits))
        monkeypatch.setattr(delegation, "TRIM_EVERY", 3)
        monkeypatch.setattr(delegation, "_since_look", {})
        delegation_keys.fill_pool(rt, 3)
        for i in range(2):
            delegation.create_proxy_request(rt, alice, f"few{i}")
        assert delegation_writes(rt.session_factory).pending_count(alice.dn) == 2  # not looked at yet
        delegation.create_proxy_request(rt, alice, "few2")
        assert delegation_writes(rt.session_factory).pending_count(alice.dn) == 1
