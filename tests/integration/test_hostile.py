"""Issue 10 over real TLS (gunicorn, worker, SQLite and PostgreSQL): credentials mean what they
say and hostile input gets a typed answer.

The deployment allows 3 input and 3 output sandbox files per job (``[limits]`` through
``WMPROXY_LIMITS_*``); everything else is the default: 10 proxy levels, 16 MiB requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import zeep
from lxml import etree

from tests.conftest import Pki
from tests.fuzz.support import deployment_footprint, tried, typed_fault
from tests.integration.isolated import standard_deployment
from tests.integration.refclient import D2, SOAP, WMP, ReferenceClient, fault_detail, reference_client, session_for
from tests.integration.service import Deployment
from tests.support import ECHO_JDL, INDEPENDENT, PRIVATE_POLICY, assert_fault, delegate, policy_proxy
from tests.voms_support import (
    fake_ca_voms_server,
    fake_voms_proxy,
    fake_voms_server,
    other_vo_uri,
    other_vo_voms_server,
    untrusted_voms_server,
    write_lsc,
)
from wmproxy.security.proxy import Credential, credential_pem, make_proxy, sign_proxy_request
from wmproxy.soap.contract import operations_by_namespace

pytestmark = pytest.mark.integration

DECLARED = operations_by_namespace()[WMP]
FILES = 3
PRODUCTION = "/atlas/Role=production/Capability=NULL"
ATLAS = "/atlas/Role=NULL/Capability=NULL"


@pytest.fixture(scope="module")
def deployment(pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    limits = {"WMPROXY_LIMITS_MAX_INPUT_SANDBOX_FILES": str(FILES),
              "WMPROXY_LIMITS_MAX_OUTPUT_SANDBOX_FILES": str(FILES)}
    with standard_deployment(pki, database_url, tmp_path_factory.mktemp("state"), extra_env=limits) as dep:
        yield dep


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-proxies")


def proxy_file(files: Path, name: str, cred: Credential) -> Path:
    path = files / name
    path.write_bytes(credential_pem(cred))
    path.chmod(0o600)
    return path


def proxy_levels(pki: Pki, user: str, levels: int, *, limited_at: int | None = None) -> Credential:
    cred = pki.users[user].credential
    for level in range(1, levels + 1):
        cred = make_proxy(cred, lifetime=6 * 3600, limited=level == limited_at)
    return cred


@pytest.fixture(scope="module")
def alice(deployment: Deployment, pki: Pki) -> ReferenceClient:
    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegate(ref, pki.users["alice"].proxy, "hostile")
    return ref


def refused(err: pytest.ExceptionInfo[zeep.exceptions.Fault], kind: str, method: str, text: str) -> etree._Element:
    tried("tls")
    return assert_fault(err, kind, method, text=text)


def delegation_refused(err: pytest.ExceptionInfo[zeep.exceptions.Fault], text: str) -> None:
    tried("tls")
    detail = fault_detail(err.value)
    assert etree.QName(detail) == etree.QName(D2, "DelegationException")
    assert text in (detail.findtext("msg") or "")


def post(deployment: Deployment, proxy: Path, ca_dir: Path, body: bytes) -> requests.Response:
    return session_for(proxy, ca_dir).post(deployment.endpoint, data=body,
                                           headers={"Content-Type": "text/xml; charset=utf-8"})


def envelope(inner: str, operation: str = "getJDL", attributes: str = "", prolog: str = "") -> str:
    return (f'{prolog}<e:Envelope xmlns:e="{SOAP}"><e:Body><w:{operation} xmlns:w="{WMP}"{attributes}>{inner}'
            f"</w:{operation}></e:Body></e:Envelope>")


# --- limited proxies ----------------------------------------------------------------------------


class TestLimitedProxy:
    @pytest.fixture(scope="class")
    @classmethod
    def limited(cls, deployment: Deployment, pki: Pki, files: Path) -> ReferenceClient:
        path = proxy_file(files, "limited.pem", proxy_levels(pki, "alice", 2, limited_at=1))
        return reference_client(deployment.endpoint, path, pki.ca_dir)

    def test_writes_are_refused_and_reads_allowed(self, alice: ReferenceClient, limited: ReferenceClient,
                                                  deployment: Deployment) -> None:
        job = alice.wmproxy.jobRegister(ECHO_JDL, "hostile")
        uri = alice.wmproxy.getSandboxDestURI(job.id, "https")[0]
        assert alice.session.put(f"{uri}/mine.txt", data=b"mine").status_code == 201
        before = deployment_footprint(deployment.config)
        calls = {
            "jobRegister": lambda: limited.wmproxy.jobRegister(ECHO_JDL, "hostile"),
            "jobSubmit": lambda: limited.wmproxy.jobSubmit(ECHO_JDL, "hostile"),
            "jobStart": lambda: limited.wmproxy.jobStart(job.id),
            "jobCancel": lambda: limited.wmproxy.jobCancel(job.id),
            "jobPurge": lambda: limited.wmproxy.jobPurge(job.id),
            "getProxyReq": lambda: limited.wmproxy.getProxyReq("from-limited"),
            "addACLItems": lambda: limited.wmproxy.addACLItems(job.id, {"Item": ["/atlas"]}),
            "enableFilePerusal": lambda: limited.wmproxy.enableFilePerusal(job.id, {"Item": ["std.out"]}),
        }
        for operation, call in calls.items():
            with pytest.raises(zeep.exceptions.Fault) as err:
                call()
            refused(err, "AuthorizationFault", operation, "a limited proxy cannot")
        for call in (lambda: limited.deleg2.getProxyReq("x"), lambda: limited.deleg2.destroy("hostile")):
            with pytest.raises(zeep.exceptions.Fault) as err:
                call()
            delegation_refused(err, "a limited proxy cannot")
        for method in ("PUT", "DELETE"):
            reply = limited.session.request(method, f"{uri}/mine.txt", data=b"x")
            assert reply.status_code == 403 and "a limited proxy cannot" in reply.text, reply.text
        assert deployment_footprint(deployment.config) == before
        assert limited.wmproxy.getJobStatus(job.id).status == "Submitted"
        assert "hello grid" in limited.wmproxy.getJDL(job.id, "ORIGINAL")
        assert limited.session.get(f"{uri}/mine.txt").content == b"mine"
        assert limited.wmproxy.getDelegatedProxyInfo("hostile").Identity == alice.wmproxy.getDelegatedProxyInfo(
            "hostile").Identity

    def test_a_delegation_signed_by_a_limited_proxy(self, alice: ReferenceClient, pki: Pki,
                                                    deployment: Deployment) -> None:
        csr = alice.deleg2.getProxyReq("signed-by-limited")
        before = deployment_footprint(deployment.config)
        signed = sign_proxy_request(csr.encode(), proxy_levels(pki, "alice", 1, limited_at=1), lifetime=3600)
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.deleg2.putProxy("signed-by-limited", signed.decode())
        delegation_refused(err, "a limited proxy cannot be delegated")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobRegister(ECHO_JDL, "signed-by-limited")
        refused(err, "AuthorizationFault", "jobRegister", "Unable to get delegated Proxy")
        assert deployment_footprint(deployment.config) == before


# --- restricted proxies (RFC 3820 independent, or a policy language not understood) -------------


class TestRestrictedProxy:
    """A proxy Alice hands on with a restricted policy (independent, or a private language saying
    "read only") does not act with her rights: the TLS edge refuses it, whatever the operation, and
    putProxy refuses a chain holding one. Limited proxies keep their rules (:class:`TestLimitedProxy`)."""

    @pytest.mark.parametrize(("language", "policy", "text"), [
        (INDEPENDENT, None, f"an independent proxy (RFC 3820 policy language id-ppl-independent, {INDEPENDENT})"),
        (*PRIVATE_POLICY, f"policy language {PRIVATE_POLICY[0]}, which this service does not understand"),
    ])
    def test_refused_at_the_tls_edge(self, alice: ReferenceClient, deployment: Deployment, pki: Pki, files: Path,
                                     language: str, policy: bytes | None, text: str) -> None:
        job = alice.wmproxy.jobRegister(ECHO_JDL, "hostile")
        uri = alice.wmproxy.getSandboxDestURI(job.id, "https")[0]
        assert alice.session.put(f"{uri}/mine.txt", data=b"mine").status_code == 201
        path = proxy_file(files, f"restricted-{language}.pem", policy_proxy(pki.users["alice"].credential, language,
                                                                            policy, lifetime=6 * 3600))
        restricted = reference_client(deployment.endpoint, path, pki.ca_dir)
        before = deployment_footprint(deployment.config)
        calls = {
            "getVersion": restricted.wmproxy.getVersion,
            "getJobStatus": lambda: restricted.wmproxy.getJobStatus(job.id),
            "jobCancel": lambda: restricted.wmproxy.jobCancel(job.id),
            "jobSubmit": lambda: restricted.wmproxy.jobSubmit(ECHO_JDL, "hostile"),
        }
        for operation, call in calls.items():
            with pytest.raises(zeep.exceptions.Fault) as err:
                call()
            refused(err, "AuthenticationFault", operation, text)
            assert fault_detail(err.value).findtext("ErrorCode") == "1206"
        with pytest.raises(zeep.exceptions.Fault) as err:
            restricted.deleg2.destroy("hostile")
        delegation_refused(err, text)
        for method in ("GET", "DELETE"):
            reply = restricted.session.request(method, f"{uri}/mine.txt")
            assert reply.status_code == 403 and language in reply.text, reply.text
        assert deployment_footprint(deployment.config) == before
        assert alice.wmproxy.getJobStatus(job.id).status == "Submitted"
        assert alice.session.get(f"{uri}/mine.txt").content == b"mine"

    def test_a_delegation_signed_by_an_independent_proxy(self, alice: ReferenceClient, pki: Pki,
                                                         deployment: Deployment) -> None:
        csr = alice.deleg2.getProxyReq("signed-by-independent")
        before = deployment_footprint(deployment.config)
        signed = sign_proxy_request(csr.encode(), policy_proxy(pki.users["alice"].credential, INDEPENDENT),
                                    lifetime=3600)
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.deleg2.putProxy("signed-by-independent", signed.decode())
        delegation_refused(err, f"an independent proxy (RFC 3820 policy language id-ppl-independent, {INDEPENDENT})")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobRegister(ECHO_JDL, "signed-by-independent")
        refused(err, "AuthorizationFault", "jobRegister", "Unable to get delegated Proxy")
        assert deployment_footprint(deployment.config) == before


# --- proxy chain depth --------------------------------------------------------------------------


class TestChainDepth:
    @pytest.mark.parametrize(("levels", "accepted"), [(10, True), (11, False), (12, False)])
    def test_client_chains(self, deployment: Deployment, pki: Pki, files: Path, levels: int,
                           accepted: bool) -> None:
        tried("tls")
        client = reference_client(deployment.endpoint, proxy_file(files, f"depth-{levels}.pem",
                                                                  proxy_levels(pki, "alice", levels)), pki.ca_dir)
        if accepted:
            assert client.wmproxy.getVersion() == "3.5.0"
            return
        with pytest.raises(zeep.exceptions.Fault) as err:
            client.wmproxy.getVersion()
        assert_fault(err, "AuthenticationFault", "getVersion", "1206",
                     f"The client proxy chain is too long: {levels} proxy levels, at most 10 allowed")
        with pytest.raises(zeep.exceptions.Fault) as err:
            client.wmproxy.jobRegister(ECHO_JDL, "hostile")
        assert_fault(err, "AuthenticationFault", "jobRegister", "1206", "too long")

    def test_delegated_chain(self, alice: ReferenceClient, pki: Pki) -> None:
        tried("tls")
        # the ten levels made before the request: their keys took longer than the service's
        # keep-alive on a slow machine, which closed the connection the putProxy then used
        levels = proxy_levels(pki, "alice", 10)
        csr = alice.deleg2.getProxyReq("too-deep")
        signed = sign_proxy_request(csr.encode(), levels, lifetime=3600)
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.deleg2.putProxy("too-deep", signed.decode())
        delegation_refused(err, "too long: 11 proxy levels, at most 10 allowed")


# --- VOMS: forged ACs, the FQAN of bug 54728 ----------------------------------------------------


@pytest.fixture(scope="module")
def voms(deployment: Deployment, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """VOMS proxies; the deployment's vomsdir trusts ``voms.localhost`` of the test CA."""
    root = tmp_path_factory.mktemp("hostile-voms")
    server = fake_voms_server(pki, root / "trusted")
    write_lsc(deployment.state / "vomsdir", server.dn, pki.ca.dn)
    untrusted = untrusted_voms_server(pki, root / "impostor")
    fake_ca = fake_ca_voms_server(pki, root / "fake")
    # the site trusts VO cms's server too, for cms: its ACs carrying atlas FQANs are not believed
    cms = other_vo_voms_server(pki, root / "cms", deployment.state / "vomsdir")
    return {
        "alice-cms-says-atlas": fake_voms_proxy(pki, cms, root / "alice-cms-says-atlas.pem", fqans=(PRODUCTION,),
                                                vo="cms", uri=other_vo_uri()),
        "bob-cms-says-atlas": fake_voms_proxy(pki, cms, root / "bob-cms-says-atlas.pem", user="bob", fqans=(ATLAS,),
                                              vo="cms", uri=other_vo_uri()),
        "bob-cms": fake_voms_proxy(pki, cms, root / "bob-cms.pem", user="bob",
                                   fqans=("/cms/Role=NULL/Capability=NULL",), vo="cms", uri=other_vo_uri()),
        "alice-atlas": fake_voms_proxy(pki, server, root / "alice-atlas.pem", fqans=(ATLAS, PRODUCTION)),
        "alice-production": fake_voms_proxy(pki, server, root / "alice-production.pem", fqans=(PRODUCTION, ATLAS)),
        "bob-atlas": fake_voms_proxy(pki, server, root / "bob-atlas.pem", user="bob", fqans=(ATLAS,)),
        "bob-untrusted": fake_voms_proxy(pki, untrusted, root / "bob-untrusted.pem", user="bob", fqans=(ATLAS,)),
        "bob-fake-ca": fake_voms_proxy(pki, fake_ca, root / "bob-fake-ca.pem", user="bob", fqans=(ATLAS,)),
        "alice-untrusted": fake_voms_proxy(pki, untrusted, root / "alice-untrusted.pem", fqans=(PRODUCTION,)),
        "alice-fake-ca": fake_voms_proxy(pki, fake_ca, root / "alice-fake-ca.pem", fqans=(PRODUCTION,)),
    }


class TestForgedVomsAttributes:
    @pytest.mark.parametrize("forgery", ["alice-untrusted", "alice-fake-ca", "alice-cms-says-atlas"])
    def test_not_reported_nor_registered(self, deployment: Deployment, pki: Pki, voms: dict[str, Path],
                                         forgery: str) -> None:
        tried("tls")
        client = reference_client(deployment.endpoint, voms[forgery], pki.ca_dir)
        delegate(client, voms[forgery], forgery)
        (vo,) = client.wmproxy.getDelegatedProxyInfo(forgery).VOsInfo
        assert len(vo.Attribute) == 1 and vo.Attribute[0].startswith("not verified: "), vo.Attribute
        job = client.wmproxy.jobRegister(ECHO_JDL, forgery)
        registered = client.wmproxy.getJDL(job.id, "REGISTERED")
        assert "VOMS_FQAN" not in registered and PRODUCTION not in registered
        (vo,) = client.wmproxy.getJobProxyInfo(job.id).VOsInfo
        assert vo.Attribute[0].startswith("not verified: ")

    @pytest.mark.parametrize(("bob_proxy", "item", "granted"), [
        ("bob-atlas", "/atlas", True), ("bob-untrusted", "/atlas", False), ("bob-fake-ca", "/atlas", False),
        # VO cms's server is trusted for cms only
        ("bob-cms", "/cms", True), ("bob-cms-says-atlas", "/atlas", False)])
    def test_acl_items_trust_the_same_verification(self, alice: ReferenceClient, deployment: Deployment,
                                                   pki: Pki, voms: dict[str, Path], bob_proxy: str, item: str,
                                                   granted: bool) -> None:
        tried("tls")
        job = alice.wmproxy.jobRegister(ECHO_JDL, "hostile")
        alice.wmproxy.addACLItems(job.id, {"Item": [item]})
        bob = reference_client(deployment.endpoint, voms[bob_proxy], pki.ca_dir)
        if granted:
            assert bob.wmproxy.getJobStatus(job.id).status == "Submitted"
            return
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.wmproxy.getJobStatus(job.id)
        assert_fault(err, "AuthorizationFault", "getJobStatus", "1207", "user not authorized")


class TestFqanMismatch:
    def test_submitting_under_another_role(self, deployment: Deployment, pki: Pki, voms: dict[str, Path]) -> None:
        """WTS bug 54728: delegate as /atlas/Role=NULL, submit as /atlas/Role=production."""
        as_atlas = reference_client(deployment.endpoint, voms["alice-atlas"], pki.ca_dir)
        delegate(as_atlas, voms["alice-atlas"], "as-atlas")
        as_production = reference_client(deployment.endpoint, voms["alice-production"], pki.ca_dir)
        before = deployment_footprint(deployment.config)
        for operation in ("jobSubmit", "jobRegister"):
            with pytest.raises(zeep.exceptions.Fault) as err:
                getattr(as_production.wmproxy, operation)(ECHO_JDL, "as-atlas")
            detail = refused(err, "AuthorizationFault", operation, "")
            assert detail.findtext("Description") == (
                f"Client proxy FQAN ({PRODUCTION}) does not match delegated proxy FQAN ({ATLAS})")
        assert deployment_footprint(deployment.config) == before
        job = as_atlas.wmproxy.jobRegister(ECHO_JDL, "as-atlas")
        assert f'VOMS_FQAN = "{ATLAS}"' in as_atlas.wmproxy.getJDL(job.id, "REGISTERED")


# --- the XML edge -------------------------------------------------------------------------------


GET_JDL = "<jobId>caf\u00e9</jobId><type>ORIGINAL</type>"


class TestXmlEdge:
    @pytest.mark.parametrize(("name", "body", "method", "text"), [
        ("pi", envelope("<?x y?>" + GET_JDL).encode(), "getJDL", "processing instructions"),
        ("doctype", envelope(GET_JDL, prolog="<!DOCTYPE e>").encode(), "", "DTD"),
        ("attributes", envelope(GET_JDL, attributes="".join(f' a{i}="x"' for i in range(100_000))).encode(),
         "getJDL", "more than 64 attributes"),
        ("not-an-int", envelope("<jobNumber>abc</jobNumber><requirements>true</requirements><rank>0</rank>",
                                "getCollectionTemplate").encode(), "getCollectionTemplate", "Invalid Argument"),
        ("1e99", envelope("<jobNumber>1e99</jobNumber><requirements>true</requirements><rank>0</rank>",
                          "getCollectionTemplate").encode(), "getCollectionTemplate", "Invalid Argument"),
        ("huge-int", envelope("<jobNumber>99999999999999999999</jobNumber><requirements>true</requirements>"
                              "<rank>0</rank>", "getCollectionTemplate").encode(), "getCollectionTemplate",
         "at most 10000"),
        ("iso-8859-1", ('<?xml version="1.0" encoding="ISO-8859-1"?>' + envelope(GET_JDL)).encode("latin-1"),
         "getJDL", "Provided Job Id not valid: caf\u00e9"),
        ("utf-16", ('<?xml version="1.0" encoding="UTF-16"?>' + envelope(GET_JDL)).encode("utf-16"),
         "getJDL", "Provided Job Id not valid: caf\u00e9"),
    ])
    def test_typed_fault(self, deployment: Deployment, pki: Pki, name: str, body: bytes, method: str,
                         text: str) -> None:
        tried("tls")
        reply = post(deployment, pki.users["alice"].proxy, pki.ca_dir, body)
        assert reply.headers["Content-Type"].startswith("text/xml"), reply.text[:200]
        detail = typed_fault(reply.status_code, reply.content, DECLARED)
        assert detail.findtext("methodName") == method
        assert text in (detail.findtext("Description") or ""), detail.findtext("Description")

    def test_a_3_mb_jdl_is_registered(self, alice: ReferenceClient) -> None:
        jdl = '[ Executable = "/bin/echo"; Arguments = "' + "x" * (3 * 1024 * 1024) + '"; ]'
        job = alice.wmproxy.jobRegister(jdl, "hostile")
        assert len(alice.wmproxy.getJDL(job.id, "ORIGINAL")) > 3 * 1024 * 1024
        alice.wmproxy.jobCancel(job.id)


# --- the sandbox edge ---------------------------------------------------------------------------


class TestSandboxEdge:
    @pytest.fixture
    def job(self, alice: ReferenceClient) -> tuple[str, str]:
        job = alice.wmproxy.jobRegister(ECHO_JDL, "hostile")
        return job.id, alice.wmproxy.getSandboxDestURI(job.id, "https")[0]

    def test_names(self, alice: ReferenceClient, job: tuple[str, str], deployment: Deployment) -> None:
        _, uri = job
        before = deployment_footprint(deployment.config)
        for name in ("new\nline", "cr\rx", "esc\x1b[31m", "del\x7f", "x" * 256, "\u00e9" * 128, ".x.wmproxy-part"):
            tried("tls")
            reply = alice.session.put(f"{uri}/{quote(name)}", data=b"x")
            assert reply.status_code == 400, (name, reply.text)
            assert reply.text.count("\n") == 1 and "Traceback" not in reply.text
        assert deployment_footprint(deployment.config) == before
        assert alice.session.put(f"{uri}/{quote('y' * 255)}", data=b"x").status_code == 201

    def test_put_after_job_start(self, alice: ReferenceClient, job: tuple[str, str]) -> None:
        tried("tls")
        job_id, uri = job
        alice.wmproxy.jobStart(job_id)
        reply = alice.session.put(f"{uri}/late.txt", data=b"x")
        assert reply.status_code == 409, reply.text
        assert "cannot change after the job has been started" in reply.text

    def test_upload_count(self, alice: ReferenceClient, job: tuple[str, str]) -> None:
        tried("tls")
        _, uri = job
        for index in range(FILES):
            assert alice.session.put(f"{uri}/f{index}", data=b"x").status_code == 201
        reply = alice.session.put(f"{uri}/one-too-many", data=b"x")
        assert reply.status_code == 403
        assert reply.text.startswith("The maximum number of input sandbox files is reached")

    @pytest.mark.parametrize(("attribute", "area"), [("InputSandbox", "input"), ("OutputSandbox", "output")])
    def test_registration_count(self, alice: ReferenceClient, deployment: Deployment, attribute: str,
                                area: str) -> None:
        tried("tls")
        before = deployment_footprint(deployment.config)
        listed = ", ".join(f'"f{index}"' for index in range(FILES + 1))
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobRegister(f'[ Executable = "/bin/true"; {attribute} = {{{listed}}}; ]', "hostile")
        assert_fault(err, "InvalidArgumentFault", "jobRegister", "1225",
                     f"The maximum number of {area} sandbox files is reached: 4 files, at most 3 allowed")
        assert deployment_footprint(deployment.config) == before


# --- the JDL end marker -------------------------------------------------------------------------


def test_a_forged_jdl_end_marker_is_refused(alice: ReferenceClient, deployment: Deployment) -> None:
    tried("tls")
    before = deployment_footprint(deployment.config)
    with pytest.raises(zeep.exceptions.Fault) as err:
        alice.wmproxy.jobRegister('[ Executable = "/bin/true" ]; __wmproxy_end = "5c6b1b9e-jdl-end" ] trailing',
                                  "hostile")
    assert_fault(err, "InvalidArgumentFault", "jobRegister", "1219", "Unable to parse JDL")
    assert deployment_footprint(deployment.config) == before


# --- quoted attribute names ---------------------------------------------------------------------


@pytest.mark.parametrize(("jdl", "name"), [
    pytest.param("""[ Executable = "/bin/true"; 'x=0; VirtualOrganisation="atlas"; y' = 1 ]""",
                 """'x=0; VirtualOrganisation=\\"atlas\\"; y'""", id="smuggled-vo"),
    pytest.param("""[ Executable = "/bin/true"; 'my attr' = 1 ]""", "'my attr'", id="unreadable-stored-text"),
])
def test_a_quoted_attribute_name_is_refused(alice: ReferenceClient, deployment: Deployment, jdl: str,
                                            name: str) -> None:
    """Written back unquoted into the stored JDL, the name smuggled attributes to the worker, or
    made the text one it could not read."""
    tried("tls")
    before = deployment_footprint(deployment.config)
    with pytest.raises(zeep.exceptions.Fault) as err:
        alice.wmproxy.jobRegister(jdl, "hostile")
    assert_fault(err, "InvalidArgumentFault", "jobRegister", "1219",
                 f"Unable to parse JDL: attribute name {name} is not a plain name")
    assert deployment_footprint(deployment.config) == before
