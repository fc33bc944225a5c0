"""Delegation through the public service functions: getProxyReq/putProxy, the delegation-2
extras, getTerminationTime and destroy, scoped by (caller DN, delegation id)
(services/delegation.py; wmproxy-behaviour.md §5)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from tests.conftest import Pki
from tests.support import delegate_in_process
from wmproxy.domain import Principal, utcnow
from wmproxy.errors import (
    DelegationError,
    DelegationNotFoundError,
    InvalidDelegationIdError,
    ProxyVerificationError,
)
from wmproxy.security.proxy import load_credential, sign_proxy_request
from wmproxy.services import delegation
from wmproxy.services.runtime import Runtime


def signed_by(pki: Pki, user: str, csr: str, lifetime: int = 3600) -> str:
    return sign_proxy_request(csr.encode(), load_credential(pki.users[user].proxy), lifetime=lifetime).decode()


class TestRequestAndStore:
    def test_request_is_a_csr_under_the_given_id(self, rt: Runtime, alice: Principal) -> None:
        delegation_id, csr = delegation.create_proxy_request(rt, alice, "mine")
        assert delegation_id == "mine"
        x509.load_pem_x509_csr(csr.encode())

    def test_empty_id_is_the_default_id_of_dn_and_fqans(self, rt: Runtime, alice: Principal) -> None:
        first, _ = delegation.create_proxy_request(rt, alice, "")
        again, _ = delegation.create_proxy_request(rt, alice, None)
        with_vo, _ = delegation.create_proxy_request(rt, Principal(alice.dn, fqans=("/dteam",)), "")
        assert first == again and first
        assert with_vo != first

    def test_stored_proxy_ends_when_the_signed_proxy_does(self, rt: Runtime, alice: Principal, pki: Pki) -> None:
        _, csr = delegation.create_proxy_request(rt, alice, "timed")
        signed = signed_by(pki, "alice", csr, lifetime=2 * 3600)
        row = delegation.store_proxy(rt, alice, "timed", signed)
        expected = x509.load_pem_x509_certificate(signed.encode()).not_valid_after_utc
        assert delegation.termination_time(rt, alice, "timed") == expected == row.not_after
        assert dt.timedelta(hours=1) < expected - utcnow() <= dt.timedelta(hours=2)

    def test_put_without_a_request(self, rt: Runtime, alice: Principal, pki: Pki, bob: Principal) -> None:
        _, csr = delegation.create_proxy_request(rt, bob, "bobs")
        with pytest.raises(DelegationNotFoundError, match="no proxy request for delegation id 'bobs'"):
            delegation.store_proxy(rt, alice, "bobs", signed_by(pki, "alice", csr))

    def test_a_request_is_used_once(self, rt: Runtime, alice: Principal, pki: Pki) -> None:
        _, csr = delegation.create_proxy_request(rt, alice, "once")
        signed = signed_by(pki, "alice", csr)
        delegation.store_proxy(rt, alice, "once", signed)
        with pytest.raises(DelegationNotFoundError):
            delegation.store_proxy(rt, alice, "once", signed)

    def test_proxy_of_another_identity_is_refused(self, rt: Runtime, alice: Principal, pki: Pki) -> None:
        _, csr = delegation.create_proxy_request(rt, alice, "stolen")
        with pytest.raises(ProxyVerificationError) as err:
            delegation.store_proxy(rt, alice, "stolen", signed_by(pki, "bob", csr))
        assert err.value.code == 1212
        with pytest.raises(DelegationNotFoundError):
            delegation.termination_time(rt, alice, "stolen")

    def test_a_refused_proxy_leaves_the_request_for_a_retry(self, rt: Runtime, alice: Principal, pki: Pki) -> None:
        _, csr = delegation.create_proxy_request(rt, alice, "retry")
        with pytest.raises(ProxyVerificationError):
            delegation.store_proxy(rt, alice, "retry", signed_by(pki, "bob", csr))
        row = delegation.store_proxy(rt, alice, "retry", signed_by(pki, "alice", csr))
        assert delegation.termination_time(rt, alice, "retry") == row.not_after

    def test_a_replaced_proxy_keeps_its_row_and_creation_time(self, rt: Runtime, alice: Principal, pki: Pki) -> None:
        _, csr = delegation.create_proxy_request(rt, alice, "again")
        first = delegation.store_proxy(rt, alice, "again", signed_by(pki, "alice", csr, lifetime=3600))
        _, csr = delegation.create_proxy_request(rt, alice, "again")
        second = delegation.store_proxy(rt, alice, "again", signed_by(pki, "alice", csr, lifetime=2 * 3600))
        assert (second.id, second.created_at) == (first.id, first.created_at)
        assert second.not_after > first.not_after and second.updated_at >= first.updated_at
        with rt.uow() as uow:
            stored = uow.delegations.get(alice.dn, "again")
            assert stored is not None and stored.sealed_proxy == second.sealed_proxy

    def test_proxy_for_another_key_is_refused(self, rt: Runtime, alice: Principal, pki: Pki) -> None:
        _, first = delegation.create_proxy_request(rt, alice, "rekeyed")
        delegation.create_proxy_request(rt, alice, "rekeyed")  # replaces the pending key
        with pytest.raises(ProxyVerificationError):
            delegation.store_proxy(rt, alice, "rekeyed", signed_by(pki, "alice", first))

    @pytest.mark.parametrize("bad_id", ["../etc", "a/b"])
    def test_unusable_ids(self, rt: Runtime, alice: Principal, bad_id: str) -> None:
        with pytest.raises(InvalidDelegationIdError):
            delegation.create_proxy_request(rt, alice, bad_id)


class TestScopeAndLifecycle:
    def test_same_id_of_two_users_are_two_delegations(self, rt: Runtime, alice: Principal, bob: Principal,
                                                      pki: Pki) -> None:
        delegate_in_process(rt, alice, pki.users["alice"].proxy, "shared", lifetime=3 * 3600)
        with pytest.raises(DelegationNotFoundError):
            delegation.termination_time(rt, bob, "shared")
        delegate_in_process(rt, bob, pki.users["bob"].proxy, "shared", lifetime=3600)
        assert delegation.termination_time(rt, alice, "shared") > delegation.termination_time(rt, bob, "shared")

    def test_destroy_removes_only_the_callers_delegation(self, rt: Runtime, alice: Principal, bob: Principal,
                                                         pki: Pki) -> None:
        delegate_in_process(rt, alice, pki.users["alice"].proxy, "gone")
        with pytest.raises(DelegationNotFoundError):
            delegation.destroy(rt, bob, "gone")
        delegation.termination_time(rt, alice, "gone")
        delegation.destroy(rt, alice, "gone")
        with pytest.raises(DelegationNotFoundError):
            delegation.termination_time(rt, alice, "gone")
        with pytest.raises(DelegationNotFoundError):
            delegation.destroy(rt, alice, "gone")

    def test_new_request_refused_while_the_default_proxy_is_valid(self, rt: Runtime, alice: Principal,
                                                                  pki: Pki) -> None:
        delegation_id, _ = delegation.create_new_proxy_request(rt, alice)
        delegate_in_process(rt, alice, pki.users["alice"].proxy, delegation_id)
        with pytest.raises(DelegationError, match="Previous client delegated proxy still valid"):
            delegation.create_new_proxy_request(rt, alice)

    def test_renew_needs_an_existing_delegation(self, rt: Runtime, alice: Principal, pki: Pki) -> None:
        with pytest.raises(DelegationNotFoundError, match="No previous client delegated proxy found"):
            delegation.renew_proxy_request(rt, alice, "fresh")
        delegate_in_process(rt, alice, pki.users["alice"].proxy, "fresh", lifetime=3600)
        csr = delegation.renew_proxy_request(rt, alice, "fresh")
        assert delegation.termination_time(rt, alice, "fresh") > utcnow()  # still usable until putProxy
        delegation.store_proxy(rt, alice, "fresh", signed_by(pki, "alice", csr, lifetime=2 * 3600))
        assert delegation.termination_time(rt, alice, "fresh") - utcnow() > dt.timedelta(hours=1, minutes=30)
