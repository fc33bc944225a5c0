"""Wire format against a client generated from the reference WSDL (zeep), with assertions
on the reply XML itself: wrapper element and namespace, unqualified parts and members,
typed fault details. zeep is lenient, so every call also checks the raw XML."""

from __future__ import annotations

import datetime as dt

import pytest
import zeep
from lxml import etree

from tests.conftest import Pki
from tests.integration.refclient import (
    D1,
    D2,
    WMP,
    ReferenceClient,
    assert_unqualified_children,
    fault_detail,
    forget_default_delegation,
    reference_client,
)
from tests.integration.service import Deployment
from tests.support import ECHO_JDL as JDL
from tests.support import delegate, wait_for_final
from wmproxy.security.proxy import load_credential, sign_proxy_request

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def alice(deployment: Deployment, pki: Pki) -> ReferenceClient:
    return reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)


@pytest.fixture(scope="module")
def bob(deployment: Deployment, pki: Pki) -> ReferenceClient:
    return reference_client(deployment.endpoint, pki.users["bob"].proxy, pki.ca_dir)


def reply_name(ref: ReferenceClient) -> tuple[str, str]:
    q = etree.QName(ref.last_reply)
    return q.namespace, q.localname


class TestVersionsAndDispatch:
    def test_wmproxy_get_version_reply_is_unqualified_rpc_literal(self, alice: ReferenceClient) -> None:
        assert alice.wmproxy.getVersion() == "3.5.0"
        assert reply_name(alice) == (WMP, "getVersionResponse")
        assert [c.tag for c in alice.last_reply] == ["version"]

    def test_delegation2_get_version_is_a_different_operation(self, alice: ReferenceClient) -> None:
        assert alice.deleg2.getVersion() == "2.0.0"
        assert reply_name(alice) == (D2, "getVersionResponse")
        assert [c.tag for c in alice.last_reply] == ["getVersionReturn"]
        assert alice.deleg2.getInterfaceVersion() == "2.0.0"

    def test_request_children_are_unqualified_as_the_reference_wsdl_says(self, alice: ReferenceClient) -> None:
        alice.wmproxy.getTransferProtocols()
        assert_unqualified_children(alice.last_request)
        assert [c.text for c in alice.last_reply.find("items")] == ["https"]
        assert [c.tag for c in alice.last_reply.find("items")] == ["Item"]


def test_wsdl_is_published_at_the_endpoint(alice: ReferenceClient, deployment: Deployment) -> None:
    reply = alice.session.get(f"{deployment.endpoint}?wsdl")
    assert reply.status_code == 200
    root = etree.fromstring(reply.content)
    addresses = root.findall(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert {a.get("location") for a in addresses} == {deployment.endpoint}


class TestDelegation:
    @pytest.mark.parametrize("port", ["wmproxy", "deleg1", "deleg2"])
    def test_get_proxy_req_and_put_proxy_on_each_namespace(self, alice: ReferenceClient, pki: Pki, port: str) -> None:
        delegate(alice, pki.users["alice"].proxy, f"d-{port}", port=port)
        ns = {"wmproxy": WMP, "deleg1": D1, "deleg2": D2}[port]
        assert reply_name(alice) == (ns, "putProxyResponse")
        assert len(alice.last_reply) == 0
        end = alice.deleg2.getTerminationTime(f"d-{port}")
        assert reply_name(alice) == (D2, "getTerminationTimeResponse")
        assert end > dt.datetime.now(dt.UTC) + dt.timedelta(hours=5)

    def test_get_proxy_req_reply_accessor_differs_per_namespace(self, alice: ReferenceClient) -> None:
        alice.wmproxy.getProxyReq("acc")
        assert [c.tag for c in alice.last_reply] == ["request"]
        alice.deleg2.getProxyReq("acc")
        assert [c.tag for c in alice.last_reply] == ["getProxyReqReturn"]
        assert alice.last_reply[0].text.startswith("-----BEGIN CERTIFICATE REQUEST-----")

    def test_another_dn_cannot_see_use_replace_or_destroy_a_delegation(
        self, alice: ReferenceClient, bob: ReferenceClient, pki: Pki
    ) -> None:
        delegate(alice, pki.users["alice"].proxy, "shared-name")
        alice_end = alice.deleg2.getTerminationTime("shared-name")
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.deleg2.getTerminationTime("shared-name")
        assert etree.QName(fault_detail(err.value)).localname == "DelegationException"
        with pytest.raises(zeep.exceptions.Fault):
            bob.deleg2.destroy("shared-name")
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.wmproxy.jobRegister(JDL, "shared-name")
        assert etree.QName(fault_detail(err.value)).localname == "AuthorizationFault"
        # bob's own delegation under the same id leaves alice's untouched
        delegate(bob, pki.users["bob"].proxy, "shared-name", lifetime=3600)
        assert alice.deleg2.getTerminationTime("shared-name") == alice_end

    def test_put_proxy_signed_by_another_user_is_refused(self, alice: ReferenceClient, pki: Pki) -> None:
        csr = alice.deleg2.getProxyReq("stolen")
        signed = sign_proxy_request(csr.encode(), load_credential(pki.users["bob"].proxy), lifetime=3600)
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.deleg2.putProxy("stolen", signed.decode())
        detail = fault_detail(err.value)
        assert etree.QName(detail) == etree.QName(D2, "DelegationException")
        assert [c.tag for c in detail] == ["msg"]
        assert "does not belong to the caller" in detail.findtext("msg")

    def test_delegation1_fault_uses_message_field(self, alice: ReferenceClient) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.deleg1.putProxy("never-requested", "garbage")
        detail = fault_detail(err.value)
        assert etree.QName(detail) == etree.QName(D1, "DelegationException")
        assert [c.tag for c in detail] == ["message"]

    def test_get_new_proxy_req_and_renew_proxy_req(self, alice: ReferenceClient, pki: Pki) -> None:
        forget_default_delegation(alice, pki.users["alice"].dn)  # another module's may be left
        new = alice.deleg2.getNewProxyReq()
        assert reply_name(alice) == (D2, "getNewProxyReqResponse")
        returned = alice.last_reply.find("getNewProxyReqReturn")
        assert [c.tag for c in returned] == ["proxyRequest", "delegationID"]
        assert len(new.delegationID) == 16
        signed = sign_proxy_request(new.proxyRequest.encode(), load_credential(pki.users["alice"].proxy), lifetime=3600)
        alice.deleg2.putProxy(new.delegationID, signed.decode())
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.deleg2.getNewProxyReq()  # the default delegation is still valid
        assert "still valid" in fault_detail(err.value).findtext("msg")
        csr = alice.deleg2.renewProxyReq(new.delegationID)
        assert [c.tag for c in alice.last_reply] == ["renewProxyReqReturn"]
        signed = sign_proxy_request(csr.encode(), load_credential(pki.users["alice"].proxy), lifetime=7200)
        alice.deleg2.putProxy(new.delegationID, signed.decode())
        assert alice.deleg2.getTerminationTime(new.delegationID) > dt.datetime.now(dt.UTC) + dt.timedelta(
            seconds=5400
        )
        with pytest.raises(zeep.exceptions.Fault):
            alice.deleg2.renewProxyReq("no-such-delegation")
        # The deployment is shared: alice's default delegation, left valid, would refuse a later
        # test's getNewProxyReq ("Previous client delegated proxy still valid").
        alice.deleg2.destroy(new.delegationID)

    def test_get_service_metadata_is_not_supported(self, alice: ReferenceClient) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.deleg2.getServiceMetadata("key")
        assert fault_detail(err.value).findtext("msg") == "Method not supported"

    def test_destroy_removes_the_delegation(self, alice: ReferenceClient, pki: Pki) -> None:
        delegate(alice, pki.users["alice"].proxy, "to-destroy")
        alice.deleg2.destroy("to-destroy")
        assert reply_name(alice) == (D2, "destroyResponse")
        with pytest.raises(zeep.exceptions.Fault):
            alice.deleg2.getTerminationTime("to-destroy")


@pytest.fixture(scope="module")
def delegation(alice: ReferenceClient, pki: Pki) -> str:
    delegate(alice, pki.users["alice"].proxy, "jobs")
    return "jobs"


class TestJobOperations:
    def test_job_register_returns_job_id_struct_with_unqualified_members(
        self, alice: ReferenceClient, delegation: str, deployment: Deployment
    ) -> None:
        result = alice.wmproxy.jobRegister(JDL, delegation)
        assert reply_name(alice) == (WMP, "jobRegisterResponse")
        struct = alice.last_reply.find("jobIdStruct")
        assert struct is not None
        assert [c.tag for c in struct] == ["id", "name", "path"]
        assert struct.find("name").get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true"
        assert_unqualified_children(alice.last_reply)
        job_id = result.id
        assert job_id.startswith("https://localhost:9000/") and len(job_id.rsplit("/", 1)[1]) == 22
        assert result.path.startswith("SandboxDir/") and result.path.endswith("/input")
        assert alice.wmproxy.getJobStatus(job_id).status == "Submitted"
        status = alice.last_reply.find("JobStatusStruct")
        assert [c.tag for c in status] == ["jobid", "status"]

    def test_registered_jdl_carries_the_reference_attributes(self, alice: ReferenceClient, delegation: str,
                                                             pki: Pki) -> None:
        job_id = alice.wmproxy.jobRegister(JDL, delegation).id
        registered = alice.wmproxy.getJDL(job_id, "REGISTERED")
        assert reply_name(alice) == (WMP, "getJDLResponse")
        for attribute in ("edg_jobid", "CertificateSubject", "WMPInputSandboxBaseURI", "OutputSandboxPath"):
            assert attribute in registered
        assert job_id in registered and pki.users["alice"].dn in registered
        original = alice.wmproxy.getJDL(job_id, "ORIGINAL")
        assert "edg_jobid" not in original and "/bin/echo" in original

    def test_sandbox_uris_point_at_the_job_area(self, alice: ReferenceClient, delegation: str,
                                                deployment: Deployment) -> None:
        job = alice.wmproxy.jobRegister(JDL, delegation)
        uris = alice.wmproxy.getSandboxDestURI(job.id, "")
        assert reply_name(alice) == (WMP, "getSandboxDestURIResponse")
        assert [c.tag for c in alice.last_reply.find("path")] == ["Item"]
        assert uris == [f"https://localhost:{deployment.port}/{job.path}"]
        bulk = alice.wmproxy.getSandboxBulkDestURI(job.id, "https")
        entry = alice.last_reply.find("DestURIsStructType/Item")
        assert [c.tag for c in entry] == ["id", "Item"]
        assert bulk[0].id == job.id and bulk[0].Item == uris  # zeep unwraps the single-member struct
        assert alice.wmproxy.getMaxInputSandboxSize() == 1_000_000
        assert [c.tag for c in alice.last_reply] == ["size"]

    def test_submit_runs_and_output_list_has_sizes(self, alice: ReferenceClient, delegation: str) -> None:
        job = alice.wmproxy.jobSubmit(JDL, delegation)
        status = wait_for_final(alice, job.id)
        assert status == "Done (Exit Code 0)"
        files = alice.wmproxy.getOutputFileList(job.id, "")
        assert reply_name(alice) == (WMP, "getOutputFileListResponse")
        entries = alice.last_reply.find("OutputFileAndSizeList")
        assert {c.tag for c in entries} == {"file"}
        assert [c.tag for c in entries[0]] == ["name", "size"]
        sizes = {f.name.rsplit("/", 1)[1]: f.size for f in files}
        assert sizes == {"std.out": len("hello grid\n"), "std.err": 0}
        alice.wmproxy.jobPurge(job.id)
        assert alice.wmproxy.getJobStatus(job.id).status == "Cleared"

    def test_second_start_is_refused_with_operation_not_allowed(self, alice: ReferenceClient, delegation: str) -> None:
        job = alice.wmproxy.jobRegister(JDL, delegation)
        alice.wmproxy.jobStart(job.id)
        assert reply_name(alice) == (WMP, "jobStartResponse")
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobStart(job.id)
        detail = fault_detail(err.value)
        assert etree.QName(detail) == etree.QName(WMP, "OperationNotAllowedFault")
        assert [c.tag for c in detail] == ["methodName", "Timestamp", "ErrorCode", "Description", "FaultCause"]
        assert detail.findtext("methodName") == "jobStart"
        assert detail.findtext("ErrorCode") == "1226"

    def test_cancel_of_a_registered_job(self, alice: ReferenceClient, delegation: str) -> None:
        job = alice.wmproxy.jobRegister(JDL, delegation)
        alice.wmproxy.jobCancel(job.id)
        assert reply_name(alice) == (WMP, "jobCancelResponse")
        assert alice.wmproxy.getJobStatus(job.id).status == "Cancelled (Cancelled by user)"
        with pytest.raises(zeep.exceptions.Fault) as err:
            alice.wmproxy.jobCancel(job.id)
        assert etree.QName(fault_detail(err.value)).localname == "OperationNotAllowedFault"

    def test_foreign_job_is_refused(self, alice: ReferenceClient, bob: ReferenceClient, delegation: str) -> None:
        job = alice.wmproxy.jobRegister(JDL, delegation)
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.wmproxy.getJDL(job.id, "ORIGINAL")
        assert etree.QName(fault_detail(err.value)).localname == "AuthorizationFault"
        with pytest.raises(zeep.exceptions.Fault):
            bob.wmproxy.jobStart(job.id)
        assert alice.wmproxy.getJobStatus(job.id).status == "Submitted"
