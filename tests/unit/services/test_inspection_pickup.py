"""A pending request is handed to the job's agent only if it could still be asked now (a
red-team review of live inspection, M2).

``agent_next`` took any pending request: the pickup timeout was enforced only when the user
polled (``result``), and neither ``mode`` nor the allow-list was checked again. A request asked
50 minutes before, which nobody polled, still ran when the agent appeared (P1); a site that set
``mode = off`` still had a queued ``sh -c 'id; rm -rf ~'`` handed out (P2), and taking ``cat``
off the allow-list did not stop a queued ``cat user.proxy`` (P2b). Each now fails, with the
reason, and is not handed out; with ``mode = off`` the agent is told to stop (410).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

import pytest

from tests.unit.services.inspection_support import running
from wmproxy.config import InspectionSettings
from wmproxy.domain import Principal
from wmproxy.errors import OperationNotAllowedError
from wmproxy.inspection_http import TOKEN_HEADER, InspectionAgentApp
from wmproxy.services import inspection
from wmproxy.services.runtime import Runtime
from wmproxy.store.inspections import FAILED, PENDING, RUNNING, InspectionRequest


def limits(rt: Runtime, **inspect: object) -> None:
    rt.settings = dataclasses.replace(rt.settings, inspection=InspectionSettings(**inspect))  # type: ignore[arg-type]


def token(rt: Runtime, job_id: str) -> str:
    return inspection.agent_token(rt.settings, job_id, attempt=0)


def stored(rt: Runtime, request_id: str) -> tuple[str, str | None]:
    with rt.uow() as uow:
        request = uow.session.get(InspectionRequest, request_id)
        assert request is not None
        return request.state, request.message


def test_a_request_pending_past_the_pickup_timeout_fails_and_is_not_handed_out(
        rt: Runtime, alice: Principal, delegated: str) -> None:
    job_id = running(rt, alice, delegated)
    stale = inspection.ask(rt, alice, job_id, ["ps"])
    with rt.uow() as uow:  # asked 50 minutes ago; nobody asked for its result since
        request = uow.session.get(InspectionRequest, stale)
        assert request is not None
        request.asked_at -= dt.timedelta(seconds=3000)
    assert inspection.agent_next(rt, alice, job_id, token(rt, job_id), 0) is None
    state, message = stored(rt, stale)
    assert state == FAILED
    assert message is not None and message.startswith("The job did not pick up the inspection request within 60 s")
    assert inspection.result(rt, alice, stale, 0).state == FAILED  # what the user sees


def test_a_fresh_request_behind_a_stale_one_is_handed_out(rt: Runtime, alice: Principal, delegated: str) -> None:
    job_id = running(rt, alice, delegated)
    stale = inspection.ask(rt, alice, job_id, ["ps"])
    with rt.uow() as uow:
        request = uow.session.get(InspectionRequest, stale)
        assert request is not None
        request.asked_at -= dt.timedelta(seconds=61)
    fresh = inspection.ask(rt, alice, job_id, ["ls"])
    task = inspection.agent_next(rt, alice, job_id, token(rt, job_id), 0)
    assert task is not None and (task.request_id, task.argv) == (fresh, ["ls"])
    assert stored(rt, stale)[0] == FAILED
    assert stored(rt, fresh) == (RUNNING, None)


def test_mode_off_fails_what_is_pending_and_stops_the_agent(rt: Runtime, alice: Principal, delegated: str) -> None:
    limits(rt, mode="any")
    job_id = running(rt, alice, delegated)
    queued = inspection.ask(rt, alice, job_id, ["sh", "-c", "id; rm -rf ~"])
    limits(rt, mode="off")  # the site turns inspection off (and restarts)
    with pytest.raises(inspection.InspectionOffError, match="disabled"):
        inspection.agent_next(rt, alice, job_id, token(rt, job_id), 0)
    why = ("The service's inspection policy refuses this command now, before the job took it: "
           "Job inspection is disabled on this service")
    assert stored(rt, queued) == (FAILED, why)
    assert inspection.result(rt, alice, queued, 0).state == FAILED


def test_mode_off_answers_the_agent_410(rt: Runtime, alice: Principal, delegated: str) -> None:
    job_id = running(rt, alice, delegated)
    queued = inspection.ask(rt, alice, job_id, ["ps"])
    limits(rt, mode="off")
    seen: dict[str, str] = {}
    body = b"".join(InspectionAgentApp(rt, lambda environ: alice)(
        {"PATH_INFO": f"{inspection.AGENT_PATH}/next", "REQUEST_METHOD": "GET",
         "QUERY_STRING": f"job={job_id}&wait=0", TOKEN_HEADER: token(rt, job_id), "wsgi.input": io.BytesIO()},
        lambda status, headers, exc_info=None: seen.setdefault("status", status)))
    assert seen["status"] == "410 Gone"
    assert body == b"The Operation is not allowed: Job inspection is disabled on this service\n"
    assert stored(rt, queued)[0] == FAILED


def test_a_program_taken_off_the_allow_list_is_not_run(rt: Runtime, alice: Principal, delegated: str) -> None:
    limits(rt, mode="allow-list", allowed_commands="ps,cat")
    job_id = running(rt, alice, delegated)
    queued = inspection.ask(rt, alice, job_id, ["cat", "user.proxy"])
    allowed = inspection.ask(rt, alice, job_id, ["ps"])
    limits(rt, mode="allow-list", allowed_commands="ps")
    with pytest.raises(OperationNotAllowedError):  # as a new ask would be
        inspection.ask(rt, alice, job_id, ["cat", "user.proxy"])
    task = inspection.agent_next(rt, alice, job_id, token(rt, job_id), 0)
    assert task is not None and (task.request_id, task.argv) == (allowed, ["ps"])
    state, message = stored(rt, queued)
    assert state == FAILED
    assert message is not None and "'cat' is not allowed" in message
    assert inspection.agent_next(rt, alice, job_id, token(rt, job_id), 0) is None


def test_a_request_within_the_pickup_timeout_and_policy_is_handed_out(
        rt: Runtime, alice: Principal, delegated: str) -> None:
    job_id = running(rt, alice, delegated)
    request_id = inspection.ask(rt, alice, job_id, ["ps"])
    with rt.uow() as uow:
        request = uow.session.get(InspectionRequest, request_id)
        assert request is not None
        request.asked_at -= dt.timedelta(seconds=50)  # within the 60 s
        assert request.state == PENDING
    task = inspection.agent_next(rt, alice, job_id, token(rt, job_id), 0)
    assert task is not None and task.request_id == request_id
