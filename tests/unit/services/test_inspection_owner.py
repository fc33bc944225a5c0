"""Live inspection is the job owner's alone (§6.4: an ACL entry grants read access only).

Read access sufficed to ask (``inspection.ask``), and ``cat`` is on the default allow-list: an
ACL reader ran ``cat user.proxy`` in the job's work dir and got the owner's delegated proxy,
private key included. An ACL reader now gets an AuthorizationFault naming the rule and keeps
what read access gives elsewhere (status, ACL); a stranger gets the usual "user not
authorized"; a reader's request asked before the fix is never handed to the job's agent and
its result is not shown to the reader.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

import pytest
import sqlalchemy as sa
from lxml import etree

from tests.conftest import Pki
from tests.support import (
    BASE_FAULT_FIELDS,
    SoapApp,
    principal_of,
)
from tests.unit.services.inspection_support import running
from wmproxy.domain import Principal
from wmproxy.errors import AuthorizationError
from wmproxy.services import inspection, jobs
from wmproxy.services.acl import add_acl_items, get_acl_items
from wmproxy.services.inspection import OWNER_ONLY
from wmproxy.services.runtime import Runtime
from wmproxy.soap.namespaces import INSPECTION, SOAP_ENV
from wmproxy.store.inspections import FAILED, InspectionRequest


@pytest.fixture
def job(rt: Runtime, alice: Principal, bob: Principal, delegated: str) -> str:
    """Alice's running job, bob granted read access with addACLItems."""
    job_id = running(rt, alice, delegated)
    add_acl_items(rt, alice, job_id, [bob.dn])
    return job_id


def test_an_acl_reader_cannot_inspect_the_job(rt: Runtime, bob: Principal, job: str) -> None:
    with pytest.raises(AuthorizationError) as info:
        inspection.ask(rt, bob, job, ["cat", "user.proxy"])
    assert info.value.message == OWNER_ONLY
    with rt.uow() as uow:  # nothing asked, nothing recorded
        assert uow.session.scalars(sa.select(InspectionRequest)).all() == []


def test_the_acl_reader_keeps_read_access(rt: Runtime, alice: Principal, bob: Principal, job: str) -> None:
    assert jobs.job_status(rt, bob, job).state == "Running"
    assert get_acl_items(rt, bob, job) == [alice.dn, bob.dn]


def test_a_stranger_gets_the_usual_refusal(rt: Runtime, alice: Principal, delegated: str, pki: Pki) -> None:
    job_id = running(rt, alice, delegated)
    with pytest.raises(AuthorizationError, match=r"^Authorization error: user not authorized$"):
        inspection.ask(rt, principal_of(pki, "bob"), job_id, ["ps"])


def test_the_owner_still_inspects(rt: Runtime, alice: Principal, job: str) -> None:
    request_id = inspection.ask(rt, alice, job, ["cat", "out.log"])
    task = inspection.agent_next(rt, alice, job, inspection.agent_token(rt.settings, job, attempt=0), 0)
    assert task is not None and (task.request_id, task.argv) == (request_id, ["cat", "out.log"])
    assert inspection.result(rt, alice, request_id, 0).state == "running"


def test_a_readers_request_asked_before_the_fix_is_never_run_nor_shown(
        rt: Runtime, alice: Principal, bob: Principal, job: str) -> None:
    theirs = inspection.ask(rt, alice, job, ["ps"])  # alice's own request, asked later
    with rt.uow() as uow:  # as a version that let readers ask stored it
        request = uow.session.get(InspectionRequest, theirs)
        assert request is not None
        request.requester_dn = bob.dn
        request.asked_at = request.asked_at.replace(year=request.asked_at.year - 1)
    own = inspection.ask(rt, alice, job, ["ls"])
    task = inspection.agent_next(rt, alice, job, inspection.agent_token(rt.settings, job, attempt=0), 0)
    assert task is not None and task.request_id == own  # bob's, older, is skipped
    with rt.uow() as uow:
        failed = uow.session.get(InspectionRequest, theirs)
        assert failed is not None and (failed.state, failed.message) == (FAILED, OWNER_ONLY)
    with pytest.raises(AuthorizationError) as info:
        inspection.result(rt, bob, theirs, 0)
    assert info.value.message == OWNER_ONLY


# --- what the SOAP client sees ------------------------------------------------------------------


def inspect_job(soap: SoapApp, caller: Principal, job_id: str, *words: str) -> etree._Element:
    command = "".join(f"<word>{escape(word)}</word>" for word in words)
    envelope = (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns:i="{INSPECTION}"><SOAP-ENV:Body>'
                f"<i:inspectJob><jobId>{escape(job_id)}</jobId><command>{command}</command>"
                "<timeLimit>0</timeLimit></i:inspectJob></SOAP-ENV:Body></SOAP-ENV:Envelope>")
    reply = soap.request(envelope.encode(), caller)
    assert reply.status.startswith("500"), reply.body[:400]
    return reply.fault_detail


def test_the_acl_reader_gets_an_authorization_fault(soap: SoapApp, alice: Principal, bob: Principal) -> None:
    job_id = running(soap.rt, alice, "unit")
    add_acl_items(soap.rt, alice, job_id, [bob.dn])
    detail = inspect_job(soap, bob, job_id, "cat", "user.proxy")
    assert etree.QName(detail).localname == "AuthorizationFault", etree.tostring(detail)
    assert [child.tag for child in detail][:4] == BASE_FAULT_FIELDS[:4]
    assert detail.findtext("methodName") == "inspectJob"
    assert detail.findtext("Description") == OWNER_ONLY


def test_a_command_with_a_newline_is_logged_on_one_line(rt: Runtime, alice: Principal, job: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    # the command's text went into the service log as it was: a newline in an argument forged a line
    with caplog.at_level("INFO", logger="wmproxy.services.inspection"):
        inspection.ask(rt, alice, job, ["ls", "x\n2026-01-01 00:00:00 ERROR wmproxy.security: forged"])
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("inspection ")]
    assert "\n" not in line and "\\x0a2026-01-01" in line
