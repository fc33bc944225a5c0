"""Odd client input at the SOAP edge: text that XML cannot carry or that would end a log line,
in what the edge answers and logs (faults.py, dispatch.py, convert.py), and a delegated chain
whose extensions cryptography cannot read (security/chain.py).

A fault message may quote the client: a ClassAd ``"\\001"`` in JobType or Type is U+0001 in the
message, a DN with U+0001 in an OpenSSL error. lxml refuses such a character ("All strings must be
XML compatible"): the fast path's fault builder raised, past its own except block and the
dispatcher, to gunicorn's HTML 500; through Spyne the same request was an untyped internal error.
The message is now written with a ``\\x01`` escape, and both paths answer the same typed fault.
"""

from __future__ import annotations

import logging
import re
from typing import ClassVar
from xml.sax.saxutils import escape

import pytest
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier
from lxml import etree

from tests.conftest import Pki
from tests.support import Reply, SoapApp, delegate_in_process, odd_proxy
from wmproxy.config import LimitsSettings
from wmproxy.domain import Principal
from wmproxy.errors import ProxyVerificationError
from wmproxy.security import delegation as security_delegation
from wmproxy.security.proxy import load_credential
from wmproxy.services import delegation
from wmproxy.soap import direct
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, SOAP_ENV, WMPROXY
from wmproxy.soap.request import check_request

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


def _request(namespace: str, operation: str, parts: dict[str, str], typed: str | None = None) -> bytes:
    """An rpc/literal request; the part named ``typed`` carries ``xsi:type="xsd:string"``, a shape
    the fast paths leave to Spyne."""
    typing = ' xsi:type="xsd:string"'
    inner = "".join(f"<{name}{typing if name == typed else ''}>{escape(value)}</{name}>"
                    for name, value in parts.items())
    return (f'<e:Envelope xmlns:e="{SOAP_ENV}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xmlns:xsd="http://www.w3.org/2001/XMLSchema"><e:Body><n:{operation} xmlns:n="{namespace}">{inner}'
            f"</n:{operation}></e:Body></e:Envelope>").encode()


def _fast(body: bytes, names: tuple[str, ...]) -> bool:
    """Whether the fast path takes ``body`` (its parts have the plain shape)."""
    return direct.string_parts(check_request(body, LimitsSettings()).root, names) is not None


def _wmproxy_fault(reply: Reply, kind: str, method: str, code: str) -> etree._Element:
    """HTTP 500, a SOAP Fault whose detail is ``ns1:kind`` with the BaseFaultType fields filled."""
    assert reply.status.startswith("500"), reply.status
    assert reply.headers["Content-Type"].startswith("text/xml"), reply.headers
    fault = reply.element
    assert fault.tag == f"{{{SOAP_ENV}}}Fault", reply.body
    assert (fault.findtext("faultcode") or "").partition(":")[2] == "Server"
    detail = reply.fault_detail
    assert etree.QName(detail) == etree.QName(WMPROXY, kind), reply.body
    assert [c.tag for c in detail] == ["methodName", "Timestamp", "ErrorCode", "Description", "FaultCause"]
    assert detail.findtext("methodName") == method
    assert TIMESTAMP.match(detail.findtext("Timestamp") or "")
    assert detail.findtext("ErrorCode") == code
    assert detail.findtext("Description") == fault.findtext("faultstring") == detail.findtext("FaultCause")
    return detail


def _without_timestamp(body: bytes) -> bytes:
    return re.sub(rb"<Timestamp>[^<]*</Timestamp>", b"<Timestamp/>", body)


class TestJdlValueInTheMessage:
    #: name → (JDL, fault kind, error code, description)
    CASES: ClassVar[dict[str, tuple[str, str, str, str]]] = {
        "JobType": ('[Executable = "/bin/echo"; JobType = "\\001";]', "InvalidArgumentFault", "1219",
                    "Attribute JobType has an unknown value: \\x01"),
        "Type": ('[Type = "\\001"; Executable = "/bin/echo";]', "GenericFault", "1220",
                 "Invalid Job Type: \\x01"),
    }

    @pytest.mark.parametrize("operation", ["jobRegister", "jobSubmit"])
    @pytest.mark.parametrize("case", list(CASES))
    def test_both_paths_answer_the_typed_fault_with_the_character_escaped(
            self, soap: SoapApp, alice: Principal, pki: Pki, operation: str, case: str) -> None:
        delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "d1")
        jdl, kind, code, description = self.CASES[case]
        parts = {"jdl": jdl, "delegationId": "d1"}
        fast, spyne = _request(WMPROXY, operation, parts), _request(WMPROXY, operation, parts, typed="delegationId")
        assert _fast(fast, tuple(parts)) and not _fast(spyne, tuple(parts))

        answers = [soap.request(body, alice) for body in (fast, spyne)]

        for reply in answers:
            detail = _wmproxy_fault(reply, kind, operation, code)
            assert detail.findtext("Description") == description
        assert _without_timestamp(answers[0].body) == _without_timestamp(answers[1].body)


class TestDelegationMessage:
    """A DN quoted in an OpenSSL error (chain.py's verification) may hold U+0001 too."""

    @pytest.mark.parametrize("namespace", [DELEGATION_1, DELEGATION_2, WMPROXY])
    def test_both_paths_answer_the_typed_fault_with_the_character_escaped(
            self, soap: SoapApp, alice: Principal, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
        def refuse(*args: object) -> None:
            raise ProxyVerificationError("certificate revoked (/C=XX/O=wmproxy-demo/OU=Users/CN=Alice/CN=a\x01b)")

        monkeypatch.setattr(delegation, "store_proxy", refuse)
        parts = {"delegationID": "x1", "proxy": "-----BEGIN CERTIFICATE-----"}
        fast = _request(namespace, "putProxy", parts)
        spyne = _request(namespace, "putProxy", parts, typed="delegationID")
        assert not _fast(spyne, tuple(parts))
        expected = "Proxy exception: certificate revoked (/C=XX/O=wmproxy-demo/OU=Users/CN=Alice/CN=a\\x01b)"

        answers = [soap.request(body, alice) for body in (fast, spyne)]

        for reply in answers:
            if namespace == WMPROXY:
                assert _wmproxy_fault(reply, "AuthorizationFault", "putProxy", "1212").findtext(
                    "Description") == expected
            else:
                assert reply.status.startswith("500") and reply.element.findtext("faultstring") == expected
                detail = reply.fault_detail
                assert etree.QName(detail) == etree.QName(namespace, "DelegationException")
                field = "message" if namespace == DELEGATION_1 else "msg"
                assert [c.tag for c in detail] == [field] and detail.findtext(field) == expected
        assert _without_timestamp(answers[0].body) == _without_timestamp(answers[1].body)


class TestDispatcherBackstop:
    def test_an_error_escaping_a_fast_path_handler_is_a_typed_internal_error(
            self, soap: SoapApp, alice: Principal, caplog: pytest.LogCaptureFixture) -> None:
        def broken(*args: object) -> bytes:
            raise ValueError("All strings must be XML compatible")

        soap.app.soap.direct[(WMPROXY, "jobRegister")] = broken
        with caplog.at_level(logging.INFO):
            reply = soap.request(_request(WMPROXY, "jobRegister", {"jdl": "[]", "delegationId": "d1"}), alice)

        detail = _wmproxy_fault(reply, "GenericFault", "jobRegister", "1201")
        assert (detail.findtext("Description") or "").startswith("Internal server error (error id ")
        assert b"XML compatible" not in reply.body
        access = [r.getMessage() for r in caplog.records if r.name == "wmproxy.access"]
        assert len(access) == 1 and "op=jobRegister" in access[0] and "outcome=GenericFault" in access[0]


class TestStoredProxyWithAControlCharacter:
    def test_put_proxy_refuses_it(self, soap: SoapApp, alice: Principal, pki: Pki) -> None:
        signer = load_credential(pki.users["alice"].proxy)
        csr = soap.call(DELEGATION_2, "getProxyReq", alice, delegationID="x1").element[0].text or ""

        reply = soap.call(WMPROXY, "putProxy", alice, delegationID="x1", proxy=odd_proxy(csr, signer, cn="ab\x01cd"))

        detail = _wmproxy_fault(reply, "AuthorizationFault", "putProxy", "1212")
        assert "the delegated proxy subject holds a control character" in (detail.findtext("Description") or "")
        assert "CN=ab\\x01cd" in (detail.findtext("Description") or "")

    def test_its_info_is_answered_with_the_character_escaped(
            self, soap: SoapApp, alice: Principal, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
        # stored by a version that did not refuse such a CN
        monkeypatch.setattr(security_delegation, "_unsafe", lambda value: False)
        signer = load_credential(pki.users["alice"].proxy)
        csr = soap.call(DELEGATION_2, "getProxyReq", alice, delegationID="x1").element[0].text or ""
        put = soap.call(DELEGATION_2, "putProxy", alice, delegationID="x1", proxy=odd_proxy(csr, signer, cn="ab\x01cd"))
        assert put.status.startswith("200"), put.body

        reply = soap.call(WMPROXY, "getDelegatedProxyInfo", alice, delegationID="x1")

        assert reply.status.startswith("200"), reply.body
        subject = reply.element.findtext(".//Subject") or ""
        assert subject.startswith(alice.dn) and subject.endswith("/CN=ab\\x01cd"), reply.body
        assert reply.element.findtext(".//Identity") == alice.dn


class TestLogInjection:
    """A client's text in a fault's log line: a forged second line before authentication."""

    def test_a_namespace_with_a_newline_stays_on_one_log_line(
            self, soap: SoapApp, alice: Principal, caplog: pytest.LogCaptureFixture) -> None:
        body = (f'<e:Envelope xmlns:e="{SOAP_ENV}"><e:Body><w:getVersion xmlns:w="urn:x&#10;2026-01-01 00:00:00 '
                f'ERROR wmproxy.security: authorization granted to /CN=root"/></e:Body></e:Envelope>').encode()
        with caplog.at_level(logging.INFO, logger="wmproxy.soap.faults"):
            reply = soap.request(body, None)
        assert reply.status.startswith("500")
        (line,) = [r.getMessage() for r in caplog.records if r.name == "wmproxy.soap.faults"]
        assert "\n" not in line and "urn:x\\x0a2026-01-01" in line

    def test_a_jdl_value_with_control_characters_stays_on_one_log_line(
            self, soap: SoapApp, alice: Principal, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
        delegate_in_process(soap.rt, alice, pki.users["alice"].proxy, "d1")
        jdl = '[Executable = "/bin/echo"; JobType = "x\\n2026-01-01 00:00:00 CRITICAL forged\\r\\033[2K\u2028";]'
        with caplog.at_level(logging.INFO, logger="wmproxy.soap.faults"):
            reply = soap.call(WMPROXY, "jobRegister", alice, jdl=jdl, delegationId="d1")
        # the fault itself keeps what XML carries: the client reads its own value back
        assert "x\n2026-01-01" in (reply.fault_detail.findtext("Description") or "")
        (line,) = [r.getMessage() for r in caplog.records if r.name == "wmproxy.soap.faults"]
        assert line.endswith("x\\x0a2026-01-01 00:00:00 CRITICAL forged\\x0d\\x1b[2K\\u2028"), line


class TestUnreadableExtension:
    """cryptography parses extensions lazily: a malformed keyUsage in the delegated chain was a
    ValueError of is_proxy (an internal error); it is the typed refusal of an unreadable chain."""

    @pytest.mark.parametrize("namespace", [DELEGATION_1, DELEGATION_2, WMPROXY])
    def test_put_proxy_refuses_it_on_both_paths(self, soap: SoapApp, alice: Principal, pki: Pki,
                                                namespace: str) -> None:
        signer = load_credential(pki.users["alice"].proxy)
        bad = x509.UnrecognizedExtension(ObjectIdentifier("2.5.29.15"), b"\x01\x02")
        answers = []
        for typed in (None, "delegationID"):
            csr = soap.call(DELEGATION_2, "getProxyReq", alice, delegationID="x1").element[0].text or ""
            parts = {"delegationID": "x1", "proxy": odd_proxy(csr, signer, extension=bad)}
            answers.append(soap.request(_request(namespace, "putProxy", parts, typed=typed), alice))
        expected = ("Proxy exception: the delegated credential is unreadable: unreadable PEM certificate: "
                    "unreadable extension or name: ")
        for reply in answers:
            if namespace == WMPROXY:
                text = _wmproxy_fault(reply, "AuthorizationFault", "putProxy", "1212").findtext("Description")
            else:
                assert reply.status.startswith("500")
                detail = reply.fault_detail
                assert etree.QName(detail) == etree.QName(namespace, "DelegationException"), reply.body
                text = detail[0].text
            assert (text or "").startswith(expected), reply.body
        assert _without_timestamp(answers[0].body) == _without_timestamp(answers[1].body)


class TestMalformedJobId:
    """A job id ``urlsplit`` cannot take (an unclosed or non-address ``[`` host, a port that is not
    one) is refused like any other bad id (``wmproxy-behaviour.md`` §1.5.3: 1225 "Provided Job Id
    not valid"); it was a ValueError, answered GenericFault 1201 "Internal server error" with a
    logged traceback."""

    #: operation → its parts besides jobId
    OPERATIONS: ClassVar[dict[str, dict[str, str]]] = {
        "getJDL": {"type": "ORIGINAL"}, "getJobStatus": {}, "jobCancel": {}, "jobStart": {},
        "getACLItems": {}, "getJobProxyInfo": {}, "getSandboxDestURI": {"protocol": "all"},
    }

    @pytest.mark.parametrize("job_id", ["https://[x/abc", "https://[::1/abc", "https://[foo]/abc",
                                        "https://x]/abc", "https://h:99999/abc", "https://h:port/abc"])
    def test_it_is_refused_like_another_bad_id(self, soap: SoapApp, alice: Principal, job_id: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
        for operation, parts in self.OPERATIONS.items():
            other = soap.call(WMPROXY, operation, alice, jobId="http://h:9000/abc", **parts)
            kind = etree.QName(other.fault_detail).localname
            _wmproxy_fault(other, kind, operation, "1225")  # a plainly bad id's refusal
            with caplog.at_level(logging.ERROR):
                reply = soap.call(WMPROXY, operation, alice, jobId=job_id, **parts)

            detail = _wmproxy_fault(reply, kind, operation, "1225")
            assert detail.findtext("Description") == f"Provided Job Id not valid: {job_id}", operation
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
