"""The operations beyond the skeleton, through the real TLS deployment (SQLite and PostgreSQL),
called with a client built from the REFERENCE WSDL, each with its success path and typed-fault
paths, asserting on the reply XML: wrapper element and namespace, unqualified children, fault
detail element, ErrorCode and methodName.

Covered: getTotalQuota, getFreeQuota (§4.4); the five template operations (§9); getACLItems,
addACLItems, removeACLItem (§6.4, with DN and FQAN items really granting read access);
getDelegatedProxyInfo, getJobProxyInfo (§5.5, VOsInfo of a voms-proxy-fake proxy);
enableFilePerusal, getPerusalFiles (§8, a running job); jobListMatch (§3.7, the deployment's CE
catalogue); jobRegisterJSDL, jobSubmitJSDL, jobListMatchJSDL (§12); delegation-2
getNewProxyReq/renewProxyReq and the delegation-1 extras (getNewProxyReq, renewProxyReq,
getTerminationTime, destroy) that gridsite's htproxy* tools call (``peers.md`` §6.2).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests
import zeep
from cryptography import x509
from lxml import etree

from tests.conftest import Pki
from tests.integration.refclient import (
    D1,
    D2,
    SOAP,
    WMP,
    ReferenceClient,
    assert_unqualified_children,
    fault_detail,
    reference_client,
)
from tests.integration.service import Deployment
from tests.support import ECHO_JDL as JDL
from tests.support import assert_fault, delegate, wait_for, wait_for_final
from tests.voms_support import (
    FQANS,
    URI,
    VomsServer,
    fake_voms_proxy,
    write_lsc,
)
from wmproxy.config import load_settings
from wmproxy.jdl import parse_jdl
from wmproxy.sandbox.storage import FilesystemSandboxStorage
from wmproxy.security.dn import slash_dn
from wmproxy.security.proxy import load_credential, sign_proxy_request

pytestmark = pytest.mark.integration

JSDL_NS = "http://schemas.ggf.org/jsdl/2005/11/jsdl"
POSIX_NS = "http://schemas.ggf.org/jsdl/2005/11/jsdl-posix"
EPOCH = re.compile(r"[0-9]{9,11}\Z")
#: A null (absent) list part, as gSOAP clients send a NULL pointer.
NULL = zeep.xsd.SkipValue


# --- helpers ---------------------------------------------------------------------------------


def assert_reply(ref: ReferenceClient, operation: str, children: list[str] | None = None,
                 ns: str = WMP) -> etree._Element:
    """The last reply is ``<ns:operationResponse>`` with unqualified descendants (and ``children``)."""
    reply = ref.last_reply
    assert etree.QName(reply) == etree.QName(ns, f"{operation}Response")
    assert_unqualified_children(reply)
    if children is not None:
        assert [c.tag for c in reply] == children
    return reply


def soap_call(session: requests.Session, endpoint: str, ns: str, operation: str,
              **parts: str) -> tuple[int, etree._Element]:
    """POST an rpc/literal request as gSOAP clients (htproxy*) send it: wrapper in ``ns``,
    unqualified parts. Returns the HTTP status and the Body's first child."""
    body = "".join(f"<{name}>{value}</{name}>" for name, value in parts.items())
    envelope = (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP}" xmlns:ns="{ns}"><SOAP-ENV:Body>'
                f"<ns:{operation}>{body}</ns:{operation}></SOAP-ENV:Body></SOAP-ENV:Envelope>").encode()
    reply = session.post(endpoint, data=envelope, headers={"Content-Type": "text/xml; charset=utf-8",
                                                            "SOAPAction": f'"{ns}"'})
    return reply.status_code, etree.fromstring(reply.content).find(f"{{{SOAP}}}Body")[0]


def items(ref: ReferenceClient) -> list[str]:
    return [c.text for c in ref.last_reply.find("items")]


def cert_epoch(proxy_pem: bytes) -> int:
    cert = x509.load_pem_x509_certificate(proxy_pem)
    return int(cert.not_valid_after_utc.timestamp())


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice(deployment: Deployment, pki: Pki) -> ReferenceClient:
    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegate(ref, pki.users["alice"].proxy, "ops")
    return ref


@pytest.fixture(scope="module")
def bob(deployment: Deployment, pki: Pki) -> ReferenceClient:
    return reference_client(deployment.endpoint, pki.users["bob"].proxy, pki.ca_dir)


@pytest.fixture(scope="module")
def voms(deployment: Deployment, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> VomsServer:
    """A fake VOMS server the deployment trusts: its .lsc in the deployment's vomsdir
    (``[security] vomsdir = <state>/vomsdir``, see tests/integration/service.py)."""
    root = tmp_path_factory.mktemp("voms")
    cert, key = pki.ca.issue_host("voms.localhost", root / "voms")
    dn = slash_dn(x509.load_pem_x509_certificate(cert.read_bytes()).subject)
    vomsdir = deployment.state / "vomsdir"
    write_lsc(vomsdir, dn, pki.ca.dn)
    return VomsServer(cert, key, dn, vomsdir)


def voms_proxy_of(pki: Pki, voms: VomsServer, user: str) -> Path:
    out = voms.cert.parent.parent / f"{user}-voms-proxy.pem"
    if not out.exists():
        fake_voms_proxy(pki, voms, out, user=user)
    return out


@pytest.fixture(scope="module")
def alice_voms(deployment: Deployment, pki: Pki, voms: VomsServer) -> tuple[ReferenceClient, Path]:
    proxy = voms_proxy_of(pki, voms, "alice")
    return reference_client(deployment.endpoint, proxy, pki.ca_dir), proxy


@pytest.fixture(scope="module")
def bob_voms(deployment: Deployment, pki: Pki, voms: VomsServer) -> ReferenceClient:
    return reference_client(deployment.endpoint, voms_proxy_of(pki, voms, "bob"), pki.ca_dir)


# --- quota (§4.4) ----------------------------------------------------------------------------


class TestQuota:
    def test_get_total_quota_returns_the_configured_limits(self, alice: ReferenceClient) -> None:
        total = alice.wmproxy.getTotalQuota()
        reply = assert_reply(alice, "getTotalQuota", ["softLimit", "hardLimit"])
        assert (reply.findtext("softLimit"), reply.findtext("hardLimit")) == ("40000000", "50000000")
        assert (total.softLimit, total.hardLimit) == (40_000_000, 50_000_000)

    def test_free_quota_shrinks_by_what_is_uploaded(self, alice: ReferenceClient) -> None:
        job = alice.wmproxy.jobRegister(JDL, "ops")
        uri = alice.wmproxy.getSandboxDestURI(job.id, "https")[0]
        before = alice.wmproxy.getFreeQuota()
        assert_reply(alice, "getFreeQuota", ["softLimit", "hardLimit"])
        assert before.hardLimit - before.softLimit == 10_000_000
        assert 0 < before.softLimit <= 40_000_000
        reply = alice.session.put(f"{uri}/data.bin", data=b"q" * 12345)
        assert reply.status_code in (200, 201, 204)
        after = alice.wmproxy.getFreeQuota()
        assert (before.softLimit - after.softLimit, before.hardLimit - after.hardLimit) == (12345, 12345)
        # purging the job gives the bytes back
        alice.wmproxy.jobCancel(job.id)
        assert alice.wmproxy.getFreeQuota().softLimit == before.softLimit

    def test_quota_is_per_user(self, alice: ReferenceClient, bob: ReferenceClient) -> None:
        free = bob.wmproxy.getFreeQuota()
        assert (free.softLimit, free.hardLimit) == (40_000_000, 50_000_000)

    # Quotas off, (-1, -1), is tested in-process: tests/functional/test_quota_off.py


# --- templates (§9) --------------------------------------------------------------------------


class TestTemplates:
    REQ = 'other.GlueCEStateStatus == "Production"'
    RANK = "other.GlueCEStateFreeCPUs"

    def _jdl(self, ref: ReferenceClient, operation: str) -> dict:
        reply = assert_reply(ref, operation, ["jdl"])
        text = reply.findtext("jdl")
        assert "\n" not in text and text.startswith("[") and text.endswith("]")
        return parse_jdl(text)

    def test_get_job_template(self, alice: ReferenceClient) -> None:
        jdl = alice.wmproxy.getJobTemplate({"jobType": ["NORMAL"]}, "/bin/ls", "-l", self.REQ, self.RANK)
        ad = self._jdl(alice, "getJobTemplate")
        assert ad["Executable"] == "/bin/ls" and ad["Arguments"] == "-l"
        assert str(ad.lookup("Requirements")) == self.REQ
        assert str(ad.lookup("Rank")) == self.RANK
        assert "JobType" not in ad and "VirtualOrganisation" not in ad
        assert jdl.startswith("[ Executable = ")

    def test_get_job_template_with_combined_types(self, alice: ReferenceClient) -> None:
        alice.wmproxy.getJobTemplate({"jobType": ["PARAMETRIC", "MPI"]}, "/bin/ls", "-l", "true", "0")
        ad = self._jdl(alice, "getJobTemplate")
        assert list(ad["JobType"]) == ["parametric", "mpich"]
        assert ad["Arguments"] == "_PARAM_" and ad["StdInput"] == "_PARAM_"
        assert (ad["Parameters"], ad["ParameterStart"], ad["ParameterStep"], ad["CpuNumber"]) == (4, 0, 1, 2)

    def test_get_job_template_faults(self, alice: ReferenceClient) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getJobTemplate(NULL, "/bin/ls", "", "true", "0")
        assert_fault(err, "InvalidArgumentFault", "getJobTemplate", "1225", "Invalid Argument")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getJobTemplate({"jobType": ["PARTITIONABLE"]}, "/bin/ls", "", "true", "0")
        assert_fault(err, "GenericFault", "getJobTemplate", text="Partitionable jobs have been deprecated!")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getJobTemplate({"jobType": ["NORMAL"]}, "/bin/ls", "", 'true; Executable = "x"', "0")
        assert_fault(err, "InvalidArgumentFault", "getJobTemplate", "1225")

    def test_get_dag_template(self, alice: ReferenceClient) -> None:
        graph = {"name": None, "childrenJob": [{"name": "a", "childrenJob": [{"name": "b"}]}, {"name": "c"}]}
        alice.wmproxy.getDAGTemplate(graph, "true", self.RANK)
        ad = self._jdl(alice, "getDAGTemplate")
        assert ad["Type"] == "dag"
        nodes = ad["nodes"]
        for name in ("a", "b", "c"):
            assert nodes[name]["node_type"] == "edg-jdl"
            assert nodes[name]["description"]["Executable"] == "<put executable path>"
        assert "".join(str(nodes.lookup("dependencies")).split()) == "{{a,b}}"

    def test_get_dag_template_faults(self, alice: ReferenceClient) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getDAGTemplate(NULL, "true", "0")
        assert_fault(err, "InvalidArgumentFault", "getDAGTemplate", "1225", "Invalid Argument")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getDAGTemplate({"name": "root"}, "true", "0")
        assert_fault(err, "GenericFault", "getDAGTemplate", text="Empty NodeStruct given")

    def test_get_collection_template(self, alice: ReferenceClient) -> None:
        alice.wmproxy.getCollectionTemplate(3, self.REQ, self.RANK)
        ad = self._jdl(alice, "getCollectionTemplate")
        assert ad["Type"] == "collection"
        nodes = list(ad["Nodes"])
        assert [n["NodeName"] for n in nodes] == ["Node_0", "Node_1", "Node_2"]
        assert all(n["Executable"] == "<put executable path>" for n in nodes)
        assert str(nodes[0].lookup("Requirements")) == self.REQ

    def test_get_collection_template_fault(self, alice: ReferenceClient) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getCollectionTemplate(0, "true", "0")
        assert_fault(err, "InvalidArgumentFault", "getCollectionTemplate", "1225")

    def test_get_int_parametric_job_template(self, alice: ReferenceClient) -> None:
        alice.wmproxy.getIntParametricJobTemplate({"Item": ["Arguments", "StdInput"]}, 20, 100, 10, self.REQ, self.RANK)
        ad = self._jdl(alice, "getIntParametricJobTemplate")
        assert ad["Arguments"] == "_PARAM_" and ad["StdInput"] == "_PARAM_"
        assert ad["JobType"] == "parametric"
        assert (ad["Parameters"], ad["ParameterStart"], ad["ParameterStep"]) == (20, 100, 10)
        assert str(ad.lookup("Rank")) == self.RANK

    def test_get_int_parametric_job_template_faults(self, alice: ReferenceClient) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getIntParametricJobTemplate(NULL, 20, 0, 1, "true", "0")
        assert_fault(err, "InvalidArgumentFault", "getIntParametricJobTemplate", "1225", "Invalid Argument")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getIntParametricJobTemplate({"Item": ["Arguments"]}, 20, 0, 0, "true", "0")
        assert_fault(err, "GenericFault", "getIntParametricJobTemplate",
                     text="ParameterStep must be different from zero")

    def test_get_string_parametric_job_template(self, alice: ReferenceClient) -> None:
        alice.wmproxy.getStringParametricJobTemplate({"Item": ["Arguments"]}, {"Item": ["one", "two", "three"]},
                                                     "true", "0")
        ad = self._jdl(alice, "getStringParametricJobTemplate")
        assert list(ad["Parameters"]) == ["one", "two", "three"]
        assert ad["Arguments"] == "_PARAM_" and ad["JobType"] == "parametric"
        assert "ParameterStart" not in ad

    def test_get_string_parametric_job_template_null_lists(self, alice: ReferenceClient) -> None:
        for attributes, param in ((NULL, {"Item": ["one"]}), ({"Item": ["Arguments"]}, NULL)):
            with pytest.raises(zeep.exceptions.Fault) as err:
                alice.wmproxy.getStringParametricJobTemplate(attributes, param, "true", "0")
            assert_fault(err, "InvalidArgumentFault", "getStringParametricJobTemplate", "1225", "Invalid Argument")


# --- per-job ACLs (§6.4) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def done_job(alice: ReferenceClient) -> str:
    """A job of alice that ran to Done: the ACL tests share it."""
    job = alice.wmproxy.jobSubmit(JDL, "ops")
    assert wait_for_final(alice, job.id) == "Done (Exit Code 0)"
    return job.id


class TestAcl:
    def _bob_reads(self, bob: ReferenceClient, job_id: str, output_uri: str) -> None:
        assert bob.wmproxy.getJobStatus(job_id).status == "Done (Exit Code 0)"
        assert "/bin/echo" in bob.wmproxy.getJDL(job_id, "ORIGINAL")
        files = bob.wmproxy.getOutputFileList(job_id, "")
        assert any(f.name == output_uri for f in files)
        reply = bob.session.get(output_uri)
        assert reply.status_code == 200 and reply.content == b"hello grid\n"

    def _bob_refused(self, bob: ReferenceClient, job_id: str, output_uri: str) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.wmproxy.getJobStatus(job_id)
        assert_fault(err, "AuthorizationFault", "getJobStatus", "1207")
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.wmproxy.getJDL(job_id, "ORIGINAL")
        assert_fault(err, "AuthorizationFault", "getJDL", "1207")
        assert bob.session.get(output_uri).status_code == 403

    def test_owner_is_the_only_item_at_first(self, alice: ReferenceClient, done_job: str, pki: Pki) -> None:
        assert alice.wmproxy.getACLItems(done_job) == [pki.users["alice"].dn]
        reply = assert_reply(alice, "getACLItems", ["items"])
        assert [c.tag for c in reply.find("items")] == ["Item"]

    def test_added_dn_gains_read_access_only_and_loses_it_when_removed(
        self, alice: ReferenceClient, bob: ReferenceClient, done_job: str, pki: Pki
    ) -> None:
        output_uri = next(f.name for f in alice.wmproxy.getOutputFileList(done_job, "") if f.name.endswith("/std.out"))
        self._bob_refused(bob, done_job, output_uri)
        bob_dn = pki.users["bob"].dn

        alice.wmproxy.addACLItems(done_job, {"Item": [bob_dn]})
        assert_reply(alice, "addACLItems", [])
        assert alice.wmproxy.getACLItems(done_job) == [pki.users["alice"].dn, bob_dn]
        self._bob_reads(bob, done_job, output_uri)
        assert bob.wmproxy.getACLItems(done_job) == [pki.users["alice"].dn, bob_dn]
        # read only: no cancel, purge, ACL change or upload
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.wmproxy.jobCancel(done_job)
        assert_fault(err, "AuthorizationFault", "jobCancel", "1207")
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.wmproxy.jobPurge(done_job)
        assert_fault(err, "AuthorizationFault", "jobPurge")
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.wmproxy.addACLItems(done_job, {"Item": ["/C=XX/O=Other/CN=Mallory"]})
        assert_fault(err, "AuthorizationFault", "addACLItems")
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.wmproxy.removeACLItem(done_job, bob_dn)
        assert_fault(err, "AuthorizationFault", "removeACLItem")
        assert bob.session.put(output_uri.replace("/output/", "/input/") + ".x", data=b"x").status_code == 403

        alice.wmproxy.removeACLItem(done_job, bob_dn)
        assert_reply(alice, "removeACLItem", [])
        assert alice.wmproxy.getACLItems(done_job) == [pki.users["alice"].dn]
        self._bob_refused(bob, done_job, output_uri)

    def test_duplicate_item_is_an_authorization_fault_1209(self, alice: ReferenceClient, done_job: str,
                                                           pki: Pki) -> None:
        item = "/C=XX/O=Elsewhere/CN=Someone"
        alice.wmproxy.addACLItems(done_job, {"Item": [item]})
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.addACLItems(done_job, {"Item": [item]})
        assert_fault(err, "AuthorizationFault", "addACLItems", "1209", "the entry already exists")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.addACLItems(done_job, {"Item": [pki.users["alice"].dn]})
        assert_fault(err, "AuthorizationFault", "addACLItems", "1209")
        alice.wmproxy.removeACLItem(done_job, item)

    def test_owner_cannot_be_removed(self, alice: ReferenceClient, done_job: str, pki: Pki) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.removeACLItem(done_job, pki.users["alice"].dn)
        assert_fault(err, "OperationNotAllowedFault", "removeACLItem", "1226",
                     "Removal of the item representing user that has registered the job is not allowed")
        assert alice.wmproxy.getACLItems(done_job) == [pki.users["alice"].dn]

    def test_removing_an_absent_item_is_an_authorization_fault(self, alice: ReferenceClient, done_job: str) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.removeACLItem(done_job, "/C=XX/O=Nobody/CN=Absent")
        assert_fault(err, "AuthorizationFault", "removeACLItem", "1207", "Removal of the gacl item failed")

    def test_acl_operations_on_unknown_and_malformed_jobs(self, alice: ReferenceClient) -> None:
        unknown = "https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA"
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getACLItems(unknown)
        assert_fault(err, "JobUnknownFault", "getACLItems", "1218")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.addACLItems(unknown, {"Item": ["/C=XX/CN=x"]})
        assert_fault(err, "JobUnknownFault", "addACLItems", "1218")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.removeACLItem("not a job id", "/C=XX/CN=x")
        assert_fault(err, "InvalidArgumentFault", "removeACLItem", "1225")

    def test_fqan_item_grants_read_access_to_a_voms_proxy_with_that_fqan(
        self, alice: ReferenceClient, bob: ReferenceClient, bob_voms: ReferenceClient, done_job: str
    ) -> None:
        output_uri = next(f.name for f in alice.wmproxy.getOutputFileList(done_job, "") if f.name.endswith("/std.out"))
        # bob's VOMS proxy (atlas) gets nothing before the item is added
        self._bob_refused(bob_voms, done_job, output_uri)
        alice.wmproxy.addACLItems(done_job, {"Item": ["/atlas"]})
        self._bob_reads(bob_voms, done_job, output_uri)
        self._bob_refused(bob, done_job, output_uri)  # the same DN without the FQAN stays out
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob_voms.wmproxy.jobCancel(done_job)
        assert_fault(err, "AuthorizationFault", "jobCancel")
        alice.wmproxy.removeACLItem(done_job, "/atlas")
        self._bob_refused(bob_voms, done_job, output_uri)

    def test_fqan_item_of_another_vo_grants_nothing(
        self, alice: ReferenceClient, bob_voms: ReferenceClient, done_job: str
    ) -> None:
        alice.wmproxy.addACLItems(done_job, {"Item": ["/cms", "/atlas/Role=lcgadmin/Capability=NULL"]})
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob_voms.wmproxy.getJobStatus(done_job)
        assert_fault(err, "AuthorizationFault", "getJobStatus")
        alice.wmproxy.addACLItems(done_job, {"Item": [FQANS[0]]})  # exactly bob's primary FQAN
        assert bob_voms.wmproxy.getJobStatus(done_job).status.startswith("Done")

    def test_a_reader_never_gets_the_jobs_proxy(self, alice: ReferenceClient, bob: ReferenceClient, pki: Pki) -> None:
        """Red-team M1: ``OutputSandbox = {"*"}`` collected the job's proxy copy ``user.proxy``
        (the owner's credential, private key included) and gave it to every reader the job's ACL
        admits; naming it in the OutputSandbox or perusing it did the same. Now ``*`` leaves it
        out (for the owner too), and naming it is refused."""
        jdl = JDL.replace('OutputSandbox = {"std.out", "std.err"}', 'OutputSandbox = {"*"}')
        assert jdl != JDL
        job = alice.wmproxy.jobSubmit(jdl, "ops")
        assert wait_for_final(alice, job.id) == "Done (Exit Code 0)"
        alice.wmproxy.addACLItems(job.id, {"Item": [pki.users["bob"].dn]})
        for reader in (bob, alice):
            names = sorted(f.name.rsplit("/", 1)[1] for f in reader.wmproxy.getOutputFileList(job.id, ""))
            assert names == ["std.err", "std.out"]
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobRegister(JDL.replace('"std.err"}', '"user.proxy"}'), "ops")
        assert_fault(err, "InvalidArgumentFault", "jobRegister", "1225",
                     "Attribute OutputSandbox: 'user.proxy' is reserved")


# --- proxy information (§5.5) ----------------------------------------------------------------


PROXY_INFO_FIELDS = ["Subject", "Issuer", "Identity", "Type", "Strength", "StartTime", "EndTime"]


class TestProxyInfo:
    def test_get_delegated_proxy_info_of_a_plain_proxy(self, alice: ReferenceClient, pki: Pki) -> None:
        info = alice.wmproxy.getDelegatedProxyInfo("ops")
        reply = assert_reply(alice, "getDelegatedProxyInfo", ["items"])
        assert [c.tag for c in reply.find("items")] == PROXY_INFO_FIELDS  # no VOsInfo without VOMS
        alice_dn = pki.users["alice"].dn
        signer = x509.load_pem_x509_certificate(pki.users["alice"].proxy.read_bytes())
        assert info.Issuer == slash_dn(signer.subject)
        assert re.fullmatch(re.escape(info.Issuer) + r"/CN=[0-9]+", info.Subject)
        assert info.Identity == alice_dn
        assert info.Type == "proxy"
        assert info.Strength.isdigit() and int(info.Strength) >= 1024
        assert EPOCH.match(info.StartTime) and EPOCH.match(info.EndTime)
        end = alice.deleg2.getTerminationTime("ops")
        assert int(info.EndTime) == int(end.timestamp())
        assert abs(int(info.StartTime) - time.time()) < 3600
        assert not info.VOsInfo

    def test_get_delegated_proxy_info_faults(self, alice: ReferenceClient) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getDelegatedProxyInfo("")
        assert_fault(err, "InvalidArgumentFault", "getDelegatedProxyInfo", "1225", "Provided Delegation Id not valid")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getDelegatedProxyInfo("never-delegated")
        assert_fault(err, "AuthorizationFault", "getDelegatedProxyInfo")

    def test_another_user_cannot_read_the_delegation(self, bob: ReferenceClient) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.wmproxy.getDelegatedProxyInfo("ops")
        assert_fault(err, "AuthorizationFault", "getDelegatedProxyInfo")

    def test_voms_delegation_has_vos_info(self, alice_voms, voms: VomsServer, pki: Pki) -> None:
        ref, proxy = alice_voms
        delegate(ref, proxy, "voms-deleg", lifetime=3 * 3600)
        info = ref.wmproxy.getDelegatedProxyInfo("voms-deleg")
        reply = assert_reply(ref, "getDelegatedProxyInfo", ["items"])
        assert [c.tag for c in reply.find("items")] == [*PROXY_INFO_FIELDS, "VOsInfo"]
        vo_xml = reply.find("items/VOsInfo")
        assert [c.tag for c in vo_xml] == ["User", "UserCA", "Server", "ServerCA", "VOName", "URI",
                                           "StartTime", "EndTime", "Attribute", "Attribute", "Attribute"]
        (vo,) = info.VOsInfo
        assert vo.User == pki.users["alice"].dn and vo.UserCA == pki.ca.dn
        assert vo.Server == voms.dn and vo.ServerCA == pki.ca.dn
        assert vo.VOName == "atlas" and vo.URI == URI
        assert EPOCH.match(vo.StartTime) and EPOCH.match(vo.EndTime)
        assert int(vo.EndTime) - int(vo.StartTime) == 24 * 3600
        assert list(vo.Attribute) == list(FQANS)
        assert info.Identity == pki.users["alice"].dn

    def test_get_job_proxy_info(self, alice: ReferenceClient, pki: Pki) -> None:
        job = alice.wmproxy.jobRegister(JDL, "ops")
        info = alice.wmproxy.getJobProxyInfo(job.id)
        reply = assert_reply(alice, "getJobProxyInfo", ["items"])
        assert [c.tag for c in reply.find("items")] == PROXY_INFO_FIELDS
        delegated = alice.wmproxy.getDelegatedProxyInfo("ops")
        assert (info.Subject, info.Issuer, info.Identity, info.EndTime) == (
            delegated.Subject, delegated.Issuer, delegated.Identity, delegated.EndTime)
        assert info.Type == "proxy" and EPOCH.match(info.StartTime)

    def test_get_job_proxy_info_faults(self, alice: ReferenceClient, bob: ReferenceClient) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getJobProxyInfo("")
        assert_fault(err, "InvalidArgumentFault", "getJobProxyInfo", "1225", "Provided Job Id not valid")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getJobProxyInfo("https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA")
        assert_fault(err, "JobUnknownFault", "getJobProxyInfo", "1218")
        job = alice.wmproxy.jobRegister(JDL, "ops")
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.wmproxy.getJobProxyInfo(job.id)
        assert_fault(err, "AuthorizationFault", "getJobProxyInfo")


# --- perusal (§8) ----------------------------------------------------------------------------


PERUSAL_JDL = """[
  Executable = "/bin/sh";
  Arguments = "-c 'for i in 1 2 3 4 5 6; do echo line$i >> out.txt; sleep 1; done'";
  StdOutput = "std.out";
  OutputSandbox = {"std.out", "out.txt"};
  PerusalFileEnable = true;
  PerusalTimeInterval = 1;
]"""

#: Lines 1-3 one a second, then wait (up to 300 s) until the test creates RELEASE, then lines 4-6.
HELD_SCRIPT = ("for i in 1 2 3; do echo line$i >> out.txt; sleep 1; done; "
               "for t in $(seq 600); do [ -e RELEASE ] && break; sleep 0.5; done; "
               "for i in 4 5 6; do echo line$i >> out.txt; sleep 1; done")
HELD_PERUSAL_JDL = """[
  Executable = "/bin/sh";
  Arguments = "-c 'HELD_SCRIPT'";
  StdOutput = "std.out";
  OutputSandbox = {"std.out", "out.txt"};
  PerusalFileEnable = true;
  PerusalTimeInterval = 1;
]""".replace("HELD_SCRIPT", HELD_SCRIPT)


class TestPerusal:
    def test_running_job_is_perused_in_merged_chunks(self, alice: ReferenceClient, deployment: Deployment,
                                                      tmp_path: Path) -> None:
        release = deployment.scratch(tmp_path) / "release"
        job = alice.wmproxy.jobRegister(HELD_PERUSAL_JDL.replace("RELEASE", str(release)), "ops")
        alice.wmproxy.enableFilePerusal(job.id, {"Item": ["out.txt"]})
        assert_reply(alice, "enableFilePerusal", [])
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getPerusalFiles(job.id, "out.txt", False, "")
        assert_fault(err, "OperationNotAllowedFault", "getPerusalFiles", "1226", "the job is not started")

        alice.wmproxy.jobStart(job.id)
        collected: list[str] = []

        def peruse() -> list[str]:
            uris = alice.wmproxy.getPerusalFiles(job.id, "out.txt", False, "")
            reply = assert_reply(alice, "getPerusalFiles", ["fileList"])
            assert {c.tag for c in reply.find("fileList")} <= {"Item"}
            collected.extend(uris or [])
            return collected

        # The job holds at line 3 until released: what is collected now was sampled while it ran.
        wait_for(peruse, what="perusal chunks of the running job")
        assert alice.wmproxy.getJobStatus(job.id).status == "Running"
        sampled_while_running = len(collected)
        release.touch()
        assert wait_for_final(alice, job.id) == "Done (Exit Code 0)"
        peruse()
        assert len(collected) > sampled_while_running  # lines 4-6 were merged after the release

        prefix = f"https://localhost:{deployment.port}/SandboxDir/"
        assert collected and all(u.startswith(prefix) for u in collected)
        assert all(re.search(r"/peek/out\.txt-[0-9]+-[0-9]+\Z", u) for u in collected)
        assert len(collected) == len(set(collected))  # each call returns only what it merged
        content = b"".join(alice.session.get(u).content for u in collected)
        assert content == b"".join(b"line%d\n" % i for i in range(1, 7))

        every = alice.wmproxy.getPerusalFiles(job.id, "out.txt", True, "https")
        assert sorted(every) == sorted(collected)
        assert alice.wmproxy.getPerusalFiles(job.id, "out.txt", False, "") in (None, [])

    def test_too_many_files_is_refused(self, alice: ReferenceClient) -> None:
        job = alice.wmproxy.jobRegister(PERUSAL_JDL, "ops")
        alice.wmproxy.enableFilePerusal(job.id, {"Item": ["a", "b", "c"]})  # max_perusal_files = 3
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.enableFilePerusal(job.id, {"Item": ["a", "b", "c", "d"]})
        assert_fault(err, "OperationNotAllowedFault", "enableFilePerusal", "1226",
                     "The maximum number of perusal files is reached")

    def test_perusal_not_enabled_in_the_jdl(self, alice: ReferenceClient) -> None:
        job = alice.wmproxy.jobRegister(JDL, "ops")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.enableFilePerusal(job.id, {"Item": ["std.out"]})
        assert_fault(err, "OperationNotAllowedFault", "enableFilePerusal", "1226", "Perusal not enabled for this job")
        alice.wmproxy.jobStart(job.id)
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getPerusalFiles(job.id, "std.out", False, "")
        assert_fault(err, "OperationNotAllowedFault", "getPerusalFiles", "1226", "Perusal not enabled for this job")

    def test_invalid_file_names(self, alice: ReferenceClient) -> None:
        job = alice.wmproxy.jobRegister(PERUSAL_JDL, "ops")
        alice.wmproxy.jobStart(job.id)
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getPerusalFiles(job.id, "", False, "")
        assert_fault(err, "InvalidArgumentFault", "getPerusalFiles", "1225", "Provided file name not valid")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.enableFilePerusal(job.id, {"Item": ["../user.proxy"]})
        assert_fault(err, "InvalidArgumentFault", "enableFilePerusal", "1225", "Provided file name not valid")
        with pytest.raises(zeep.exceptions.Fault) as err:  # red-team M1: its chunks went to the job's readers
            alice.wmproxy.enableFilePerusal(job.id, {"Item": ["user.proxy"]})
        assert_fault(err, "InvalidArgumentFault", "enableFilePerusal", "1225", "Provided file name not valid")

    def test_other_users_and_unknown_jobs(self, alice: ReferenceClient, bob: ReferenceClient) -> None:
        job = alice.wmproxy.jobRegister(PERUSAL_JDL, "ops")
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.wmproxy.enableFilePerusal(job.id, {"Item": ["out.txt"]})
        assert_fault(err, "AuthorizationFault", "enableFilePerusal", "1207")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.getPerusalFiles("https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA", "out.txt", False, "")
        assert_fault(err, "JobUnknownFault", "getPerusalFiles", "1218")


# --- jobListMatch (§3.7) against tests/integration/service.py CE_CATALOGUE -------------------


CE1 = "ce1.example.org:8443/cream-pbs-short"
CE2 = "ce2.example.org:8443/cream-pbs-long"
CE3 = "ce3.example.org:8443/cream-lsf-grid"
CE4 = "ce4.example.org:8443/cream-pbs-atlas"


def match_jdl(requirements: str, rank: str = "other.GlueCEStateFreeCPUs", extra: str = "") -> str:
    return f'[ Executable = "/bin/true"; Requirements = {requirements}; Rank = {rank}; {extra} ]'


class TestJobListMatch:
    def test_sorted_by_rank_and_ce_requirement_on_vo_respected(self, alice: ReferenceClient) -> None:
        result = alice.wmproxy.jobListMatch(match_jdl('other.GlueCEStateStatus == "Production"'), "ops")
        reply = assert_reply(alice, "jobListMatch", ["CEIdAndRankList"])
        entries = reply.find("CEIdAndRankList")
        assert {c.tag for c in entries} == {"file"}
        assert [c.tag for c in entries[0]] == ["name", "size"]
        # ce4 requires other.VirtualOrganisation == "atlas": not for a job without a VO
        assert [(r.name, r.size) for r in result] == [(CE2, 40), (CE1, 12)]

    def test_a_vo_the_jdl_claims_without_a_voms_proxy_does_not_get_the_vo_ce(self, alice: ReferenceClient) -> None:
        # the JDL's VirtualOrganisation proves nothing: ce4 is for jobs whose proxy is atlas's
        result = alice.wmproxy.jobListMatch(
            match_jdl('other.GlueCEStateStatus == "Production"', extra='VirtualOrganisation = "atlas";'), "ops")
        assert [(r.name, r.size) for r in result] == [(CE2, 40), (CE1, 12)]

    def test_a_vo_other_than_the_proxys_is_refused_as_jobregister_does(self, alice_voms) -> None:
        ref, proxy = alice_voms
        delegate(ref, proxy, "voms-cms", lifetime=3600)
        with pytest.raises(zeep.exceptions.Fault) as err:
            ref.wmproxy.jobListMatch(match_jdl("true", extra='VirtualOrganisation = "cms";'), "voms-cms")
        assert_fault(err, "GenericFault", "jobListMatch", "1220",
                     "Jdl VirtualOrganisation attribute (cms) is different from delegated Proxy Virtual Organisation "
                     "(atlas)")

    def test_voms_delegation_sets_the_vo(self, alice_voms) -> None:
        ref, proxy = alice_voms
        delegate(ref, proxy, "voms-match", lifetime=3600)
        result = ref.wmproxy.jobListMatch(match_jdl("other.GlueHostMainMemoryRAMSize <= 4096"), "voms-match")
        assert [(r.name, r.size) for r in result] == [(CE4, 100), (CE1, 12)]

    def test_fractional_rank_is_truncated_and_default_rank_is_zero(self, alice: ReferenceClient) -> None:
        result = alice.wmproxy.jobListMatch(
            match_jdl("other.GlueCEStateFreeCPUs > 0", rank="other.GlueCEStateFreeCPUs / 8.0"), "ops")
        assert [(r.name, r.size) for r in result] == [(CE2, 5), (CE1, 1)]
        result = alice.wmproxy.jobListMatch(
            '[ Executable = "/bin/true"; Requirements = other.GlueHostMainMemoryRAMSize >= 8192; ]', "ops")
        assert [(r.name, r.size) for r in result] == [(CE2, 0), (CE3, 0)]

    def test_no_match_is_an_empty_list(self, alice: ReferenceClient) -> None:
        result = alice.wmproxy.jobListMatch(match_jdl("other.GlueCEStateFreeCPUs > 1000"), "ops")
        reply = assert_reply(alice, "jobListMatch")
        assert result in (None, [])
        assert all(len(part) == 0 for part in reply)

    def test_empty_delegation_id_is_invalid_argument(self, alice: ReferenceClient) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobListMatch(match_jdl("true"), "")
        assert_fault(err, "InvalidArgumentFault", "jobListMatch", "1225", "Delegation id not valid")

    def test_other_faults(self, alice: ReferenceClient) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobListMatch(match_jdl("true"), "never-delegated")
        assert_fault(err, "AuthorizationFault", "jobListMatch", "1215")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobListMatch("[ Executable = ; ]", "ops")
        assert_fault(err, "InvalidArgumentFault", "jobListMatch")
        collection = '[ Type = "collection"; Nodes = { [ Executable = "/bin/true"; ] }; ]'
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobListMatch(collection, "ops")
        # 1226 is not declared by jobListMatch: sent as GenericFault with the same code
        assert_fault(err, "GenericFault", "jobListMatch", "1226", "Operation permitted only for normal job")


# --- JSDL (§12) ------------------------------------------------------------------------------


def posix(*children: tuple[str, str, dict[str, str]]) -> etree._Element:
    app = etree.Element(f"{{{POSIX_NS}}}POSIXApplication", nsmap={"jsdl-posix": POSIX_NS})
    for name, text, attrib in children:
        etree.SubElement(app, f"{{{POSIX_NS}}}{name}", attrib=attrib).text = text
    return app


def jsdl_definition(ref: ReferenceClient, application: etree._Element, resources: dict | None = None,
                    staging: list[dict] | None = None) -> dict:
    """A JobDefinition_Type value built with the types of the reference WSDL."""
    app_type = ref.client.get_type(f"{{{JSDL_NS}}}Application_Type")
    description: dict = {"JobIdentification": {"JobName": "jsdl-test"}, "Application": app_type(_value_1=[application])}
    if resources is not None:
        description["Resources"] = resources
    if staging:
        description["DataStaging"] = staging
    return {"JobDescription": description}


ECHO_JSDL_APP = (("Executable", "/bin/echo", {}), ("Argument", "hello", {}), ("Argument", "jsdl", {}),
                 ("Output", "std.out", {}), ("Error", "std.err", {}))
OUTPUT_STAGING = [{"FileName": "std.out", "CreationFlag": "overwrite", "Target": {}},
                  {"FileName": "std.err", "CreationFlag": "overwrite", "Target": {}}]


class TestJsdl:
    def test_job_register_jsdl(self, alice: ReferenceClient) -> None:
        definition = jsdl_definition(alice, posix(*ECHO_JSDL_APP), staging=OUTPUT_STAGING)
        job = alice.wmproxy.jobRegisterJSDL(definition, "ops")
        request = alice.last_request
        assert etree.QName(request.find("jsdl")[0]) == etree.QName(JSDL_NS, "JobDescription")
        reply = assert_reply(alice, "jobRegisterJSDL", ["jobIdStruct"])
        assert [c.tag for c in reply.find("jobIdStruct")] == ["id", "name", "path"]
        ad = parse_jdl(alice.wmproxy.getJDL(job.id, "ORIGINAL"))
        assert ad["Executable"] == "/bin/echo" and ad["Arguments"] == "hello jsdl"
        assert ad["JobName"] == "jsdl-test"
        assert (ad["StdOutput"], ad["StdError"]) == ("std.out", "std.err")
        assert list(ad["OutputSandbox"]) == ["std.out", "std.err"]
        assert alice.wmproxy.getJobStatus(job.id).status == "Submitted"

    def test_job_submit_jsdl_runs_to_done(self, alice: ReferenceClient) -> None:
        env = ("Environment", "jsdl", {"name": "GREETING"})
        app = posix(("Executable", "/bin/sh", {}), ("Argument", "-c", {}), ("Argument", 'echo hello "$GREETING"', {}),
                    env, ("Output", "std.out", {}))
        job = alice.wmproxy.jobSubmitJSDL("ops", jsdl_definition(alice, app, staging=OUTPUT_STAGING[:1]))
        assert_reply(alice, "jobSubmitJSDL", ["jobIdStruct"])
        assert wait_for_final(alice, job.id) == "Done (Exit Code 0)"
        (out,) = alice.wmproxy.getOutputFileList(job.id, "")
        assert out.name.endswith("/output/std.out")
        assert alice.session.get(out.name).content == b"hello jsdl\n"

    def test_job_list_match_jsdl(self, alice: ReferenceClient) -> None:
        resources = {"IndividualPhysicalMemory": {"LowerBoundedRange": {"_value_1": 8 * 1024**3}}}
        result = alice.wmproxy.jobListMatchJSDL(jsdl_definition(alice, posix(("Executable", "/bin/true", {})),
                                                                resources=resources), "ops")
        reply = assert_reply(alice, "jobListMatchJSDL", ["CEIdAndRankList"])
        assert [c.tag for c in reply.find("CEIdAndRankList/file")] == ["name", "size"]
        assert [(r.name, r.size) for r in result] == [(CE2, 0), (CE3, 0)]

    @pytest.mark.parametrize("operation", ["jobRegisterJSDL", "jobSubmitJSDL", "jobListMatchJSDL"])
    def test_unsupported_element_is_named_in_an_invalid_argument_fault(self, alice: ReferenceClient,
                                                                       operation: str) -> None:
        app = posix(("Executable", "/bin/true", {}), ("WorkingDirectory", "/tmp", {}))
        definition = jsdl_definition(alice, app)
        args = ("ops", definition) if operation == "jobSubmitJSDL" else (definition, "ops")
        with pytest.raises(zeep.exceptions.Fault) as err:
            getattr(alice.wmproxy, operation)(*args)
        detail = assert_fault(err, "InvalidArgumentFault", operation, "1225", "unsupported elements")
        assert "jsdl-posix:WorkingDirectory" in detail.findtext("Description")

    def test_missing_executable(self, alice: ReferenceClient) -> None:
        app = posix(("Argument", "x", {}))
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobRegisterJSDL(jsdl_definition(alice, app), "ops")
        assert_fault(err, "InvalidArgumentFault", "jobRegisterJSDL", "1225")


# --- delegation-2 getNewProxyReq / renewProxyReq (§5.2) --------------------------------------


def d2_fault(err: pytest.ExceptionInfo) -> str:
    detail = fault_detail(err.value)
    assert etree.QName(detail) == etree.QName(D2, "DelegationException")
    assert [c.tag for c in detail] == ["msg"]
    return detail.findtext("msg")


class TestDelegation2:
    def test_get_new_proxy_req_then_renew(self, bob: ReferenceClient, pki: Pki) -> None:
        signer = load_credential(pki.users["bob"].proxy)
        new = bob.deleg2.getNewProxyReq()
        reply = assert_reply(bob, "getNewProxyReq", ["getNewProxyReqReturn"], ns=D2)
        assert [c.tag for c in reply[0]] == ["proxyRequest", "delegationID"]
        assert new.proxyRequest.startswith("-----BEGIN CERTIFICATE REQUEST-----")
        bob.deleg2.putProxy(new.delegationID,
                            sign_proxy_request(new.proxyRequest.encode(), signer, lifetime=3600).decode())
        first_end = bob.deleg2.getTerminationTime(new.delegationID)

        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.deleg2.getNewProxyReq()
        assert "Previous client delegated proxy still valid" in d2_fault(err)

        csr = bob.deleg2.renewProxyReq(new.delegationID)
        assert_reply(bob, "renewProxyReq", ["renewProxyReqReturn"], ns=D2)
        # the stored proxy is untouched until putProxy succeeds, even after a refused one
        assert bob.deleg2.getTerminationTime(new.delegationID) == first_end
        with pytest.raises(zeep.exceptions.Fault):
            bob.deleg2.putProxy(new.delegationID, "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
        assert bob.deleg2.getTerminationTime(new.delegationID) == first_end
        bob.deleg2.putProxy(new.delegationID, sign_proxy_request(csr.encode(), signer, lifetime=7200).decode())
        assert bob.deleg2.getTerminationTime(new.delegationID) > first_end + dt.timedelta(seconds=3000)

        bob.deleg2.destroy(new.delegationID)
        again = bob.deleg2.getNewProxyReq()  # nothing valid under the default id any more
        assert again.delegationID == new.delegationID

    def test_renew_proxy_req_of_unknown_delegation(self, bob: ReferenceClient) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.deleg2.renewProxyReq("never-delegated")
        assert d2_fault(err) == "No previous client delegated proxy found"


# --- delegation-1 extras (what gridsite's htproxy* tools call, peers.md §6.2) ----------------


class TestDelegation1Extras:
    def test_new_put_time_renew_destroy_in_the_delegation1_namespace(
        self, deployment: Deployment, pki: Pki
    ) -> None:
        user = pki.users["alice"]
        session = reference_client(deployment.endpoint, user.proxy, pki.ca_dir).session
        signer = load_credential(user.proxy)

        def call(operation: str, **parts: str) -> etree._Element:
            status, reply = soap_call(session, deployment.endpoint, D1, operation, **parts)
            assert status == 200, etree.tostring(reply)
            assert etree.QName(reply) == etree.QName(D1, f"{operation}Response")
            assert_unqualified_children(reply)
            return reply

        reply = call("getNewProxyReq")
        returned = reply.find("getNewProxyReqReturn")
        assert [c.tag for c in returned] == ["proxyRequest", "delegationID"]
        delegation_id = returned.findtext("delegationID")
        signed = sign_proxy_request(returned.findtext("proxyRequest").encode(), signer, lifetime=3600)
        assert len(call("putProxy", delegationID=delegation_id, proxy=signed.decode())) == 0

        reply = call("getTerminationTime", delegationID=delegation_id)
        assert [c.tag for c in reply] == ["getTerminationTimeReturn"]
        end = dt.datetime.fromisoformat(reply.findtext("getTerminationTimeReturn").replace("Z", "+00:00"))
        assert int(end.timestamp()) == cert_epoch(signed)

        reply = call("renewProxyReq", delegationID=delegation_id)
        assert [c.tag for c in reply] == ["renewProxyReqReturn"]
        csr = reply.findtext("renewProxyReqReturn")
        assert csr.startswith("-----BEGIN CERTIFICATE REQUEST-----")
        renewed = sign_proxy_request(csr.encode(), signer, lifetime=7200)
        call("putProxy", delegationID=delegation_id, proxy=renewed.decode())
        reply = call("getTerminationTime", delegationID=delegation_id)
        end = dt.datetime.fromisoformat(reply.findtext("getTerminationTimeReturn").replace("Z", "+00:00"))
        assert int(end.timestamp()) == cert_epoch(renewed)

        assert len(call("destroy", delegationID=delegation_id)) == 0
        status, fault = soap_call(session, deployment.endpoint, D1, "getTerminationTime", delegationID=delegation_id)
        assert status == 500
        detail = fault.find("detail")[0]
        assert etree.QName(detail) == etree.QName(D1, "DelegationException")
        assert [c.tag for c in detail] == ["message"]

    @pytest.mark.parametrize("operation", ["renewProxyReq", "getTerminationTime", "destroy"])
    def test_unknown_delegation_faults(self, deployment: Deployment, pki: Pki, operation: str) -> None:
        session = reference_client(deployment.endpoint, pki.users["bob"].proxy, pki.ca_dir).session
        status, fault = soap_call(session, deployment.endpoint, D1, operation, delegationID="no-such-id")
        assert status == 500
        assert etree.QName(fault) == etree.QName(SOAP, "Fault")
        detail = fault.find("detail")[0]
        assert etree.QName(detail) == etree.QName(D1, "DelegationException")
        assert [c.tag for c in detail] == ["message"]
        assert detail.findtext("message")

    def test_get_new_proxy_req_while_the_default_is_valid(self, deployment: Deployment, pki: Pki) -> None:
        ref = reference_client(deployment.endpoint, pki.users["bob"].proxy, pki.ca_dir)
        status, reply = soap_call(ref.session, deployment.endpoint, D1, "getNewProxyReq")
        assert status == 200
        returned = reply.find("getNewProxyReqReturn")
        signed = sign_proxy_request(returned.findtext("proxyRequest").encode(), load_credential(pki.users["bob"].proxy),
                                    lifetime=3600)
        ref.deleg1.putProxy(returned.findtext("delegationID"), signed.decode())
        status, fault = soap_call(ref.session, deployment.endpoint, D1, "getNewProxyReq")
        assert status == 500
        assert "still valid" in fault.find("detail")[0].findtext("message")
        ref.deleg2.destroy(returned.findtext("delegationID"))


# --- getOutputFileList (§4.5): every stored file, so `wmproxy output` never purges one unfetched ----


def test_output_file_list_keeps_names_the_edge_refuses(alice: ReferenceClient, deployment: Deployment) -> None:
    """A name a collection stored before it refused such names (bytes that are not UTF-8, a
    control character, a ``\\``) stays listed, though its GET is refused: ``wmproxy output``
    then fails on it and keeps the job. Left out, the job was purged with the file never
    fetched (a review of stop 56). The others are fetched."""
    job = alice.wmproxy.jobSubmit(JDL, "ops")
    assert wait_for_final(alice, job.id) == "Done (Exit Code 0)"
    settings = load_settings(deployment.config)
    output = FilesystemSandboxStorage(settings.sandbox.root, settings.sandbox.dir_name).job_dir(job.id) / "output"
    owner = output.stat()
    planted = (b"\xffname.txt", b"bad\nname.txt", b"back\\slash.txt")
    for name in planted:
        path = os.fsencode(output) + b"/" + name
        with open(path, "wb") as f:
            f.write(b"left by an old collection")
        if os.geteuid() == 0:  # as the service wrote it
            os.chown(path, owner.st_uid, owner.st_gid)

    files = alice.wmproxy.getOutputFileList(job.id, "https")

    names = {unquote(f.name.rsplit("/", 1)[1], errors="surrogateescape"): f for f in files}
    assert sorted(names) == sorted(["std.err", "std.out", *(os.fsdecode(n) for n in planted)])
    for name, f in names.items():
        reply = alice.session.get(f.name)
        if name in ("std.err", "std.out"):
            assert reply.status_code == 200 and len(reply.content) == f.size, f.name
        else:
            assert 400 <= reply.status_code < 500, f.name
