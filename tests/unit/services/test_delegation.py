"""Delegation through the public service functions: getProxyReq/putProxy, the delegation-2
extras, getTerminationTime and destroy, scoped by (caller DN, delegation id)
(services/delegation.py; wmproxy-behaviour.md §5)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.conftest import Pki
from tests.support import ECHO_JDL, delegate_in_process
from wmproxy.domain import Principal, utcnow
from wmproxy.errors import (
    DelegationError,
    DelegationNotFoundError,
    InvalidDelegationIdError,
    ProxyExpiredError,
    ProxyVerificationError,
)
from wmproxy.security.chain import chain_pem
from wmproxy.security.dn import slash_dn
from wmproxy.security.proxy import Credential, load_credential, make_proxy, sign_proxy_request
from wmproxy.security.renewed import proxy_end
from wmproxy.services import delegation
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job


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
        delegation.create_proxy_request(rt, alice, "gone")
        delegation.create_proxy_request(rt, bob, "gone")
        with pytest.raises(DelegationNotFoundError):
            delegation.destroy(rt, bob, "gone")
        delegation.termination_time(rt, alice, "gone")
        delegation.destroy(rt, alice, "gone")
        with pytest.raises(DelegationNotFoundError):
            delegation.termination_time(rt, alice, "gone")
        with rt.uow() as uow:  # alice's pending request went with her proxy; bob's refused destroy left his
            assert uow.delegations.get_request(alice.dn, "gone") is None
            assert uow.delegations.get_request(bob.dn, "gone") is not None
        with pytest.raises(DelegationNotFoundError):
            delegation.destroy(rt, alice, "gone")

    def test_new_request_refused_while_the_default_proxy_is_valid(self, rt: Runtime, alice: Principal,
                                                                  pki: Pki) -> None:
        delegation_id, _ = delegation.create_new_proxy_request(rt, alice)
        delegate_in_process(rt, alice, pki.users["alice"].proxy, delegation_id)
        with pytest.raises(DelegationError, match="Previous client delegated proxy still valid"):
            delegation.create_new_proxy_request(rt, alice)

    def test_termination_time_of_no_proxy_has_the_reference_text(self, rt: Runtime, alice: Principal,
                                                                 pki: Pki) -> None:
        """§5.2: "Client delegated proxy not found:  get termination time not allowed", two spaces."""
        delegation.create_proxy_request(rt, alice, "pending")  # a pending request is no proxy
        for delegation_id in ("pending", "never", None):
            with pytest.raises(DelegationNotFoundError) as err:
                delegation.termination_time(rt, alice, delegation_id)
            assert str(err.value) == "Client delegated proxy not found:  get termination time not allowed"

    def test_renew_needs_an_existing_delegation(self, rt: Runtime, alice: Principal, pki: Pki) -> None:
        with pytest.raises(DelegationNotFoundError, match="No previous client delegated proxy found"):
            delegation.renew_proxy_request(rt, alice, "fresh")
        delegate_in_process(rt, alice, pki.users["alice"].proxy, "fresh", lifetime=3600)
        csr = delegation.renew_proxy_request(rt, alice, "fresh")
        assert delegation.termination_time(rt, alice, "fresh") > utcnow()  # still usable until putProxy
        delegation.store_proxy(rt, alice, "fresh", signed_by(pki, "alice", csr, lifetime=2 * 3600))
        assert delegation.termination_time(rt, alice, "fresh") - utcnow() > dt.timedelta(hours=1, minutes=30)


def short_lived_user(pki: Pki, minutes: int, age: dt.timedelta = dt.timedelta(days=1)) -> tuple[Credential, Principal]:
    """A user of the test CA whose certificate ends in ``minutes`` minutes and began ``age``
    before that, and its Principal."""
    user = pki.ca.issue_user("Shortlived", not_after=utcnow() + dt.timedelta(minutes=minutes),
                             lifetime_days=age / dt.timedelta(days=1))
    return user, Principal(dn=slash_dn(user.cert.subject))


def signed_outliving(csr: str, signer: Credential, lifetime: int, backdate: dt.timedelta | None = None) -> str:
    """What a client that does not fit its proxy within its own validity sends to putProxy: the
    CSR's key certified by ``signer`` for ``lifetime`` seconds from now, whatever the signer's end
    (OpenSSL does not require a proxy to lie within its issuer's validity), and starting
    ``backdate`` ago when given (else as :func:`make_proxy`), then the signer's chain."""
    capped = make_proxy(signer, lifetime=60, public_key=x509.load_pem_x509_csr(csr.encode()).public_key()).cert
    builder = (
        x509.CertificateBuilder().subject_name(capped.subject).issuer_name(capped.issuer)
        .public_key(capped.public_key()).serial_number(capped.serial_number)
        .not_valid_before(capped.not_valid_before_utc if backdate is None else utcnow() - backdate)
        .not_valid_after(utcnow() + dt.timedelta(seconds=lifetime))
    )
    for ext in capped.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return chain_pem([builder.sign(signer.key, hashes.SHA256()), *signer.full_chain]).decode()


class TestChainValidity:
    """The stored proxy is usable while every certificate of its chain is valid: a leaf that
    outlives the user certificate ends with it."""

    def test_a_proxy_outliving_the_user_certificate_ends_with_it(self, rt: Runtime, pki: Pki) -> None:
        user, caller = short_lived_user(pki, minutes=10)
        _, csr = delegation.create_proxy_request(rt, caller, "outliving")
        signed = signed_outliving(csr, user, lifetime=12 * 3600)
        leaf = x509.load_pem_x509_certificate(signed.encode())
        assert leaf.not_valid_after_utc - user.cert.not_valid_after_utc > dt.timedelta(hours=11)
        row = delegation.store_proxy(rt, caller, "outliving", signed)
        end = user.cert.not_valid_after_utc
        assert row.not_after == end
        assert delegation.termination_time(rt, caller, "outliving") == end
        assert delegation.delegated_proxy_info(rt, caller, "outliving").end_time == end
        with rt.uow() as uow:
            stored = uow.delegations.stored_proxy(caller.dn, "outliving")
            assert stored is not None and stored.not_after == end
        # A job's copy of it ends there too, so the renewal does not see the copy as newer.
        assert proxy_end(rt.sealer.open(row.sealed_proxy)) == end

    def test_a_proxy_starting_before_the_user_certificate_starts_with_it(self, rt: Runtime, pki: Pki) -> None:
        user, caller = short_lived_user(pki, minutes=60, age=dt.timedelta(minutes=61))
        _, csr = delegation.create_proxy_request(rt, caller, "started")
        signed = signed_outliving(csr, user, lifetime=1800, backdate=dt.timedelta(hours=1))
        leaf = x509.load_pem_x509_certificate(signed.encode())
        start = user.cert.not_valid_before_utc
        assert start - leaf.not_valid_before_utc > dt.timedelta(minutes=50)
        row = delegation.store_proxy(rt, caller, "started", signed)
        assert (row.not_before, row.not_after) == (start, leaf.not_valid_after_utc)
        with rt.uow() as uow:
            stored = uow.delegations.stored_proxy(caller.dn, "started")
            assert stored is not None and stored.not_before == start

    def test_job_submit_refuses_a_proxy_whose_user_certificate_ends_too_soon(self, rt: Runtime, pki: Pki) -> None:
        """The minimum lifetime (20 minutes) is checked against the chain's end: 10 minutes left."""
        user, caller = short_lived_user(pki, minutes=10)
        _, csr = delegation.create_proxy_request(rt, caller, "short-user")
        delegation.store_proxy(rt, caller, "short-user", signed_outliving(csr, user, lifetime=12 * 3600))
        with pytest.raises(ProxyExpiredError, match="has less than 20 minutes left"):
            submit_job(rt, caller, ECHO_JDL, "short-user")

    def test_an_expired_certificate_sent_beside_the_chain_is_left_out(self, rt: Runtime, pki: Pki,
                                                                      alice: Principal) -> None:
        """OpenSSL checks the certificates of the path it builds only; an expired one sent after
        them is neither stored nor counted in the validity (it used to end the proxy before it
        was accepted): the stored proxy is the verified path's."""
        old = pki.ca.issue_user("Bygone", not_after=utcnow() - dt.timedelta(hours=1), lifetime_days=1)
        _, csr = delegation.create_proxy_request(rt, alice, "bygone")
        plain = signed_by(pki, "alice", csr)
        row = delegation.store_proxy(rt, alice, "bygone", plain + chain_pem([old.cert]).decode())
        leaf = x509.load_pem_x509_certificate(plain.encode())
        assert delegation.termination_time(rt, alice, "bygone") == row.not_after == leaf.not_valid_after_utc
        with rt.uow() as uow:
            stored = uow.delegations.stored_proxy(alice.dn, "bygone")
            assert stored is not None
            assert old.cert not in load_credential(rt.sealer.open(stored.sealed_proxy)).chain


class TestServiceNamesOfPutProxy:
    """putProxy reads the service's names (``[service] host``, the host certificate's) for the
    targets of the chain's VOMS ACs, when it has ACs only (issue 14: a ``stat`` of the host
    certificate on every putProxy)."""

    def test_a_chain_without_acs_reads_no_host_certificate(self, rt: Runtime, alice: Principal, pki: Pki,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
        asked: list[str] = []
        names = delegation.service_host_names

        def counted(host_cert: str, host: str = "") -> tuple[str, ...]:
            asked.append(host_cert)
            return names(host_cert, host)

        monkeypatch.setattr(delegation, "service_host_names", counted)
        _, csr = delegation.create_proxy_request(rt, alice, "plain")
        row = delegation.store_proxy(rt, alice, "plain", signed_by(pki, "alice", csr))
        assert row.fqans == "" and asked == []

    def test_an_ac_targeted_at_this_service_is_believed(self, tmp_path, pki: Pki, template_db,
                                                         alice: Principal) -> None:
        from tests.support import build_runtime, close_runtime
        from tests.voms_support import (
            FQANS,
            TARGETS_OID,
            fake_voms_proxy,
            fake_voms_server,
            targets_extension,
            with_ac_extension,
        )

        server = fake_voms_server(pki, tmp_path / "voms")
        plain = fake_voms_proxy(pki, server, tmp_path / "voms-proxy.pem")
        proxies = {host: with_ac_extension(pki, server, plain, tmp_path / f"{host}.pem", TARGETS_OID,
                                           targets_extension(host), critical=True)
                   for host in ("localhost", "elsewhere.example.org")}
        runtime = build_runtime(tmp_path / "state", pki, template_db, security={"vomsdir": str(server.vomsdir)})
        try:
            for host, believed in (("localhost", FQANS), ("elsewhere.example.org", ())):
                _, csr = delegation.create_proxy_request(runtime, alice, host)
                signed = sign_proxy_request(csr.encode(), load_credential(proxies[host]), lifetime=3600).decode()
                row = delegation.store_proxy(runtime, alice, host, signed)
                assert tuple(filter(None, row.fqans.split("\n"))) == believed, host
                for _ in range(2):  # a job's check of the stored proxy: parsed, then from the process's cache
                    assert delegation.believed_fqans(runtime, row, utcnow(), "register jobs") == believed, host
        finally:
            close_runtime(runtime)


class TestServiceNamesOfStoredProxies:
    """A job's checks (``believed_fqans``: jobRegister, jobSubmit, jobStart) read the service's
    names for the stored chain's VOMS ACs only when the chain carries the VOMS extension
    (issue 14: a ``stat`` of the host certificate on every jobSubmit); an AC targeted at this
    service is still believed, and no other (``TestServiceNamesOfPutProxy``)."""

    def test_a_chain_without_acs_reads_no_host_certificate(self, rt: Runtime, alice: Principal, pki: Pki,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
        _, csr = delegation.create_proxy_request(rt, alice, "plain")
        row = delegation.store_proxy(rt, alice, "plain", signed_by(pki, "alice", csr))
        asked: list[str] = []
        monkeypatch.setattr(delegation, "service_host_names", lambda host_cert, host="": asked.append(host) or ())
        for _ in range(2):  # parsed, then from the per-process cache
            assert delegation.believed_fqans(rt, row, utcnow(), "register jobs") == ()
        assert asked == []
