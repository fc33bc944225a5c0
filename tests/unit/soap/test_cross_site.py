"""Cross-site request forgery at the SOAP endpoint (``wmproxy.soap.request.check_media_type``).

The endpoint authenticates by the TLS client certificate, which a browser presents on its own.
A web page a grid user visits could make the browser post a SOAP request without asking the
server first (a CORS "simple request": ``text/plain``, a form's types, or no ``Content-Type``):
a form with ``enctype="text/plain"`` whose one field is named ``<Envelope>...</Envelope><!--``
and valued ``-->`` sends a well-formed envelope (the ``=`` and line end fall in a comment). The
service answered it as the visitor: addACLItems, jobCancel, jobSubmit with the visitor's
delegation. A SOAP request is ``text/xml``, which a browser sends across sites only after a CORS
preflight that this service never answers.
"""

from __future__ import annotations

import pytest
from lxml import etree

from tests.conftest import Pki
from tests.support import Reply, SoapApp, delegate_in_process
from wmproxy.domain import Principal
from wmproxy.soap.namespaces import DELEGATION_2, SOAP_ENV, WMPROXY

JDL = '[ Executable = "/bin/true"; ]'


def _form_post(operation: str, parts: str, namespace: str = WMPROXY) -> bytes:
    """The body a text/plain form sends: ``<name>=<value>\\r\\n``, the envelope in the name."""
    name = (f'<e:Envelope xmlns:e="{SOAP_ENV}"><e:Body><w:{operation} xmlns:w="{namespace}">{parts}'
            f"</w:{operation}></e:Body></e:Envelope><!--")
    return f"{name}=-->\r\n".encode()


def _refused(reply: Reply, method: str) -> str:
    """The Description of the InvalidArgumentFault 1225 that ``reply`` is (BaseFaultType filled)."""
    assert reply.status.startswith("500"), reply.body
    detail = reply.fault_detail
    assert etree.QName(detail) == etree.QName(WMPROXY, "InvalidArgumentFault"), reply.body
    assert [c.tag for c in detail] == ["methodName", "Timestamp", "ErrorCode", "Description", "FaultCause"]
    assert detail.findtext("methodName") == method and detail.findtext("ErrorCode") == "1225"
    return detail.findtext("Description") or ""


@pytest.fixture
def registered(soap: SoapApp, alice: Principal, pki: Pki) -> str:
    delegation_id = delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "d")
    reply = soap.call(WMPROXY, "jobRegister", alice, jdl=JDL, delegationId=delegation_id)
    assert reply.status.startswith("200"), reply.body
    return reply.element.findtext(".//jobIdStruct/id") or ""


def _acl(soap: SoapApp, owner: Principal, job_id: str) -> list[str]:
    reply = soap.call(WMPROXY, "getACLItems", owner, jobId=job_id)
    assert reply.status.startswith("200"), reply.body
    return [item.text or "" for item in reply.element.iter("Item")]


class TestCrossSiteRequests:
    @pytest.mark.parametrize("content_type", [
        "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x", None,
    ])
    def test_a_request_a_browser_sends_across_sites_unasked_changes_nothing(
            self, soap: SoapApp, alice: Principal, bob: Principal, registered: str, content_type: str | None) -> None:
        before = _acl(soap, alice, registered)
        body = _form_post("addACLItems", f"<jobId>{registered}</jobId><items><Item>{bob.dn}</Item></items>")

        reply = soap.request(body, alice, content_type=content_type)

        description = _refused(reply, "addACLItems")
        assert description.startswith("Malformed SOAP request: Content-Type") and "text/xml" in description
        assert _acl(soap, alice, registered) == before
        cancel = soap.request(_form_post("jobCancel", f"<jobId>{registered}</jobId>"), alice, content_type=content_type)
        _refused(cancel, "jobCancel")
        status = soap.call(WMPROXY, "getJobStatus", alice, jobId=registered)
        assert status.element.findtext(".//status") == "Submitted", status.body

    def test_a_delegation_port_request_is_refused_too(self, soap: SoapApp, alice: Principal) -> None:
        reply = soap.request(_form_post("getNewProxyReq", "", DELEGATION_2), alice, content_type="text/plain")

        assert reply.status.startswith("500"), reply.body
        assert "Content-Type 'text/plain'" in reply.body.decode()

    @pytest.mark.parametrize("content_type", ["text/xml", "text/xml; charset=utf-8", "TEXT/XML;charset=UTF-8",
                                              "application/soap+xml; charset=utf-8"])
    def test_soap_clients_media_types_are_served(self, soap: SoapApp, alice: Principal, bob: Principal,
                                                  registered: str, content_type: str) -> None:
        body = _form_post("addACLItems", f"<jobId>{registered}</jobId><items><Item>{bob.dn}</Item></items>")

        reply = soap.request(body, alice, content_type=content_type)

        assert reply.status.startswith("200"), reply.body
        assert bob.dn in _acl(soap, alice, registered)
