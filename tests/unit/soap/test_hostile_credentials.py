"""Credentials mean what they say, in-process (issue 10): limited proxies, forged VOMS ACs, proxy
chain depth, the FQAN of bug 54728, the sandbox edge and the JDL end marker. The same findings
run over TLS in ``tests/integration/test_hostile.py``."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from lxml import etree

from tests.conftest import Pki
from tests.fuzz.support import expect_fault, store_footprint, tree_footprint, tried, typed_fault, wrapped
from tests.support import (
    ECHO_JDL,
    INDEPENDENT,
    Reply,
    SoapApp,
    build_runtime,
    caller_from_environ,
    close_runtime,
    delegate_in_process,
    policy_proxy,
)
from tests.voms_support import (
    TARGETS_OID,
    VomsServer,
    fake_ca_voms_server,
    fake_voms_proxy,
    fake_voms_server,
    targets_extension,
    untrusted_voms_server,
    with_ac_extension,
    write_lsc,
)
from wmproxy.config import LimitsSettings
from wmproxy.domain import Principal, utcnow
from wmproxy.security.chain import chain_pem, has_limited_proxy, proxy_depth
from wmproxy.security.proxy import Credential, credential_pem, load_credential, make_proxy, sign_proxy_request
from wmproxy.services.authz import LIMITED_PROXY_REFUSED
from wmproxy.soap.app import WMProxyApplication
from wmproxy.soap.contract import operations_by_namespace
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, WMPROXY

DECLARED = operations_by_namespace()[WMPROXY]
UNKNOWN_JOB = "https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA"
PRODUCTION = "/atlas/Role=production/Capability=NULL"
ATLAS = "/atlas/Role=NULL/Capability=NULL"


def fault(reply: Reply, kind: str, method: str, text: str) -> etree._Element:
    return expect_fault(reply, kind, method, text, "credentials")


def delegation_refusal(reply: Reply, namespace: str, text: str) -> None:
    tried("credentials")
    detail = typed_fault(reply.status, reply.body)
    assert etree.QName(detail) == etree.QName(namespace, "DelegationException")
    assert text in (detail[0].text or "")


def proxy_chain(pki: Pki, user: str, levels: int, *, limited_at: int | None = None) -> Credential:
    """A proxy ``levels`` deep below the user's certificate (level ``limited_at`` limited)."""
    cred = pki.users[user].credential
    for level in range(1, levels + 1):
        cred = make_proxy(cred, lifetime=6 * 3600, limited=level == limited_at)
    return cred


def legacy_limited_proxy(pki: Pki, user: str) -> Credential:
    """A GT2-style ``.../CN=limited proxy`` certificate signed by the user (no proxyCertInfo)."""
    issuer = pki.users[user].credential
    assert issuer.key is not None
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([*issuer.cert.subject.rdns,
                         x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "limited proxy")])])
    proxy = make_proxy(issuer, lifetime=3600)  # only for a fresh key pair
    assert proxy.key is not None
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.cert.subject)
            .public_key(proxy.key.public_key()).serial_number(12345)  # type: ignore[arg-type]
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
            .sign(issuer.key, hashes.SHA256()))  # type: ignore[arg-type]
    return Credential(cert, proxy.key, [issuer.cert])


def caller_with(pki: Pki, user: str, cred: Credential, fqans: tuple[str, ...] = ()) -> Principal:
    return Principal(dn=pki.users[user].dn, chain_pem=chain_pem(cred.full_chain), fqans=fqans)


def register(soap: SoapApp, caller: Principal, delegation_id: str, jdl: str = ECHO_JDL) -> Reply:
    return soap.call(WMPROXY, "jobRegister", caller, jdl=jdl, delegationId=delegation_id)


def registered_job(soap: SoapApp, caller: Principal, delegation_id: str, jdl: str = ECHO_JDL) -> tuple[str, str]:
    """(job id, sandbox input path) of a job registered by ``caller``."""
    reply = register(soap, caller, delegation_id, jdl)
    assert reply.status.startswith("200"), reply.body
    struct = reply.element.find("jobIdStruct")
    return struct.findtext("id"), struct.findtext("path")


# --- limited proxies ----------------------------------------------------------------------------


#: The WMProxy-port operations a limited proxy may not call, with parts that reach the check.
REFUSED_WMPROXY = {
    "jobRegister": {"jdl": ECHO_JDL, "delegationId": "x"},
    "jobSubmit": {"jdl": ECHO_JDL, "delegationId": "x"},
    "jobStart": {"jobId": UNKNOWN_JOB},
    "jobCancel": {"jobId": UNKNOWN_JOB},
    "jobPurge": {"jobId": UNKNOWN_JOB},
    "getProxyReq": {"delegationID": "x"},
    "putProxy": {"delegationID": "x", "proxy": "p"},
    "removeACLItem": {"jobId": UNKNOWN_JOB, "item": "/atlas"},
    "addACLItems": {"jobId": UNKNOWN_JOB},
    "enableFilePerusal": {"jobId": UNKNOWN_JOB},
    "jobRegisterJSDL": {"delegationId": "x"},
    "jobSubmitJSDL": {"delegationId": "x"},
}
REFUSED_DELEGATION = {
    "getProxyReq": {"delegationID": "x"},
    "putProxy": {"delegationID": "x", "proxy": "p"},
    "getNewProxyReq": {},
    "renewProxyReq": {"delegationID": "x"},
    "destroy": {"delegationID": "x"},
}
READING = {
    "getJobStatus": {"jobId": UNKNOWN_JOB},
    "getJDL": {"jobId": UNKNOWN_JOB, "type": "ORIGINAL"},
    "getOutputFileList": {"jobId": UNKNOWN_JOB, "protocol": "https"},
    "getJobProxyInfo": {"jobId": UNKNOWN_JOB},
    "getACLItems": {"jobId": UNKNOWN_JOB},
    "getDelegatedProxyInfo": {"delegationID": "x"},
    "getSandboxDestURI": {"jobId": UNKNOWN_JOB, "protocol": "https"},
}


@pytest.fixture(scope="module")
def limited_chains(pki: Pki) -> dict[str, Credential]:
    return {
        "rfc3820": proxy_chain(pki, "alice", 1, limited_at=1),
        "below-a-limited-proxy": proxy_chain(pki, "alice", 2, limited_at=1),
        "legacy": legacy_limited_proxy(pki, "alice"),
    }


class TestLimitedProxies:
    def test_every_operation_refused_is_listed(self) -> None:
        """The deliberate list (services/authz.py): these change, create or delegate; nothing else."""
        assert set(LIMITED_PROXY_REFUSED) == {*REFUSED_WMPROXY, *REFUSED_DELEGATION} | {
            "sandbox PUT", "sandbox MOVE", "sandbox DELETE"}
        assert not set(READING) & set(LIMITED_PROXY_REFUSED)

    @pytest.mark.parametrize("kind", ["rfc3820", "below-a-limited-proxy", "legacy"])
    def test_the_chains_are_limited(self, limited_chains: dict[str, Credential], kind: str) -> None:
        assert has_limited_proxy(limited_chains[kind].full_chain)

    @pytest.mark.parametrize("kind", ["rfc3820", "below-a-limited-proxy", "legacy"])
    @pytest.mark.parametrize("operation", sorted(REFUSED_WMPROXY))
    def test_wmproxy_port_refuses(self, soap: SoapApp, pki: Pki, limited_chains: dict[str, Credential],
                                  kind: str, operation: str) -> None:
        caller = caller_with(pki, "alice", limited_chains[kind])
        before = store_footprint(soap.rt)
        reply = soap.call(WMPROXY, operation, caller, **REFUSED_WMPROXY[operation])
        detail = fault(reply, "AuthorizationFault", operation, "a limited proxy cannot")
        assert detail.findtext("ErrorCode") == "1207"
        assert store_footprint(soap.rt) == before

    @pytest.mark.parametrize("namespace", [DELEGATION_1, DELEGATION_2])
    @pytest.mark.parametrize("operation", sorted(REFUSED_DELEGATION))
    def test_delegation_ports_refuse(self, soap: SoapApp, pki: Pki, limited_chains: dict[str, Credential],
                                     namespace: str, operation: str) -> None:
        caller = caller_with(pki, "alice", limited_chains["rfc3820"])
        reply = soap.call(namespace, operation, caller, **REFUSED_DELEGATION[operation])
        delegation_refusal(reply, namespace, "a limited proxy cannot")

    @pytest.mark.parametrize("operation", sorted(READING))
    def test_reading_is_allowed(self, soap: SoapApp, pki: Pki, limited_chains: dict[str, Credential],
                                operation: str) -> None:
        caller = caller_with(pki, "alice", limited_chains["rfc3820"])
        reply = soap.call(WMPROXY, operation, caller, **READING[operation])
        if reply.status.startswith("500"):  # the unknown job or delegation, never the proxy's kind
            detail = typed_fault(reply.status, reply.body, DECLARED)
            assert "limited proxy" not in (detail.findtext("Description") or "")

    def test_the_sandbox_is_read_only(self, soap: SoapApp, pki: Pki, alice: Principal,
                                      limited_chains: dict[str, Credential]) -> None:
        delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "full")
        _, path = registered_job(soap, alice, "full")
        assert soap.request(b"mine", alice, method="PUT", path=f"/{path}/data.txt").status.startswith("201")
        caller = caller_with(pki, "alice", limited_chains["rfc3820"])
        for method in ("PUT", "DELETE", "MOVE"):
            tried("credentials")
            reply = soap.request(b"x", caller, method=method, path=f"/{path}/data.txt")
            assert reply.status.startswith("403") and b"a limited proxy cannot" in reply.body, reply
        reply = wrapped(soap).request(b"", caller, method="GET", path=f"/{path}/data.txt")
        assert reply.status.startswith("200") and reply.body == b"mine"

    def test_a_delegation_signed_by_a_limited_proxy_is_refused(self, soap: SoapApp, pki: Pki,
                                                               alice: Principal) -> None:
        """The caller's own TLS proxy is a full one; what it delegates is limited."""
        before = store_footprint(soap.rt)
        reply = soap.call(DELEGATION_2, "getProxyReq", alice, delegationID="from-limited")
        csr = reply.element.findtext("getProxyReqReturn")
        signed = sign_proxy_request(csr.encode(), proxy_chain(pki, "alice", 1, limited_at=1), lifetime=3600)
        reply = soap.call(WMPROXY, "putProxy", alice, delegationID="from-limited", proxy=signed.decode())
        fault(reply, "AuthorizationFault", "putProxy", "a limited proxy cannot be delegated")
        reply = register(soap, alice, "from-limited")
        fault(reply, "AuthorizationFault", "jobRegister", "Unable to get delegated Proxy")
        assert store_footprint(soap.rt)[:3] == before[:3]

    def test_a_stored_limited_delegation_cannot_register_or_start_jobs(self, soap: SoapApp, pki: Pki,
                                                                       alice: Principal) -> None:
        """A limited proxy stored anyway (an older release, a MyProxy renewal) is refused where it is used."""
        delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "swapped")
        job_id, _ = registered_job(soap, alice, "swapped")
        limited = make_proxy(load_credential(pki.users["alice"].proxy), lifetime=6 * 3600, limited=True)
        with soap.rt.uow() as uow:
            uow.delegations.put_proxy(alice.dn, "swapped", soap.rt.sealer.seal(credential_pem(limited)),
                                      limited.cert.not_valid_before_utc, limited.cert.not_valid_after_utc, (), utcnow())
        before = store_footprint(soap.rt), tree_footprint(Path(soap.rt.settings.sandbox.root))
        fault(register(soap, alice, "swapped"), "AuthorizationFault", "jobRegister",
              "was signed by a limited proxy and cannot be used to register jobs")
        fault(soap.call(WMPROXY, "jobStart", alice, jobId=job_id), "AuthorizationFault", "jobStart",
              "cannot be used to start jobs")
        assert (store_footprint(soap.rt), tree_footprint(Path(soap.rt.settings.sandbox.root))) == before


    def test_a_stored_independent_delegation_cannot_register_or_start_jobs(self, soap: SoapApp, pki: Pki,
                                                                           alice: Principal) -> None:
        """An independent proxy stored by an earlier release (which took it for an impersonation
        proxy) is refused where it is used, naming its policy language."""
        delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "independent")
        job_id, _ = registered_job(soap, alice, "independent")
        independent = policy_proxy(load_credential(pki.users["alice"].proxy), INDEPENDENT, lifetime=6 * 3600)
        with soap.rt.uow() as uow:
            uow.delegations.put_proxy(alice.dn, "independent", soap.rt.sealer.seal(credential_pem(independent)),
                                      independent.cert.not_valid_before_utc, independent.cert.not_valid_after_utc, (),
                                      utcnow())
        before = store_footprint(soap.rt), tree_footprint(Path(soap.rt.settings.sandbox.root))
        fault(register(soap, alice, "independent"), "AuthorizationFault", "jobRegister",
              f"delegated proxy 'independent' holds a proxy of RFC 3820 policy language {INDEPENDENT}")
        fault(soap.call(WMPROXY, "jobStart", alice, jobId=job_id), "AuthorizationFault", "jobStart",
              "cannot be used to start jobs")
        assert (store_footprint(soap.rt), tree_footprint(Path(soap.rt.settings.sandbox.root))) == before


# --- proxy chain depth --------------------------------------------------------------------------


class TestChainDepth:
    def test_depth_counts_proxy_levels(self, pki: Pki) -> None:
        assert proxy_depth([pki.users["alice"].credential.cert]) == 0
        assert proxy_depth(proxy_chain(pki, "alice", 3).full_chain) == 3
        assert proxy_depth(legacy_limited_proxy(pki, "alice").full_chain) == 1

    @pytest.mark.parametrize(("signer_levels", "accepted"), [(9, True), (10, False), (11, False)])
    def test_put_proxy_refuses_chains_deeper_than_the_limit(self, soap: SoapApp, pki: Pki, alice: Principal,
                                                             signer_levels: int, accepted: bool) -> None:
        """The delegated proxy is one level below its signer: 9 → 10 levels (the limit), 10 → 11."""
        tried("credentials")
        reply = soap.call(DELEGATION_2, "getProxyReq", alice, delegationID="deep")
        csr = reply.element.findtext("getProxyReqReturn")
        signed = sign_proxy_request(csr.encode(), proxy_chain(pki, "alice", signer_levels), lifetime=3600)
        reply = soap.call(DELEGATION_2, "putProxy", alice, delegationID="deep", proxy=signed.decode())
        if accepted:
            assert reply.status.startswith("200"), reply.body
        else:
            delegation_refusal(reply, DELEGATION_2,
                               f"too long: {signer_levels + 1} proxy levels, at most 10 allowed")


# --- VOMS: forged ACs and the FQAN of bug 54728 -------------------------------------------------


@pytest.fixture(scope="module")
def voms(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """VOMS proxies of alice: trusted ones with two primary FQANs, two kinds of forgery, and ACs
    of the trusted server for another service (RFC 5755 Targets, written as VOMS does) or with an
    unknown critical extension; "this-service" is targeted at ``localhost``, the service's host."""
    root = tmp_path_factory.mktemp("hostile-voms")
    server = fake_voms_server(pki, root / "trusted")
    production = fake_voms_proxy(pki, server, root / "production.pem", fqans=(PRODUCTION, ATLAS))

    def changed(name: str, oid: str, value: bytes) -> Path:
        return with_ac_extension(pki, server, production, root / f"{name}.pem", oid, value, critical=True)

    return {
        "atlas": fake_voms_proxy(pki, server, root / "atlas.pem", fqans=(ATLAS, PRODUCTION)),
        "production": production,
        "other-service": changed("other-service", TARGETS_OID, targets_extension("wms.example.org", voms=True)),
        "unknown-critical": changed("unknown-critical", "1.2.3.4.5", b"\x05\x00"),
        "this-service": changed("this-service", TARGETS_OID, targets_extension("wms.example.org", "localhost",
                                                                                voms=True)),
        "uk": fake_voms_proxy(pki, server, root / "uk.pem", fqans=("/atlas/uk/Role=NULL/Capability=NULL",)),
        "untrusted": fake_voms_proxy(pki, untrusted_voms_server(pki, root / "impostor"), root / "untrusted.pem",
                                     fqans=(PRODUCTION,)),
        "fake-ca": fake_voms_proxy(pki, fake_ca_voms_server(pki, root / "fake"), root / "fake-ca.pem",
                                   fqans=(PRODUCTION,)),
    }


@pytest.fixture
def trusting(soap: SoapApp, pki: Pki) -> SoapApp:
    """``soap`` whose vomsdir trusts the test VOMS server (``voms.localhost`` of the test CA)."""
    server = VomsServer(Path(), Path(), "/C=XX/O=wmproxy-demo/OU=Hosts/CN=voms.localhost", Path())
    write_lsc(Path(soap.rt.settings.security.vomsdir), server.dn, pki.ca.dn)
    return soap


def delegate_voms(soap: SoapApp, pki: Pki, proxy: Path, delegation_id: str) -> None:
    delegate_in_process(soap.rt, Principal(pki.users["alice"].dn), proxy, delegation_id)


class TestForgedVomsAttributes:
    @pytest.mark.parametrize("forgery", ["untrusted", "fake-ca", "other-service", "unknown-critical"])
    def test_never_shown_nor_registered_as_fqans(self, trusting: SoapApp, pki: Pki, alice: Principal,
                                                 voms: dict[str, Path], forgery: str) -> None:
        tried("credentials")
        delegate_voms(trusting, pki, voms[forgery], forgery)
        reply = trusting.call(WMPROXY, "getDelegatedProxyInfo", alice, delegationID=forgery)
        assert reply.status.startswith("200"), reply.body
        (vo,) = reply.element.find("items").findall("VOsInfo")
        attributes = [a.text or "" for a in vo.findall("Attribute")]
        assert len(attributes) == 1 and attributes[0].startswith("not verified: "), attributes
        assert PRODUCTION not in reply.body.decode()
        job_id, _ = registered_job(trusting, alice, forgery)  # no FQAN believed: nothing to mismatch
        jdl = trusting.call(WMPROXY, "getJDL", alice, jobId=job_id, type="REGISTERED").element.findtext("jdl")
        assert "VOMS_FQAN" not in jdl and "atlas" not in jdl
        info = trusting.call(WMPROXY, "getJobProxyInfo", alice, jobId=job_id).body.decode()
        assert "not verified: " in info and PRODUCTION not in info

    @pytest.mark.parametrize(("proxy", "reason"), [
        ("other-service", "the AC is targeted at 'wms.example.org', not at this service"),
        ("unknown-critical", "unknown critical AC extension 1.2.3.4.5"),
    ])
    def test_the_refusal_is_reported(self, trusting: SoapApp, pki: Pki, alice: Principal, voms: dict[str, Path],
                                     proxy: str, reason: str) -> None:
        delegate_voms(trusting, pki, voms[proxy], proxy)
        reply = trusting.call(WMPROXY, "getDelegatedProxyInfo", alice, delegationID=proxy)
        (vo,) = reply.element.find("items").findall("VOsInfo")
        assert [a.text for a in vo.findall("Attribute")] == [f"not verified: {reason}"]

    @pytest.mark.parametrize("proxy", ["production", "this-service"])
    def test_the_trusted_ac_is_believed(self, trusting: SoapApp, pki: Pki, voms: dict[str, Path],
                                        proxy: str) -> None:
        delegate_voms(trusting, pki, voms[proxy], "real")
        caller = Principal(pki.users["alice"].dn, fqans=(PRODUCTION, ATLAS))
        reply = trusting.call(WMPROXY, "getDelegatedProxyInfo", caller, delegationID="real")
        (vo,) = reply.element.find("items").findall("VOsInfo")
        assert [a.text for a in vo.findall("Attribute")] == [PRODUCTION, ATLAS]
        job_id, _ = registered_job(trusting, caller, "real")
        jdl = trusting.call(WMPROXY, "getJDL", caller, jobId=job_id, type="REGISTERED").element.findtext("jdl")
        assert f'VOMS_FQAN = "{PRODUCTION}"' in jdl


class TestFqanMismatch:
    """WTS bug 54728: delegate as /atlas/Role=NULL, submit as /atlas/Role=production."""

    @pytest.mark.parametrize("operation", ["jobRegister", "jobSubmit"])
    def test_another_role_is_refused_with_the_reference_wording(
        self, trusting: SoapApp, pki: Pki, voms: dict[str, Path], operation: str
    ) -> None:
        delegate_voms(trusting, pki, voms["atlas"], "as-atlas")
        caller = Principal(pki.users["alice"].dn, fqans=(PRODUCTION, ATLAS))
        before = store_footprint(trusting.rt), tree_footprint(Path(trusting.rt.settings.sandbox.root))
        reply = trusting.call(WMPROXY, operation, caller, jdl=ECHO_JDL, delegationId="as-atlas")
        detail = fault(reply, "AuthorizationFault", operation, "")
        assert detail.findtext("Description") == (
            f"Client proxy FQAN ({PRODUCTION}) does not match delegated proxy FQAN ({ATLAS})")
        assert (store_footprint(trusting.rt), tree_footprint(Path(trusting.rt.settings.sandbox.root))) == before

    @pytest.mark.parametrize(("client", "delegated", "accepted"), [
        ((ATLAS,), "atlas", True),
        (("/atlas",), "atlas", True),  # /Role=NULL/Capability=NULL are the defaults
        (("/atlas/Role=NULL",), "atlas", True),
        (("/atlas/uk/Role=NULL/Capability=NULL",), "atlas", False),  # another group
        ((), "atlas", False),  # the client presents no FQAN the delegation has
        ((ATLAS,), "uk", False),
    ])
    def test_group_and_role_are_compared(self, trusting: SoapApp, pki: Pki, voms: dict[str, Path],
                                         client: tuple[str, ...], delegated: str, accepted: bool) -> None:
        tried("credentials")
        delegate_voms(trusting, pki, voms[delegated], f"deleg-{delegated}")
        reply = register(trusting, Principal(pki.users["alice"].dn, fqans=client), f"deleg-{delegated}")
        if accepted:
            assert reply.status.startswith("200"), reply.body
        else:
            fault(reply, "AuthorizationFault", "jobRegister", "does not match delegated proxy FQAN")

    def test_a_delegation_without_voms_attributes_is_not_compared(self, trusting: SoapApp, pki: Pki) -> None:
        caller = Principal(pki.users["alice"].dn, fqans=(PRODUCTION,))
        delegate_in_process(trusting.rt, caller, pki.users["alice"].proxy, "plain")
        assert register(trusting, caller, "plain").status.startswith("200")

    def test_job_start_compares_with_the_jobs_delegation(self, trusting: SoapApp, pki: Pki,
                                                         voms: dict[str, Path]) -> None:
        delegate_voms(trusting, pki, voms["atlas"], "start-atlas")
        owner = Principal(pki.users["alice"].dn, fqans=(ATLAS,))
        job_id, _ = registered_job(trusting, owner, "start-atlas")
        reply = trusting.call(WMPROXY, "jobStart", Principal(owner.dn, fqans=(PRODUCTION,)), jobId=job_id)
        fault(reply, "AuthorizationFault", "jobStart", f"Client proxy FQAN ({PRODUCTION}) does not match")
        assert trusting.call(WMPROXY, "jobStart", owner, jobId=job_id).status.startswith("200")


# --- the sandbox edge ---------------------------------------------------------------------------


def limited_files_app(root: Path, pki: Pki, template_db: Path, files: int) -> SoapApp:
    rt = build_runtime(root, pki, template_db)
    rt.settings = dataclasses.replace(rt.settings, limits=LimitsSettings(max_input_sandbox_files=files,
                                                                         max_output_sandbox_files=files))
    return SoapApp(WMProxyApplication(rt, authenticate=caller_from_environ), rt)


@pytest.fixture
def counted(tmp_path: Path, pki: Pki, template_db: Path) -> Iterator[SoapApp]:
    """An app that allows 2 input and 2 output sandbox files per job."""
    app = limited_files_app(tmp_path / "counted", pki, template_db, 2)
    yield app
    close_runtime(app.rt)


@pytest.fixture
def area(soap: SoapApp, pki: Pki, alice: Principal) -> tuple[str, str]:
    delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "area")
    return registered_job(soap, alice, "area")


def wsgi(path: str) -> str:
    """``path`` as a WSGI ``PATH_INFO`` string (UTF-8 bytes as latin-1), as a server passes it."""
    return path.encode("utf-8").decode("latin-1")


class TestSandboxEdge:
    @pytest.mark.parametrize("name", ["new\nline", "carriage\rreturn", "escape\x1b[31m", "bell\x07", "del\x7f",
                                      "tab\tname", "\u00e9" * 128, "x" * 256])
    def test_names_refused_with_400(self, soap: SoapApp, alice: Principal, area: tuple[str, str],
                                    name: str) -> None:
        tried("sandbox")
        _, path = area
        input_dir = Path(soap.rt.settings.sandbox.root) / path
        for method in ("PUT", "GET"):
            reply = soap.request(b"x", alice, method=method, path=wsgi(f"/{path}/{name}"))
            assert reply.status.startswith("400"), (method, reply)
            assert reply.body.count(b"\n") == 1 and b"Traceback" not in reply.body
        assert not input_dir.exists()  # nothing written, not even input/ (made by the first upload)

    def test_a_255_byte_name_is_stored(self, soap: SoapApp, alice: Principal, area: tuple[str, str]) -> None:
        _, path = area
        for name in ("y" * 255, "\u00e9" * 127 + "z"):
            reply = soap.request(b"data", alice, method="PUT", path=wsgi(f"/{path}/{name}"))
            assert reply.status.startswith("201"), reply
            assert wrapped(soap).request(b"", alice, method="GET", path=wsgi(f"/{path}/{name}")).body == b"data"
        assert sorted(p.name for p in (Path(soap.rt.settings.sandbox.root) / path).iterdir()) == sorted(
            ["y" * 255, "\u00e9" * 127 + "z"])

    def test_move_to_a_bad_name(self, soap: SoapApp, alice: Principal, area: tuple[str, str]) -> None:
        _, path = area
        soap.request(b"data", alice, method="PUT", path=f"/{path}/a.txt")
        for destination in (f"/{path}/b\nc", f"/{path}/b%0Ac", f"/{path}/b%1Bc", f"/{path}/" + "m" * 256):
            reply = wrapped(soap, HTTP_DESTINATION=destination).request(b"", alice, method="MOVE",
                                                                        path=f"/{path}/a.txt")
            assert reply.status.startswith("400"), (destination, reply)
        assert [p.name for p in (Path(soap.rt.settings.sandbox.root) / path).iterdir()] == ["a.txt"]

    def test_put_after_job_start_is_409(self, soap: SoapApp, alice: Principal, area: tuple[str, str]) -> None:
        tried("sandbox")
        job_id, path = area
        assert soap.call(WMPROXY, "jobStart", alice, jobId=job_id).status.startswith("200")
        for method in ("PUT", "DELETE"):
            reply = soap.request(b"late", alice, method=method, path=f"/{path}/late.txt")
            assert reply.status.startswith("409"), reply
            assert b"cannot change after the job has been started" in reply.body

    def test_upload_count_limit(self, counted: SoapApp, pki: Pki, alice: Principal) -> None:
        tried("sandbox")
        delegate_in_process(counted.rt, alice, pki.users["alice"].proxy, "counted")
        _, path = registered_job(counted, alice, "counted")
        for name in ("one", "two"):
            assert counted.request(b"x", alice, method="PUT", path=f"/{path}/{name}").status.startswith("201")
        assert counted.request(b"y", alice, method="PUT", path=f"/{path}/one").status.startswith("204")  # replace
        reply = counted.request(b"x", alice, method="PUT", path=f"/{path}/three")
        assert reply.status.startswith("403"), reply
        assert reply.body.startswith(b"The maximum number of input sandbox files is reached")
        assert sorted(p.name for p in (Path(counted.rt.settings.sandbox.root) / path).iterdir()) == ["one", "two"]

    def test_directories_count_against_the_upload_limit(self, counted: SoapApp, pki: Pki, alice: Principal) -> None:
        """Else directory PUTs could fill the file system's inodes whatever the limit."""
        tried("sandbox")
        delegate_in_process(counted.rt, alice, pki.users["alice"].proxy, "counted")
        _, path = registered_job(counted, alice, "counted")
        assert counted.request(b"", alice, method="PUT", path=f"/{path}/d/").status.startswith("201")
        assert counted.request(b"x", alice, method="PUT", path=f"/{path}/d/one").status.startswith("201")
        for refused in (f"/{path}/e/", f"/{path}/d/e/", f"/{path}/two"):
            reply = counted.request(b"x", alice, method="PUT", path=refused)
            assert reply.status.startswith("403"), (refused, reply)
            assert reply.body.startswith(b"The maximum number of input sandbox files is reached")
        assert [p.name for p in (Path(counted.rt.settings.sandbox.root) / path).iterdir()] == ["d"]

    @pytest.mark.parametrize(("attribute", "area_name"), [("InputSandbox", "input"), ("OutputSandbox", "output")])
    def test_registration_count_limit(self, counted: SoapApp, pki: Pki, alice: Principal, attribute: str,
                                      area_name: str) -> None:
        tried("sandbox")
        delegate_in_process(counted.rt, alice, pki.users["alice"].proxy, "counted")
        before = store_footprint(counted.rt), tree_footprint(Path(counted.rt.settings.sandbox.root))
        jdl = f'[ Executable = "/bin/true"; {attribute} = {{"a", "b", "c"}}; ]'
        reply = register(counted, alice, "counted", jdl)
        fault(reply, "InvalidArgumentFault", "jobRegister",
              f"The maximum number of {area_name} sandbox files is reached: 3 files, at most 2 allowed")
        assert (store_footprint(counted.rt), tree_footprint(Path(counted.rt.settings.sandbox.root))) == before
        assert register(counted, alice, "counted", f'[ Executable = "/bin/true"; {attribute} = {{"a", "b"}}; ]'
                        ).status.startswith("200")

    @pytest.mark.parametrize("entry", ['"in\\nput"', '"x\\033y"', '"del\\177"', '"' + "n" * 256 + '"'])
    def test_registration_name_checks(self, soap: SoapApp, pki: Pki, alice: Principal, entry: str) -> None:
        tried("sandbox")
        delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "names")
        for attribute in ("InputSandbox", "OutputSandbox"):
            reply = register(soap, alice, "names", f"[ Executable = \"/bin/true\"; {attribute} = {{{entry}}}; ]")
            fault(reply, "InvalidArgumentFault", "jobRegister", f"Invalid {attribute} file name")


# --- the JDL end marker -------------------------------------------------------------------------


class TestJdlEndMarker:
    @pytest.mark.parametrize("jdl", [
        '[ Executable = "/bin/true" ]; __wmproxy_end = "5c6b1b9e-jdl-end" ] trailing',
        'Executable = "/bin/true"; __wmproxy_end = "5c6b1b9e-jdl-end" ] [ junk = 1',
        '[ Executable = "/bin/true" ] trailing text',
        '[ Executable = "/bin/true"; __wmproxy_jdl = 1 ]',
    ])
    def test_forged_marker_and_trailing_text(self, soap: SoapApp, pki: Pki, alice: Principal, jdl: str) -> None:
        delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "marker")
        before = store_footprint(soap.rt), tree_footprint(Path(soap.rt.settings.sandbox.root))
        detail = fault(register(soap, alice, "marker", jdl), "InvalidArgumentFault", "jobRegister",
                       "Unable to parse JDL")
        assert detail.findtext("ErrorCode") == "1219"
        assert (store_footprint(soap.rt), tree_footprint(Path(soap.rt.settings.sandbox.root))) == before
