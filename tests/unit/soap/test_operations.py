"""The SOAP edge in-process: dispatch by (namespace, element), typed faults, and the job cycle
(wmproxy/soap/app.py, dispatch.py, faults.py; wmproxy-behaviour.md §1.1, §1.4, §1.5)."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from tests.conftest import Pki
from tests.support import ECHO_JDL, Reply, SoapApp
from wmproxy.domain import Principal
from wmproxy.security.proxy import load_credential, sign_proxy_request
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, SOAP_ENV, WMPROXY

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")
UNKNOWN_JOB = "https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA"


def assert_wmproxy_fault(reply: Reply, kind: str, method: str, code: str) -> etree._Element:
    """HTTP 500, SOAP-ENV:Server, one ``<ns1:kind>`` with the BaseFaultType fields in order."""
    assert reply.status.startswith("500"), reply.status
    assert b"Traceback" not in reply.body
    fault = reply.element
    assert fault.tag == f"{{{SOAP_ENV}}}Fault"
    assert (fault.findtext("faultcode") or "").partition(":")[2] == "Server"  # any prefix of SOAP-ENV
    detail = reply.fault_detail
    assert etree.QName(detail) == etree.QName(WMPROXY, kind), reply.body
    assert [c.tag for c in detail][:4] == ["methodName", "Timestamp", "ErrorCode", "Description"]
    assert detail.findtext("methodName") == method
    assert TIMESTAMP.match(detail.findtext("Timestamp") or ""), detail.findtext("Timestamp")
    assert detail.findtext("ErrorCode") == code
    assert detail.findtext("Description") == fault.findtext("faultstring")
    assert detail.findtext("FaultCause") == detail.findtext("Description")
    return detail


def delegate(soap: SoapApp, caller: Principal, pki: Pki, user: str, delegation_id: str) -> None:
    """getProxyReq and putProxy on the delegation-2 port, signed as the client library does."""
    reply = soap.call(DELEGATION_2, "getProxyReq", caller, delegationID=delegation_id)
    assert reply.status.startswith("200"), reply.body
    csr = reply.element.findtext("getProxyReqReturn")
    signed = sign_proxy_request(csr.encode(), load_credential(pki.users[user].proxy), lifetime=3 * 3600)
    reply = soap.call(DELEGATION_2, "putProxy", caller, delegationID=delegation_id, proxy=signed.decode())
    assert reply.status.startswith("200"), reply.body


class TestDispatch:
    def test_wmproxy_get_version(self, soap: SoapApp, alice: Principal) -> None:
        reply = soap.call(WMPROXY, "getVersion", alice)
        assert reply.status.startswith("200")
        assert etree.QName(reply.element) == etree.QName(WMPROXY, "getVersionResponse")
        assert [(c.tag, c.text) for c in reply.element] == [("version", "3.5.0")]

    def test_same_name_in_another_namespace_is_another_operation(self, soap: SoapApp, alice: Principal) -> None:
        reply = soap.call(DELEGATION_2, "getVersion", alice)
        assert etree.QName(reply.element) == etree.QName(DELEGATION_2, "getVersionResponse")
        assert [(c.tag, c.text) for c in reply.element] == [("getVersionReturn", "2.0.0")]

    def test_prefix_does_not_matter(self, soap: SoapApp, alice: Principal) -> None:
        reply = soap.call(WMPROXY, "getVersion", alice, prefix="anything")
        assert reply.element.findtext("version") == "3.5.0"

    def test_unknown_wmproxy_operation_is_an_invalid_argument_fault(self, soap: SoapApp, alice: Principal) -> None:
        detail = assert_wmproxy_fault(soap.call(WMPROXY, "noSuchOperation", alice),
                                      "InvalidArgumentFault", "noSuchOperation", "1225")
        assert detail.findtext("Description") == f"Unknown operation {{{WMPROXY}}}noSuchOperation"

    def test_unknown_namespace_is_refused(self, soap: SoapApp, alice: Principal) -> None:
        reply = soap.call("urn:not-a-port", "jobStart", alice)
        detail = assert_wmproxy_fault(reply, "InvalidArgumentFault", "jobStart", "1225")
        assert detail.findtext("Description") == "Unknown operation {urn:not-a-port}jobStart"

    def test_wmproxy_operation_in_a_delegation_namespace(self, soap: SoapApp, alice: Principal) -> None:
        detail = soap.call(DELEGATION_1, "getJobStatus", alice).fault_detail
        assert etree.QName(detail) == etree.QName(DELEGATION_1, "DelegationException")
        assert detail.findtext("message") == f"Unknown operation {{{DELEGATION_1}}}getJobStatus"

    @pytest.mark.parametrize("body", [b"", b"not xml", b"<a/>",
                                      f'<e:Envelope xmlns:e="{SOAP_ENV}"><e:Body/></e:Envelope>'.encode()])
    def test_malformed_requests_get_a_fault(self, soap: SoapApp, alice: Principal, body: bytes) -> None:
        reply = soap.request(body, alice)
        detail = assert_wmproxy_fault(reply, "InvalidArgumentFault", "", "1225")
        assert (detail.findtext("Description") or "").startswith("Malformed SOAP request")

    def test_wsdl_is_served_with_this_endpoint(self, soap: SoapApp) -> None:
        reply = soap.request(b"", None, method="GET", query="wsdl")
        assert reply.status.startswith("200")
        assert b'location="https://localhost:7443/glite_wms_wmproxy_server"' in reply.body

    def test_other_paths(self, soap: SoapApp, alice: Principal) -> None:
        assert soap.request(b"", alice, method="GET").status.startswith("405")
        assert soap.request(b"", alice, path="/elsewhere").status.startswith("404")


class TestCallers:
    def test_unauthenticated_caller_is_an_authentication_fault_of_the_operation(self, soap: SoapApp) -> None:
        reply = soap.call(WMPROXY, "getVersion", None)
        detail = assert_wmproxy_fault(reply, "AuthenticationFault", "getVersion", "1206")
        assert "Unable to get a valid user DN" in (detail.findtext("Description") or "")

    def test_caller_the_site_does_not_admit(self, soap: SoapApp, mallory: Principal) -> None:
        reply = soap.call(WMPROXY, "getJobStatus", mallory, jobId=UNKNOWN_JOB)
        detail = assert_wmproxy_fault(reply, "AuthorizationFault", "getJobStatus", "1207")
        assert detail.findtext("Description") == "Authorization error: user not authorized"

    def test_undeclared_fault_kind_becomes_generic_with_the_same_code(self, soap: SoapApp,
                                                                      mallory: Principal) -> None:
        """getVersion declares no AuthorizationFault in the WSDL: strict clients get a declared fault."""
        reply = soap.call(WMPROXY, "getVersion", mallory)
        detail = assert_wmproxy_fault(reply, "GenericFault", "getVersion", "1207")
        assert detail.findtext("Description") == "Authorization error: user not authorized"

    def test_refused_delegation_call_is_a_delegation_exception(self, soap: SoapApp, mallory: Principal) -> None:
        reply = soap.call(DELEGATION_2, "getProxyReq", mallory, delegationID="x")
        detail = reply.fault_detail
        assert etree.QName(detail) == etree.QName(DELEGATION_2, "DelegationException")
        assert detail.findtext("msg") == "Authorization error: user not authorized"

    def test_drained_service_refuses_registration_only(self, soap: SoapApp, alice: Principal) -> None:
        drain = soap.rt.settings.service.drain_file
        open(drain, "w").close()
        reply = soap.call(WMPROXY, "jobRegister", alice, jdl=ECHO_JDL, delegationId="x")
        detail = assert_wmproxy_fault(reply, "AuthorizationFault", "jobRegister", "1207")
        assert "temporarily drained" in (detail.findtext("Description") or "")
        assert soap.call(WMPROXY, "getVersion", alice).status.startswith("200")


class TestJobCycle:
    def test_register_start_status(self, soap: SoapApp, alice: Principal, pki: Pki) -> None:
        delegate(soap, alice, pki, "alice", "cycle")
        reply = soap.call(WMPROXY, "jobRegister", alice, jdl=ECHO_JDL, delegationId="cycle")
        assert reply.status.startswith("200"), reply.body
        struct = reply.element.find("jobIdStruct")
        job_id = struct.findtext("id")
        assert job_id.startswith("https://localhost:9000/")
        assert struct.findtext("path").endswith("/input")
        status = soap.call(WMPROXY, "getJobStatus", alice, jobId=job_id).element.find("JobStatusStruct")
        assert (status.findtext("jobid"), status.findtext("status")) == (job_id, "Submitted")

        reply = soap.call(WMPROXY, "jobStart", alice, jobId=job_id)
        assert reply.status.startswith("200"), reply.body
        assert etree.QName(reply.element) == etree.QName(WMPROXY, "jobStartResponse")
        status = soap.call(WMPROXY, "getJobStatus", alice, jobId=job_id).element.find("JobStatusStruct")
        assert status.findtext("status") == "Waiting"

        assert_wmproxy_fault(soap.call(WMPROXY, "jobStart", alice, jobId=job_id),
                             "OperationNotAllowedFault", "jobStart", "1226")

    @pytest.mark.parametrize("delegation_id", ["user@host", "a:b", "x+y", "a b", "<&'\">", "x" * 255])
    def test_ids_the_original_accepted(self, soap: SoapApp, alice: Principal, pki: Pki, delegation_id: str) -> None:
        """§5.1: only an id holding "/" is invalid; the id goes through SOAP, the store and a job."""
        delegate(soap, alice, pki, "alice", delegation_id)
        reply = soap.call(DELEGATION_2, "getTerminationTime", alice, delegationID=delegation_id)
        assert reply.status.startswith("200"), reply.body
        reply = soap.call(WMPROXY, "jobRegister", alice, jdl=ECHO_JDL, delegationId=delegation_id)
        assert reply.status.startswith("200"), reply.body
        info = soap.call(WMPROXY, "getDelegatedProxyInfo", alice, delegationID=delegation_id)
        assert info.status.startswith("200"), info.body
        assert soap.call(DELEGATION_2, "destroy", alice, delegationID=delegation_id).status.startswith("200")

    @pytest.mark.parametrize("delegation_id", ["a/b", "..", "x" * 256, "a\u2028b"])
    def test_unusable_ids(self, soap: SoapApp, alice: Principal, delegation_id: str) -> None:
        reply = soap.call(DELEGATION_2, "getProxyReq", alice, delegationID=delegation_id)
        assert reply.status.startswith("500")
        assert reply.fault_detail.findtext("msg") == "invalid delegation id"

    def test_another_users_job_is_an_authorization_fault(self, soap: SoapApp, alice: Principal, bob: Principal,
                                                         pki: Pki) -> None:
        delegate(soap, alice, pki, "alice", "mine")
        job_id = soap.call(WMPROXY, "jobRegister", alice, jdl=ECHO_JDL, delegationId="mine").element.findtext(
            "jobIdStruct/id")
        for operation in ("getJobStatus", "jobStart", "jobCancel"):
            detail = assert_wmproxy_fault(soap.call(WMPROXY, operation, bob, jobId=job_id),
                                          "AuthorizationFault", operation, "1207")
            assert detail.findtext("Description") == "Authorization error: user not authorized"
        status = soap.call(WMPROXY, "getJobStatus", alice, jobId=job_id).element
        assert status.findtext("JobStatusStruct/status") == "Submitted"

    def test_unknown_job_is_a_job_unknown_fault(self, soap: SoapApp, alice: Principal) -> None:
        detail = assert_wmproxy_fault(soap.call(WMPROXY, "jobStart", alice, jobId=UNKNOWN_JOB),
                                      "JobUnknownFault", "jobStart", "1218")
        assert UNKNOWN_JOB in (detail.findtext("Description") or "")
        # getJobStatus declares no JobUnknownFault: the same code in a GenericFault
        assert_wmproxy_fault(soap.call(WMPROXY, "getJobStatus", alice, jobId=UNKNOWN_JOB),
                             "GenericFault", "getJobStatus", "1218")

    def test_register_without_delegation(self, soap: SoapApp, alice: Principal) -> None:
        reply = soap.call(WMPROXY, "jobRegister", alice, jdl=ECHO_JDL, delegationId="never")
        assert_wmproxy_fault(reply, "AuthorizationFault", "jobRegister", "1215")

    def test_bad_jdl_is_an_invalid_argument_fault(self, soap: SoapApp, alice: Principal, pki: Pki) -> None:
        delegate(soap, alice, pki, "alice", "jdl")
        reply = soap.call(WMPROXY, "jobRegister", alice, jdl="[ Executable = ; ]", delegationId="jdl")
        detail = assert_wmproxy_fault(reply, "InvalidArgumentFault", "jobRegister", "1219")
        assert (detail.findtext("Description") or "").startswith("Unable to parse JDL")

    def test_unknown_delegation_on_the_delegation_port(self, soap: SoapApp, alice: Principal) -> None:
        reply = soap.call(DELEGATION_2, "getTerminationTime", alice, delegationID="nothing-here")
        detail = reply.fault_detail
        assert reply.status.startswith("500")
        assert etree.QName(detail) == etree.QName(DELEGATION_2, "DelegationException")
        assert detail.findtext("msg") == "Client delegated proxy not found:  get termination time not allowed"


class TestTemplatesRegister:
    """A template's JDL, its executable filled in, registers, or the template is refused: node
    names equal after registration's sanitising, ignoring case, were given and then refused by
    jobRegister (1219 "Duplicated NodeName(Node_x)", "Dependency cycle between DAG nodes: A -> A")."""

    @staticmethod
    def _envelope(operation: str, inner: str) -> bytes:
        return (f'<e:Envelope xmlns:e="{SOAP_ENV}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                f'xmlns:ns="{WMPROXY}"><e:Body><ns:{operation}>{inner}<requirements>true</requirements>'
                f"<rank>0</rank></ns:{operation}></e:Body></e:Envelope>").encode()

    def _registers_or_is_refused(self, soap: SoapApp, alice: Principal, operation: str, inner: str) -> bool:
        """True when the template answered and its JDL registered; False when it was refused
        (InvalidArgumentFault 1225)."""
        reply = soap.request(self._envelope(operation, inner), alice)
        if not reply.status.startswith("200"):
            assert_wmproxy_fault(reply, "InvalidArgumentFault", operation, "1225")
            return False
        jdl = reply.element.findtext("jdl") or ""
        jdl = jdl.replace("<put executable path>", "/bin/echo") if "nodes" in jdl else (
            jdl.rstrip().removesuffix("]") + '; Executable = "/bin/echo" ]')
        registered = soap.call(WMPROXY, "jobRegister", alice, jdl=jdl, delegationId="t")
        assert registered.status.startswith("200"), registered.body
        return True

    @pytest.mark.parametrize(("values", "registers"), [
        (["X", "x"], False), (["a.b", "a_b"], False), (["a.b", "a_c"], True), (["X", "Y"], True)])
    def test_string_parametric(self, soap: SoapApp, alice: Principal, pki: Pki, values: list[str],
                               registers: bool) -> None:
        delegate(soap, alice, pki, "alice", "t")
        items = "".join(f"<Item>{value}</Item>" for value in values)
        assert self._registers_or_is_refused(soap, alice, "getStringParametricJobTemplate",
                                             f"<attributes><Item>Arguments</Item></attributes><param>{items}</param>"
                                             ) is registers

    @pytest.mark.parametrize(("parent", "child", "registers"), [("A", "a", False), ("A", "b", True)])
    def test_dag(self, soap: SoapApp, alice: Principal, pki: Pki, parent: str, child: str, registers: bool) -> None:
        delegate(soap, alice, pki, "alice", "t")
        inner = (f'<dependencies><name xsi:nil="true"/><childrenJob><name>{parent}</name>'
                 f"<childrenJob><name>{child}</name></childrenJob></childrenJob></dependencies>")
        assert self._registers_or_is_refused(soap, alice, "getDAGTemplate", inner) is registers
