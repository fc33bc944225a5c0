"""SOAP requests while the database cannot serve (``wmproxy.soap.faults``): ServerOverloadedFault
1228 "Service temporarily unavailable", which a client may retry, not GenericFault 1201
"Internal server error ... contact the service administrator" with a traceback per request.

The outage is another connection holding what the request needs past the runtime's lock
patience (``tests.store.worker_support``: SQLite's write lock, a PostgreSQL row lock), the
driver's own timeout error ("database is locked", "canceling statement due to lock timeout").
"""

from __future__ import annotations

import logging

import pytest
from lxml import etree

from tests.store.conftest import DELEGATION
from tests.store.worker_support import database_held, impatient
from tests.support import ECHO_JDL, Reply, SoapApp, caller_from_environ
from wmproxy.domain import Principal
from wmproxy.services.runtime import Runtime
from wmproxy.soap.app import WMProxyApplication
from wmproxy.soap.faults import DATABASE_UNAVAILABLE
from wmproxy.soap.namespaces import DELEGATION_2, WMPROXY


@pytest.fixture
def soap(rt: Runtime) -> SoapApp:
    return SoapApp(WMProxyApplication(rt, authenticate=caller_from_environ), rt)


def _registered(soap: SoapApp, alice: Principal) -> str:
    reply = soap.call(WMPROXY, "jobRegister", alice, jdl=ECHO_JDL, delegationId=DELEGATION)
    assert reply.status.startswith("200"), reply.body
    return reply.element.findtext(".//jobIdStruct/id") or ""


def _overloaded(reply: Reply, kind: str, method: str) -> None:
    assert reply.status.startswith("500"), reply.body
    detail = reply.fault_detail
    assert etree.QName(detail) == etree.QName(WMPROXY, kind), reply.body
    assert detail.findtext("methodName") == method and detail.findtext("ErrorCode") == "1228", reply.body
    assert detail.findtext("Description") == DATABASE_UNAVAILABLE
    assert DATABASE_UNAVAILABLE.startswith("Service temporarily unavailable: ")


def test_requests_while_the_database_is_held_are_told_to_retry(
        soap: SoapApp, rt: Runtime, alice: Principal, caplog: pytest.LogCaptureFixture) -> None:
    job_id = _registered(soap, alice)
    with impatient(rt), database_held(rt, job_id), caplog.at_level(logging.WARNING):
        cancel = soap.call(WMPROXY, "jobCancel", alice, jobId=job_id)
        start = soap.call(WMPROXY, "jobStart", alice, jobId=job_id)

    _overloaded(cancel, "ServerOverloadedFault", "jobCancel")
    _overloaded(start, "ServerOverloadedFault", "jobStart")
    assert "Internal server error" not in caplog.text and "Traceback" not in caplog.text
    assert "jobCancel: the database did not answer (OperationalError: " in caplog.text
    assert soap.call(WMPROXY, "jobCancel", alice, jobId=job_id).status.startswith("200")  # the outage is over


@pytest.mark.sqlite_only  # on PostgreSQL the row lock holds back what touches that row only (above)
def test_a_registration_and_a_delegation_while_the_database_is_held(
        soap: SoapApp, rt: Runtime, alice: Principal) -> None:
    job_id = _registered(soap, alice)
    with impatient(rt), database_held(rt, job_id):
        register = soap.call(WMPROXY, "jobRegister", alice, jdl=ECHO_JDL, delegationId=DELEGATION)
        request = soap.call(DELEGATION_2, "getNewProxyReq", alice)

    _overloaded(register, "ServerOverloadedFault", "jobRegister")
    assert request.status.startswith("500") and b"its database did not answer" in request.body, request.body
