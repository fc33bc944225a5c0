"""getProxyReq and putProxy served without Spyne (``wmproxy.soap.direct_delegation``) answer
byte for byte what Spyne answers: the reply writer against Spyne's own serialiser, and whole
requests (plain ones, which take the direct path, and every other shape, which Spyne serves)
through both paths of one application, on the delegation-1, delegation-2 and WMProxy ports."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from tests.conftest import Pki
from tests.support import Reply, SoapApp, bytes_or_refusal
from wmproxy.domain import Principal
from wmproxy.security.proxy import load_credential, sign_proxy_request
from wmproxy.soap import direct_delegation
from wmproxy.soap.dispatch import SoapDispatcher
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, SOAP_ENV, WMPROXY
from wmproxy.store.schema import Delegation

NAMESPACES = [DELEGATION_1, DELEGATION_2, WMPROXY]
#: What differs between two answers to the same request: a new CSR, the time, an error id.
_VARYING = re.compile(rb"<(getProxyReqReturn|request|Timestamp)>[^<]*</\1>")
_ERROR_ID = re.compile(rb"error id [0-9a-f]{12}")
_CSR = "-----BEGIN CERTIFICATE REQUEST-----\nMIIC+/=\n-----END CERTIFICATE REQUEST-----\n"

_DISPATCHER = SoapDispatcher()


class TestReplyWriter:
    @pytest.mark.parametrize("namespace", NAMESPACES)
    @pytest.mark.parametrize("value", [_CSR, "", "a\r\nb", "<&>\"' \u00e9\U0001f600 ]]>", None])
    def test_get_proxy_req_bytes_are_spynes(self, namespace: str, value: str | None) -> None:
        reply = direct_delegation.StringReply(_DISPATCHER.ports[namespace], "getProxyReq")
        assert reply(value) == reply.spyne(value)
        if value == _CSR:
            assert value.encode() in reply(value)  # the kept bytes around the value, not Spyne

    @pytest.mark.parametrize("namespace", NAMESPACES)
    def test_put_proxy_bytes_are_spynes(self, namespace: str) -> None:
        reply = direct_delegation.StringReply(_DISPATCHER.ports[namespace], "putProxy")
        assert reply(None) == reply.spyne(None)
        assert reply(None).endswith(b"<tns:putProxyResponse/></soap11env:Body></soap11env:Envelope>")

    def test_a_value_lxml_refuses_fails_as_in_spyne(self) -> None:
        reply = direct_delegation.StringReply(_DISPATCHER.ports[DELEGATION_2], "getProxyReq")
        with pytest.raises(ValueError, match="XML compatible"):
            reply("bad\x01value")


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.one_of(st.text(alphabet="AZaz09+/= \n-\r<", max_size=60), st.text(max_size=20)))
def test_kept_bytes_write_what_spyne_writes(value: str) -> None:
    reply = direct_delegation.StringReply(_DISPATCHER.ports[DELEGATION_2], "getProxyReq")
    assert bytes_or_refusal(reply, value) == bytes_or_refusal(reply.spyne, value)


def test_the_direct_operations() -> None:
    assert set(_DISPATCHER.direct) == {(WMPROXY, "jobRegister"), (WMPROXY, "jobSubmit")} | {
        (namespace, operation) for namespace in NAMESPACES for operation in ("getProxyReq", "putProxy")}


def _envelope(namespace: str, operation: str, inner: str, header: str = "", attributes: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><e:Envelope xmlns:e="{SOAP_ENV}" xmlns:n="{namespace}" '
            f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">{header}<e:Body>'
            f"<n:{operation}{attributes}>{inner}</n:{operation}></e:Body></e:Envelope>").encode()


#: getProxyReq: name → (operation element's content, header, attributes of the operation, served directly)
GET_SHAPES: dict[str, tuple[str, str, str, bool]] = {
    "plain": ("<delegationID>d9</delegationID>", "", "", True),
    "no part (the default id)": ("", "", "", True),
    "empty part (the default id)": ("<delegationID/>", "", "", True),
    "whitespace around the part": ("\n  <delegationID>d9</delegationID>\n", "", "", True),
    "an unusable id": ("<delegationID>a/b</delegationID>", "", "", True),
    "a Header": ("<delegationID>d9</delegationID>", "<e:Header/>", "", False),
    "a qualified part": ("<n:delegationID>d9</n:delegationID>", "", "", False),
    "a nil part": ('<delegationID xsi:nil="true"/>', "", "", False),
    "the part twice": ("<delegationID>d9</delegationID><delegationID>x</delegationID>", "", "", False),
    "an unknown part": ("<delegationID>d9</delegationID><x>1</x>", "", "", False),
    "an attribute on the operation": ("<delegationID>d9</delegationID>", "", ' a="1"', False),
}

#: putProxy: name → (content with PROXY for the signed proxy, the id the request was made for,
#: header, attributes of the operation, served directly)
PUT_SHAPES: dict[str, tuple[str, str, str, str, bool]] = {
    "plain": ("<delegationID>d9</delegationID><proxy>PROXY</proxy>", "d9", "", "", True),
    "parts swapped": ("<proxy>PROXY</proxy><delegationID>d9</delegationID>", "d9", "", "", True),
    "CDATA and a comment": ("<delegationID>d9</delegationID><!-- c --><proxy><![CDATA[PROXY]]></proxy>", "d9", "", "",
                            True),
    "no delegationID (the default id)": ("<proxy>PROXY</proxy>", "", "", "", True),
    "empty delegationID (the default id)": ("<delegationID/><proxy>PROXY</proxy>", "", "", "", True),
    "no proxy": ("<delegationID>d9</delegationID>", "d9", "", "", True),
    "empty proxy": ("<delegationID>d9</delegationID><proxy/>", "d9", "", "", True),
    "not a proxy": ("<delegationID>d9</delegationID><proxy>-----BEGIN CERTIFICATE-----</proxy>", "d9", "", "",
                    True),
    "no pending request": ("<delegationID>other</delegationID><proxy>PROXY</proxy>", "d9", "", "", True),
    "an unusable id": ("<delegationID>a/b</delegationID><proxy>PROXY</proxy>", "d9", "", "", True),
    "a Header": ("<delegationID>d9</delegationID><proxy>PROXY</proxy>", "d9", "<e:Header/>", "", False),
    "qualified parts": ("<n:delegationID>d9</n:delegationID><n:proxy>PROXY</n:proxy>", "d9", "", "", False),
    "a nil proxy": ('<delegationID>d9</delegationID><proxy xsi:nil="true"/>', "d9", "", "", False),
    "the id twice": ("<delegationID>d9</delegationID><delegationID>d9</delegationID><proxy>PROXY</proxy>", "d9", "",
                     "", False),
    "an element in the proxy": ("<delegationID>d9</delegationID><proxy>PROXY<b/></proxy>", "d9", "", "", False),
    "an attribute on the operation": ("<delegationID>d9</delegationID><proxy>PROXY</proxy>", "d9", "", ' a="1"',
                                      False),
}


def _spied(soap: SoapApp, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The namespaces of the requests the Spyne ports serve (lean loop), appended as they come."""
    served: list[str] = []
    for namespace, port in soap.app.soap.ports.items():
        def serve(environ: dict[str, Any], start_response: Callable[..., Any], _port: Any = port,
                  _namespace: str = namespace) -> list[bytes]:
            served.append(_namespace)
            return type(_port).serve(_port, environ, start_response)

        monkeypatch.setattr(port, "serve", serve)
    return served


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_get_proxy_req_both_paths_answer_alike(soap: SoapApp, alice: Principal, namespace: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    served = _spied(soap, monkeypatch)
    dispatcher = soap.app.soap
    statuses = set()
    for name, (inner, header, attributes, plain) in GET_SHAPES.items():
        body = _envelope(namespace, "getProxyReq", inner, header, attributes)
        dispatcher.lean = False
        reference = _masked(soap.request(body, alice))
        dispatcher.lean = True
        served.clear()
        answer = _masked(soap.request(body, alice))
        assert answer == reference, (name, answer, reference)
        assert served == ([] if plain else [namespace]), name
        statuses.add(reference[0][:3])
    assert statuses == {"200", "500"}


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_put_proxy_both_paths_answer_alike(soap: SoapApp, alice: Principal, pki: Pki, namespace: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    served = _spied(soap, monkeypatch)
    dispatcher = soap.app.soap
    signer = load_credential(pki.users["alice"].proxy)
    statuses = set()

    def put(inner: str, requested: str, header: str, attributes: str) -> tuple[str, dict[str, str], bytes]:
        # Each putProxy gets a request of its own, made on the same port (always through Spyne).
        lean = dispatcher.lean
        dispatcher.lean = False
        try:
            csr = soap.request(_envelope(namespace, "getProxyReq", f"<delegationID>{requested}</delegationID>"),
                               alice).element[0].text or ""
        finally:
            dispatcher.lean = lean
        signed = sign_proxy_request(csr.encode(), signer, lifetime=3 * 3600).decode()
        served.clear()
        return _masked(soap.request(_envelope(namespace, "putProxy", inner.replace("PROXY", signed), header,
                                              attributes), alice))

    for name, (inner, requested, header, attributes, plain) in PUT_SHAPES.items():
        dispatcher.lean = False
        reference = put(inner, requested, header, attributes)
        dispatcher.lean = True
        answer = put(inner, requested, header, attributes)
        assert answer == reference, (name, answer, reference)
        assert served == ([] if plain else [namespace]), name
        statuses.add(reference[0][:3])
    assert statuses == {"200", "500"}


def test_a_proxy_put_directly_is_stored(soap: SoapApp, alice: Principal, pki: Pki) -> None:
    """The direct path calls the same service: the delegation it answers is there, for its DN."""
    reply = soap.call(DELEGATION_2, "getProxyReq", alice, delegationID="stored")
    assert reply.status.startswith("200"), reply.body
    csr = reply.element.findtext("getProxyReqReturn") or ""
    signed = sign_proxy_request(csr.encode(), load_credential(pki.users["alice"].proxy), lifetime=3 * 3600)
    reply = soap.call(DELEGATION_2, "putProxy", alice, delegationID="stored", proxy=signed.decode())
    assert reply.status.startswith("200"), reply.body
    assert etree.QName(reply.element) == etree.QName(DELEGATION_2, "putProxyResponse")
    with soap.rt.uow() as uow:
        row = uow.session.query(Delegation).filter_by(owner_dn=alice.dn, delegation_id="stored").one_or_none()
        assert row is not None and row.sealed_proxy


def _masked(reply: Reply) -> tuple[str, dict[str, str], bytes]:
    body = _ERROR_ID.sub(b"error id X", _VARYING.sub(lambda match: b"<" + match.group(1) + b"/>", reply.body))
    headers = dict(reply.headers)
    headers["Content-Length"] = "masked"  # a CSR's length varies with its key by a byte or two
    return reply.status, headers, body
