"""putProxy of a new delegation id beyond ``[limits] max_delegations_per_user`` answers the fault
its operation declares: AuthorizationFault 1215 on the WMProxy port (which declares no
OperationNotAllowedFault for putProxy), DelegationException on the delegation ports; the
store's bound on both databases is in ``tests/store/test_delegations_bound.py``."""

from __future__ import annotations

import dataclasses

import pytest
from lxml import etree

from tests.conftest import Pki
from tests.support import SoapApp
from wmproxy.domain import Principal
from wmproxy.security.proxy import load_credential, sign_proxy_request
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, WMPROXY

MESSAGE = ("Unable to store client Proxy: the maximum number of stored delegations is reached (1 per user); "
           "destroy unused delegations or reuse a delegation id")


@pytest.fixture
def bounded(soap: SoapApp, monkeypatch: pytest.MonkeyPatch) -> SoapApp:
    rt = soap.rt
    limits = dataclasses.replace(rt.settings.limits, max_delegations_per_user=1)
    monkeypatch.setattr(rt, "settings", dataclasses.replace(rt.settings, limits=limits))
    return soap


def _put(soap: SoapApp, namespace: str, caller: Principal, pki: Pki, delegation_id: str) -> etree._Element | None:
    """getProxyReq and putProxy on the port of ``namespace``: the fault's detail, or None when stored."""
    reply = soap.call(namespace, "getProxyReq", caller, delegationID=delegation_id)
    assert reply.status.startswith("200"), reply.body
    csr = reply.element.findtext("request" if namespace == WMPROXY else "getProxyReqReturn")
    signed = sign_proxy_request(csr.encode(), load_credential(pki.users["alice"].proxy), lifetime=3600)
    reply = soap.call(namespace, "putProxy", caller, delegationID=delegation_id, proxy=signed.decode())
    if reply.status.startswith("200"):
        return None
    assert reply.status.startswith("500"), reply.status
    return reply.fault_detail


def test_the_wmproxy_port_answers_an_authorization_fault(bounded: SoapApp, alice: Principal, pki: Pki) -> None:
    assert _put(bounded, WMPROXY, alice, pki, "one") is None
    assert _put(bounded, WMPROXY, alice, pki, "one") is None  # a replacement
    detail = _put(bounded, WMPROXY, alice, pki, "two")
    assert detail is not None
    assert etree.QName(detail) == etree.QName(WMPROXY, "AuthorizationFault")
    assert (detail.findtext("ErrorCode"), detail.findtext("Description")) == ("1215", MESSAGE)


@pytest.mark.parametrize("namespace", [DELEGATION_1, DELEGATION_2])
def test_the_delegation_ports_answer_a_delegation_exception(
        bounded: SoapApp, alice: Principal, pki: Pki, namespace: str) -> None:
    assert _put(bounded, namespace, alice, pki, "one") is None
    detail = _put(bounded, namespace, alice, pki, "two")
    assert detail is not None
    assert etree.QName(detail) == etree.QName(namespace, "DelegationException")
    assert MESSAGE in [detail.findtext("msg"), detail.findtext("message")]
