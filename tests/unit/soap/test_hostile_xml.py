"""The XML edge in-process (issue 10): whatever the request, a typed fault in one format, checked
before Spyne sees it (``wmproxy/soap/request.py``, ``dispatch.py``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import Pki
from tests.fuzz.support import expect_fault, store_footprint, tree_footprint, tried, typed_fault, wrapped
from tests.support import Reply, SoapApp, build_runtime, caller_from_environ, close_runtime
from wmproxy.config import LimitsSettings
from wmproxy.domain import Principal
from wmproxy.soap.app import WMProxyApplication
from wmproxy.soap.contract import operations_by_namespace
from wmproxy.soap.namespaces import DELEGATION_2, SOAP_ENV, WMPROXY

DECLARED = operations_by_namespace()[WMPROXY]


def envelope(inner: str, *, operation: str = "getJDL", namespace: str = WMPROXY, attributes: str = "",
             prolog: str = "") -> str:
    return (f'{prolog}<e:Envelope xmlns:e="{SOAP_ENV}"><e:Body><w:{operation} xmlns:w="{namespace}"{attributes}>'
            f"{inner}</w:{operation}></e:Body></e:Envelope>")


GET_JDL = "<jobId>https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA</jobId><type>ORIGINAL</type>"


def refused(reply: Reply, method: str, text: str, kind: str = "InvalidArgumentFault") -> etree._Element:
    return expect_fault(reply, kind, method, text, "xml")


def small_limits_app(root: Path, pki: Pki, template_db: Path, **limits: int) -> SoapApp:
    rt = build_runtime(root, pki, template_db)
    rt.settings = dataclasses.replace(rt.settings, limits=LimitsSettings(**limits))
    return SoapApp(WMProxyApplication(rt, authenticate=caller_from_environ), rt)


@pytest.fixture
def small(tmp_path: Path, pki: Pki, template_db: Path) -> Iterator[SoapApp]:
    app = small_limits_app(tmp_path / "small", pki, template_db, max_request_bytes=4096, max_xml_depth=8,
                           max_xml_elements=40, max_xml_attributes=4)
    yield app
    close_runtime(app.rt)


class TestDocumentRules:
    def test_processing_instruction_in_the_body(self, soap: SoapApp, alice: Principal) -> None:
        reply = soap.request(envelope("<?evil x?>" + GET_JDL).encode(), alice)
        refused(reply, "getJDL", "processing instructions")

    def test_processing_instruction_before_the_envelope(self, soap: SoapApp, alice: Principal) -> None:
        body = envelope(GET_JDL, prolog='<?xml version="1.0"?><?xml-stylesheet href="x.xsl"?>')
        refused(soap.request(body.encode(), alice), "", "processing instructions")

    def test_doctype_with_an_external_entity(self, soap: SoapApp, alice: Principal) -> None:
        body = envelope("<jobId>&x;</jobId><type>ORIGINAL</type>",
                        prolog='<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>')
        reply = soap.request(body.encode(), alice)
        refused(reply, "", "DTD")
        assert b"root:" not in reply.body

    def test_billion_laughs(self, soap: SoapApp, alice: Principal) -> None:
        entities = '<!ENTITY a "lol">' + "".join(
            f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
        body = envelope("<jobId>&j;</jobId><type>ORIGINAL</type>", prolog=f"<!DOCTYPE d [{entities}]>")
        refused(soap.request(body.encode(), alice), "", "Malformed SOAP request")

    @pytest.mark.parametrize("encoding", ["ISO-8859-1", "UTF-16", "UTF-16LE", "windows-1252"])
    def test_other_encodings_are_read(self, soap: SoapApp, alice: Principal, encoding: str) -> None:
        """The XML declaration (or BOM) names the encoding; the request is converted, not refused:
        the service sees the characters that were sent (here quoted back in the fault)."""
        text = f'<?xml version="1.0" encoding="{encoding}"?>' + envelope(
            "<jobId>caf\u00e9-\u00fc</jobId><type>ORIGINAL</type>")
        data = text.encode("utf-16" if encoding == "UTF-16" else encoding.replace("UTF-16LE", "utf-16-le"))
        detail = refused(soap.request(data, alice), "getJDL", "Provided Job Id not valid")
        assert "caf\u00e9-\u00fc" in (detail.findtext("Description") or "")

    def test_unknown_encoding(self, soap: SoapApp, alice: Principal) -> None:
        body = '<?xml version="1.0" encoding="x-no-such-charset"?>' + envelope(GET_JDL)
        refused(soap.request(body.encode(), alice), "", "encoding")

    def test_bytes_that_are_not_utf8(self, soap: SoapApp, alice: Principal) -> None:
        body = envelope(GET_JDL).encode().replace(b"ORIGINAL", b"ORIG\xff\xfeINAL")
        refused(soap.request(body, alice), "getJDL", "Malformed SOAP request")

    def test_comments_are_dropped(self, soap: SoapApp, alice: Principal) -> None:
        reply = soap.request(envelope("", operation="getVersion").replace("<e:Body>", "<e:Body><!-- c -->").encode(),
                             alice)
        assert reply.status.startswith("200"), reply.body

    @pytest.mark.parametrize("body", [b"", b"   ", b"\x00\x01", b"<a/>", b"<a>", b"<e:Envelope xmlns:e='urn:x'/>"])
    def test_not_a_soap_request(self, soap: SoapApp, alice: Principal, body: bytes) -> None:
        refused(soap.request(body, alice), "", "Malformed SOAP request")


class TestLimits:
    def test_100000_attributes_are_refused_at_the_operation_element(self, soap: SoapApp, alice: Principal) -> None:
        """The 108 s request of the issue: refused on the first element over the limit (no time asserted)."""
        attributes = "".join(f' a{i}="x"' for i in range(100_000))
        refused(soap.request(envelope(GET_JDL, attributes=attributes).encode(), alice), "getJDL",
                "more than 64 attributes")

    def test_namespace_declarations_count_as_attributes(self, small: SoapApp, alice: Principal) -> None:
        declarations = "".join(f' xmlns:n{i}="urn:{i}"' for i in range(5))
        refused(small.request(envelope(GET_JDL, attributes=declarations).encode(), alice), "getJDL",
                "more than 4 attributes")

    def test_attributes_up_to_the_limit_pass(self, small: SoapApp, alice: Principal) -> None:
        reply = small.request(envelope(GET_JDL, attributes=' a="1" b="2" c="3"').encode(), alice)
        detail = typed_fault(reply.status, reply.body, DECLARED)
        assert etree.QName(detail).localname == "JobUnknownFault"  # the edge let it through

    def test_depth(self, small: SoapApp, alice: Principal) -> None:
        refused(small.request(envelope("<x>" * 8 + "</x>" * 8).encode(), alice), "getJDL", "nested more than 8")

    def test_elements(self, small: SoapApp, alice: Principal) -> None:
        refused(small.request(envelope("<x/>" * 40).encode(), alice), "getJDL", "more than 40 elements")

    def test_size(self, small: SoapApp, alice: Principal) -> None:
        body = envelope("<jobId>" + "x" * 5000 + "</jobId>").encode()
        refused(small.request(body, alice), "", "larger than 4096 bytes")

    def test_chunked_request_over_the_size(self, small: SoapApp, alice: Principal) -> None:
        body = envelope("<jobId>" + "x" * 5000 + "</jobId>").encode()
        reply = wrapped(small, CONTENT_LENGTH="").request(body, alice)
        refused(reply, "", "larger than 4096 bytes")

    @pytest.mark.parametrize("length", ["-1", "abc", "1e3"])
    def test_bad_content_length(self, soap: SoapApp, alice: Principal, length: str) -> None:
        reply = wrapped(soap, CONTENT_LENGTH=length).request(envelope(GET_JDL).encode(), alice)
        refused(reply, "", "Content-Length")

    def test_a_jdl_over_2_mb_reaches_the_service(self, soap: SoapApp, alice: Principal) -> None:
        """Spyne's own 2 MB limit used to answer an untyped "Request too long"."""
        jdl = '[ Executable = "/bin/echo"; Arguments = "' + "x" * (3 * 1024 * 1024) + '"; ]'
        reply = soap.call(WMPROXY, "jobRegister", alice, jdl=jdl, delegationId="none-here")
        detail = refused(reply, "jobRegister", "delegated Proxy", kind="AuthorizationFault")
        assert detail.findtext("ErrorCode") == "1215"


class TestWrongTypes:
    @pytest.mark.parametrize("value", ["abc", "1e99", "1.5", "0x10", " "])
    def test_not_an_int(self, soap: SoapApp, alice: Principal, value: str) -> None:
        reply = soap.call(WMPROXY, "getCollectionTemplate", alice, jobNumber=value, requirements="true", rank="0")
        refused(reply, "getCollectionTemplate", "Invalid Argument")

    @pytest.mark.parametrize("value", ["99999999999999999999999999", "10001"])
    def test_an_int_too_large_to_be_a_template(self, soap: SoapApp, alice: Principal, value: str) -> None:
        """10**26 nodes used to exhaust the worker's memory."""
        reply = soap.call(WMPROXY, "getCollectionTemplate", alice, jobNumber=value, requirements="true", rank="0")
        refused(reply, "getCollectionTemplate", "at most 10000")

    def test_wrong_type_on_an_operation_without_invalid_argument_fault(self, soap: SoapApp, alice: Principal) -> None:
        """putProxy declares no InvalidArgumentFault: the declared GenericFault, same code."""
        inner = "<delegationID>a</delegationID><delegationID>b</delegationID><proxy>p</proxy>"
        reply = soap.request(envelope(inner, operation="putProxy").encode(), alice)
        detail = refused(reply, "putProxy", "Invalid Argument", kind="GenericFault")
        assert detail.findtext("ErrorCode") == "1225"

    def test_delegation_port_gets_a_delegation_exception(self, soap: SoapApp, alice: Principal) -> None:
        inner = "<delegationID>a</delegationID><delegationID>b</delegationID><proxy>p</proxy>"
        reply = soap.request(envelope(inner, operation="putProxy", namespace=DELEGATION_2).encode(), alice)
        tried("xml")
        detail = typed_fault(reply.status, reply.body)
        assert etree.QName(detail) == etree.QName(DELEGATION_2, "DelegationException")
        assert (detail.findtext("msg") or "").startswith("Invalid Argument")


class TestNothingWritten:
    def test_refused_registrations_leave_no_row_and_no_file(self, soap: SoapApp, alice: Principal) -> None:
        before = store_footprint(soap.rt), tree_footprint(Path(soap.rt.settings.sandbox.root))
        jdl = '<jdl>[Executable="/bin/true"]</jdl><delegationId>x</delegationId>'
        bodies = [
            envelope(jdl + "<?x?>", operation="jobRegister"),
            envelope(jdl + "<x>" * 70 + "</x>" * 70, operation="jobRegister"),
            envelope(jdl, operation="jobRegister", attributes="".join(f' a{i}="1"' for i in range(65))),
            "<!DOCTYPE x>" + envelope(jdl, operation="jobRegister"),
        ]
        for body in bodies:
            reply = soap.request(body.encode(), alice)
            refused(reply, "jobRegister" if "DOCTYPE" not in body else "", "Malformed SOAP request")
        assert (store_footprint(soap.rt), tree_footprint(Path(soap.rt.settings.sandbox.root))) == before
