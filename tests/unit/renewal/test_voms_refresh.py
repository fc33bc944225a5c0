"""VOMS refresh after a MyProxy renewal (anchors.md §2.2): the vomses files, the AC extension of
a refreshed proxy, which servers are asked for what, and which proxy is stored. In process on a
real SQLite database, with VOMS proxies made by the real ``voms-proxy-fake``; the exchange with
a real VOMS server is tested in ``tests/integration/test_voms_refresh.py``."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from pyasn1.codec.der import decoder, encoder
from pyasn1_modules import rfc5755

from tests.conftest import Pki
from tests.unit.renewal.cycle_support import (
    DELEG,
    SERVER,
    claim,
    delegate,
    proxy,
    running_job,
    stored_proxy,
)
from tests.voms_support import FQANS, URI, fake_voms_proxy, fake_voms_server, untrusted_voms_server
from wmproxy.config import RenewalSettings
from wmproxy.domain import utcnow
from wmproxy.errors import ProxyError
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.proxy import credential_pem, load_credential, make_proxy
from wmproxy.security.voms import VOMS_AC_OID, _asn1, verified_fqans, voms_extension
from wmproxy.security.vomses import VomsServer, parse_vomses, read_vomses, servers_of
from wmproxy.services.renewal import (
    RenewalOrder,
    RenewalOutcome,
    due_renewals,
    finish_renewal,
    proves_delegated,
    register_for_renewal,
    renewal_status,
    settle_voms_refresh,
    voms_requests,
)
from wmproxy.services.runtime import Runtime

VOMSES = '''# site vomses
"atlas" "voms2.example.org" "15001" "/DC=org/DC=example/CN=voms2.example.org" "atlas" "24"
"atlas-lcg" "lcg-voms2.example.org" "15001" "/DC=org/DC=example/CN=lcg-voms2.example.org" "atlas"
"cms" "voms-cms.example.org" "15002" "/DC=org/DC=example/CN=voms-cms.example.org" "cms"
"broken" "host" "port" "/CN=x" "atlas"
"short" "host" "15001"
'''


def ac_ders(pem: bytes) -> list[bytes]:
    """The DER ACs of a voms-proxy-fake proxy (one SEQUENCE OF AC in the extension)."""
    ext = next(e for c in load_pem_chain(pem) for e in c.extensions if e.oid == VOMS_AC_OID)
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    decoded, _ = decoder.decode(ext.value.value, asn1Spec=_asn1().ACSeqs())  # SEQUENCE OF SEQUENCE OF AC
    return [encoder.encode(ac) for seq in decoded for ac in seq if isinstance(ac, rfc5755.AttributeCertificate)]


def refreshed(pki: Pki, renewed_pem: bytes, acs: list[bytes]) -> bytes:
    """What the worker makes: a proxy signed by the renewed one, carrying ``acs``."""
    return credential_pem(make_proxy(load_credential(renewed_pem), lifetime=10 * 3600,
                                     extensions=[voms_extension(acs)]))


class TestVomses:
    def test_lines_are_read_as_the_voms_clients_read_them(self) -> None:
        servers = parse_vomses(VOMSES, "test")
        assert servers == [
            VomsServer("atlas", "voms2.example.org", 15001, "/DC=org/DC=example/CN=voms2.example.org", "atlas"),
            VomsServer("atlas", "lcg-voms2.example.org", 15001, "/DC=org/DC=example/CN=lcg-voms2.example.org",
                       "atlas-lcg"),
            VomsServer("cms", "voms-cms.example.org", 15002, "/DC=org/DC=example/CN=voms-cms.example.org", "cms"),
        ]
        assert [s.host for s in servers_of("atlas", servers + servers)] == ["voms2.example.org",
                                                                             "lcg-voms2.example.org"]

    def test_a_directory_is_read_file_by_file_in_name_order_and_a_missing_path_is_empty(
            self, tmp_path: Path) -> None:
        (tmp_path / "b-cms").write_text(VOMSES.splitlines()[3] + "\n")
        (tmp_path / "a-atlas").write_text(VOMSES.splitlines()[1] + "\n")
        assert [s.vo for s in read_vomses(tmp_path)] == ["atlas", "cms"]
        assert read_vomses(tmp_path / "missing") == []


class TestRefreshedProxy:
    def test_acs_carried_by_a_proxy_of_the_renewed_proxy_verify_with_their_fqans(
            self, pki: Pki, tmp_path: Path) -> None:
        server = fake_voms_server(pki, tmp_path)
        acs = ac_ders(fake_voms_proxy(pki, server, tmp_path / "v").read_bytes())
        pem = refreshed(pki, proxy(pki, "alice", 3600), acs)
        chain = load_pem_chain(pem)
        assert len(chain) == 3  # refreshed proxy, renewed proxy, user certificate
        assert verified_fqans(chain, vomsdir=server.vomsdir, ca_dir=pki.ca_dir) == FQANS

    def test_an_empty_or_malformed_ac_list_is_refused(self) -> None:
        with pytest.raises(ProxyError):
            voms_extension([])
        with pytest.raises(ProxyError):
            voms_extension([b"\x30\x03\x02\x01\x01"])


class TestRequests:
    def test_the_acs_server_first_then_the_vos_vomses_servers_for_the_delegated_fqans(
            self, rt: Runtime, pki: Pki, tmp_path: Path) -> None:
        server = fake_voms_server(pki, tmp_path)
        stored = fake_voms_proxy(pki, server, tmp_path / "v").read_bytes()
        (tmp_path / "vomses").write_text(VOMSES)
        rt = dataclasses.replace(rt, settings=dataclasses.replace(
            rt.settings, renewal=RenewalSettings(vomses=str(tmp_path / "vomses"))))
        (request,) = voms_requests(rt, stored, FQANS)
        assert request.vo == "atlas" and request.fqans == FQANS
        assert request.requested == ("/atlas/Role=production", "/atlas", "/atlas/uk")
        host, port = URI.split(":")
        assert [(s.host, s.port, s.dn) for s in request.servers] == [
            (host, int(port), server.dn),
            ("voms2.example.org", 15001, "/DC=org/DC=example/CN=voms2.example.org"),
            ("lcg-voms2.example.org", 15001, "/DC=org/DC=example/CN=lcg-voms2.example.org")]
        # a proxy renewed earlier without refresh: its AC is gone, vomses still names servers
        (request,) = voms_requests(rt, proxy(pki, "alice", 3600), ("/cms/Role=NULL/Capability=NULL",))
        assert [s.host for s in request.servers] == ["voms-cms.example.org"] and request.requested == ("/cms",)

    def test_an_ac_this_service_does_not_trust_names_no_server(self, rt: Runtime, pki: Pki, tmp_path: Path) -> None:
        fake_voms_server(pki, tmp_path)  # the runtime's vomsdir trusts voms.localhost only
        forged = fake_voms_proxy(pki, untrusted_voms_server(pki, tmp_path), tmp_path / "v").read_bytes()
        (request,) = voms_requests(rt, forged, FQANS)
        assert request.servers == ()

    def test_nothing_is_asked_without_delegated_fqans_or_with_the_refresh_off(
            self, rt: Runtime, pki: Pki, tmp_path: Path) -> None:
        stored = fake_voms_proxy(pki, fake_voms_server(pki, tmp_path), tmp_path / "v").read_bytes()
        assert voms_requests(rt, stored, ()) == ()
        off = dataclasses.replace(rt, settings=dataclasses.replace(
            rt.settings, renewal=RenewalSettings(voms_refresh=False)))
        assert voms_requests(off, stored, FQANS) == ()


class TestProvesDelegated:
    @pytest.mark.parametrize(("proven", "proves"), [
        (FQANS, True),
        (("/atlas/Role=production", "/atlas", "/atlas/uk"), True),  # a server writing short FQANs
        ((*FQANS, "/atlas/new/Role=NULL/Capability=NULL"), True),  # a group the VO added since
        ((FQANS[0], "/atlas/new/Role=NULL/Capability=NULL", *FQANS[1:]), True),
        ((FQANS[1], FQANS[0], FQANS[2]), False),  # another primary FQAN
        ((FQANS[0], FQANS[2], FQANS[1]), False),  # another order
        (FQANS[:2], False),  # one lost
        ((), False),
    ], ids=["same", "short", "group-added", "group-between", "other-primary", "other-order", "lost", "none"])
    def test_the_primary_and_every_delegated_fqan_in_order(self, proven: tuple[str, ...], proves: bool) -> None:
        assert proves_delegated(proven, FQANS) is proves

    def test_nothing_delegated_is_proven_by_nothing(self) -> None:
        assert proves_delegated((), ()) and not proves_delegated(FQANS[:1], ())


class TestSettle:
    """Which proxy a renewal stores after a refresh, and what the owner is told."""

    def setup(self, rt: Runtime, pki: Pki, tmp_path: Path) -> tuple[str, dt.datetime, bytes, list[bytes], str]:
        server = fake_voms_server(pki, tmp_path)  # its vomsdir is the runtime's
        dn = pki.users["alice"].dn
        delegated = fake_voms_proxy(pki, server, tmp_path / "p0", "-pastproxy", str(23 * 3600 + 1800)).read_bytes()
        acs = ac_ders(fake_voms_proxy(pki, server, tmp_path / "fresh").read_bytes())
        other = ac_ders(fake_voms_proxy(pki, server, tmp_path / "other", fqans=(FQANS[2],)).read_bytes())
        now = utcnow()
        delegate(rt, dn, delegated, now, FQANS)
        job = running_job(rt, dn, FQANS, delegated)
        with rt.uow() as uow:
            register_for_renewal(uow, dn, DELEG, SERVER, now)
        return dn, now, delegated, acs + other, job

    def refreshed_and_stored(self, rt: Runtime, pki: Pki, order: RenewalOrder, acs: list[bytes], job: str) -> bytes:
        """Settle a renewal whose refresh gave ``acs``: the refreshed proxy is kept, stored and
        reaches the job; it is returned."""
        renewed = proxy(pki, "alice", 10 * 3600)
        fresh = refreshed(pki, renewed, acs)
        now = utcnow()  # the ACs are valid from their making
        outcome = settle_voms_refresh(rt, order, RenewalOutcome("renewed", proxy_pem=renewed, refreshed_pem=fresh),
                                      now)
        assert outcome.proxy_pem == fresh and outcome.notes == ()
        with rt.uow() as uow:
            assert finish_renewal(uow, rt, order, outcome, now) == ("renewed", [job])
        with rt.uow() as uow:
            assert stored_proxy(uow, rt, order.owner_dn, DELEG) == fresh
        return fresh

    def test_a_refreshed_proxy_with_a_group_added_since_is_stored(self, rt: Runtime, pki: Pki, tmp_path: Path) -> None:
        dn, now, _, _, job = self.setup(rt, pki, tmp_path)
        more = (*FQANS, "/atlas/new/Role=NULL/Capability=NULL")
        acs = ac_ders(fake_voms_proxy(pki, fake_voms_server(pki, tmp_path / "again"), tmp_path / "more",
                                      fqans=more).read_bytes())
        self.refreshed_and_stored(rt, pki, claim(rt, now), acs, job)
        with rt.uow() as uow:
            delegation = uow.delegations.get(dn, DELEG)
            assert delegation is not None and delegation.fqans == "\n".join(FQANS)  # the credential's, kept

    def test_a_refreshed_proxy_with_the_delegated_fqans_is_stored_and_reaches_the_jobs(
            self, rt: Runtime, pki: Pki, tmp_path: Path) -> None:
        dn, now, _, (acs, _), job = self.setup(rt, pki, tmp_path)
        order = claim(rt, now)
        assert order.fqans == FQANS and order.voms and order.voms[0].requested[0] == "/atlas/Role=production"
        self.refreshed_and_stored(rt, pki, order, [acs], job)
        with rt.uow() as uow:
            status = renewal_status(uow, dn, DELEG)
        assert status is not None and not status.notes

    @pytest.mark.parametrize("case", ["other-fqans", "server-failed"])
    def test_without_a_usable_refresh_the_proxy_from_myproxy_is_stored_with_the_reason(
            self, rt: Runtime, pki: Pki, tmp_path: Path, case: str) -> None:
        dn, now, _, (_, other), job = self.setup(rt, pki, tmp_path)
        order = claim(rt, now)
        renewed = proxy(pki, "alice", 10 * 3600)
        if case == "other-fqans":
            given = RenewalOutcome("renewed", proxy_pem=renewed, refreshed_pem=refreshed(pki, renewed, [other]))
            reason = f"the VOMS server granted {FQANS[2]}, which does not prove the delegated {' '.join(FQANS)}"
        else:
            given = RenewalOutcome("renewed", proxy_pem=renewed, voms_error="no VOMS server of atlas granted ...")
            reason = "no VOMS server of atlas granted ..."
        outcome = settle_voms_refresh(rt, order, given, now)
        assert outcome.proxy_pem == renewed and outcome.refreshed_pem is None
        assert outcome.notes == (f"VOMS attributes not refreshed: {reason}",)
        with rt.uow() as uow:
            assert finish_renewal(uow, rt, order, outcome, now) == ("renewed", [job])
        with rt.uow() as uow:
            assert stored_proxy(uow, rt, dn, DELEG) == renewed
            status = renewal_status(uow, dn, DELEG)
            (event,) = uow.jobs.history(job, kinds=["proxy_renewed"])
        assert status is not None and f"VOMS attributes not refreshed: {reason}" in (status.notes or "")
        assert "the renewed proxy carries no VOMS attributes (MyProxy holds none)" in (status.notes or "")
        assert f"VOMS attributes not refreshed: {reason}" in (event.reason or "")


class TestAcDrivenSchedule:
    """The shortest of the X.509 and AC ends drives the schedule (anchors.md §2.2): a 24 h VOMS
    proxy whose 12 h AC ended an hour ago, 11 h of X.509 left."""

    def delegate_ended_ac(self, rt: Runtime, pki: Pki, tmp_path: Path, fqans: tuple[str, ...] = FQANS) -> bytes:
        server = fake_voms_server(pki, tmp_path)
        pem = fake_voms_proxy(pki, server, tmp_path / "p0", "-hours", "24", "-vomslife", "12",
                              "-pastproxy", str(13 * 3600), "-pastac", str(13 * 3600)).read_bytes()
        now = utcnow()
        delegate(rt, pki.users["alice"].dn, pem, now, fqans)
        with rt.uow() as uow:
            register_for_renewal(uow, pki.users["alice"].dn, DELEG, SERVER, now)
        return pem

    def test_an_ended_ac_makes_the_credential_due_with_the_refresh_on(
            self, rt: Runtime, pki: Pki, tmp_path: Path) -> None:
        self.delegate_ended_ac(rt, pki, tmp_path)
        now, ends = utcnow(), {}
        with rt.uow() as uow:
            assert len(due_renewals(uow, rt, now, ends)) == 1
            assert len(due_renewals(uow, rt, now, ends)) == 1 and len(ends) == 1  # read once
        assert claim(rt, now).voms_due
        off = dataclasses.replace(rt, settings=dataclasses.replace(
            rt.settings, renewal=RenewalSettings(voms_refresh=False)))
        with off.uow() as uow:
            assert due_renewals(uow, off, now) == []

    def test_an_ac_delegated_without_fqans_does_not(self, rt: Runtime, pki: Pki, tmp_path: Path) -> None:
        self.delegate_ended_ac(rt, pki, tmp_path, fqans=())  # its AC was not believed at delegation
        with rt.uow() as uow:
            assert due_renewals(uow, rt, utcnow()) == []

    @pytest.mark.parametrize("refreshed_ok", [True, False], ids=["refreshed", "not-refreshed"])
    def test_a_shorter_proxy_with_new_attributes_replaces_one_whose_attributes_ended(
            self, rt: Runtime, pki: Pki, tmp_path: Path, refreshed_ok: bool) -> None:
        stored = self.delegate_ended_ac(rt, pki, tmp_path)
        acs = ac_ders(fake_voms_proxy(pki, fake_voms_server(pki, tmp_path / "again"), tmp_path / "fresh").read_bytes())
        now = utcnow()
        order = claim(rt, now)
        renewed = proxy(pki, "alice", 10 * 3600)  # MyProxy grants 10 h: less than the 11 h left
        given = (RenewalOutcome("renewed", proxy_pem=renewed, refreshed_pem=refreshed(pki, renewed, acs))
                 if refreshed_ok else RenewalOutcome("renewed", proxy_pem=renewed, voms_error="no server"))
        outcome = settle_voms_refresh(rt, order, given, now)
        with rt.uow() as uow:
            result, _ = finish_renewal(uow, rt, order, outcome, now)
        with rt.uow() as uow:
            now_stored = stored_proxy(uow, rt, order.owner_dn, DELEG)
        if refreshed_ok:
            assert result == "renewed" and now_stored == outcome.proxy_pem
        else:  # the X.509 proxy is not shortened for nothing
            assert result == "not-extended" and now_stored == stored
