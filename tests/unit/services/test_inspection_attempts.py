"""The agent's secret is bound to the job's attempt (a red-team review, Low): it was the HMAC of
the job id alone, so an agent left over from an earlier attempt of a resubmitted job (a wrapper on
a node the worker lost, a shallow or deep resubmission since) could fetch and answer the requests
meant for the current attempt, with the owner's proxy it still holds. A later attempt's secret now
covers the attempt number (``jobs.shallow_retries + deep_retries``, the worker's
``StartOrder.attempt``): an earlier attempt's agent gets 403. The first attempt's secret is the
one of before (agents of jobs running through the upgrade keep working)."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
import sqlalchemy as sa

from wmproxy.domain import JobState, Principal
from wmproxy.errors import AuthorizationError
from wmproxy.inspection_http import TOKEN_HEADER, InspectionAgentApp
from wmproxy.services import inspection
from wmproxy.services.retries import AttemptEnd, end_attempt
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job
from wmproxy.store.inspections import DONE, RUNNING, InspectionRequest
from wmproxy.store.schema import Job


def mark_running(rt: Runtime, job_id: str) -> None:
    with rt.uow() as uow:
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(state=JobState.RUNNING.value))


def resubmitted(rt: Runtime, job_id: str, *, payload_started: bool) -> int:
    """End the job's current attempt with a failure its JDL retries (shallow: the payload did not
    start; deep: it did), then mark the new attempt Running; the new attempt's number."""
    state = end_attempt(rt, job_id, AttemptEnd(JobState.ABORTED, reason="the node was lost",
                                               payload_started=payload_started))
    assert state == JobState.WAITING
    mark_running(rt, job_id)
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        return job.shallow_retries + job.deep_retries


@pytest.fixture
def job_id(rt: Runtime, alice: Principal, delegated: str) -> str:
    """alice's running job (its first attempt), resubmitted up to twice."""
    jdl = '[ Executable = "/bin/sleep"; Arguments = "600"; ShallowRetryCount = 2; RetryCount = 2; ]'
    job_id = submit_job(rt, alice, jdl, delegated).job_id
    mark_running(rt, job_id)
    return job_id


def http_next(rt: Runtime, alice: Principal, job_id: str, token: str) -> str:
    seen: dict[str, str] = {}
    b"".join(InspectionAgentApp(rt, lambda environ: alice)(
        {"PATH_INFO": f"{inspection.AGENT_PATH}/next", "REQUEST_METHOD": "GET",
         "QUERY_STRING": f"job={job_id}&wait=0", TOKEN_HEADER: token},
        lambda status, headers, exc_info=None: seen.setdefault("status", status)))
    return seen["status"]


def http_post(rt: Runtime, alice: Principal, job_id: str, request_id: str, token: str) -> str:
    raw = json.dumps({"exit_code": 0, "output": ""}).encode()
    seen: dict[str, str] = {}
    b"".join(InspectionAgentApp(rt, lambda environ: alice)(
        {"PATH_INFO": f"{inspection.AGENT_PATH}/result", "REQUEST_METHOD": "POST",
         "QUERY_STRING": f"job={job_id}&request={request_id}", TOKEN_HEADER: token,
         "CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw)},
        lambda status, headers, exc_info=None: seen.setdefault("status", status)))
    return seen["status"]


def state_of(rt: Runtime, request_id: str) -> str:
    with rt.uow() as uow:
        request = uow.session.get(InspectionRequest, request_id)
        assert request is not None
        return request.state


@pytest.mark.parametrize("payload_started", [False, True], ids=["shallow", "deep"])
def test_an_earlier_attempts_agent_cannot_fetch_the_current_attempts_requests(
        rt: Runtime, alice: Principal, job_id: str, payload_started: bool) -> None:
    first = inspection.agent_token(rt.settings, job_id, attempt=0)  # what the first attempt's wrapper was given
    assert resubmitted(rt, job_id, payload_started=payload_started) == 1
    request_id = inspection.ask(rt, alice, job_id, ["ps"])
    with pytest.raises(AuthorizationError, match="not the agent of this job"):
        inspection.agent_next(rt, alice, job_id, first, 0)  # before: handed the request
    assert http_next(rt, alice, job_id, first) == "403 Forbidden"
    assert state_of(rt, request_id) != RUNNING  # nothing was handed out


def test_an_earlier_attempts_agent_cannot_answer_the_current_attempts_request(
        rt: Runtime, alice: Principal, job_id: str) -> None:
    first = inspection.agent_token(rt.settings, job_id, attempt=0)
    second = resubmitted(rt, job_id, payload_started=False)
    request_id = inspection.ask(rt, alice, job_id, ["ps"])
    current = inspection.agent_environment(rt.settings, job_id, attempt=second)[inspection.ENV_TOKEN]
    task = inspection.agent_next(rt, alice, job_id, current, 0)  # the current attempt's agent takes it
    assert task is not None and task.request_id == request_id
    assert http_post(rt, alice, job_id, request_id, first) == "403 Forbidden"  # before: 204, its answer kept
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(AuthorizationError):
        inspection.agent_post(rt, alice, job_id, first, request_id,
                              inspection.AgentOutcome(exit_code=0, started_at=now, ended_at=now, output=b"forged"))
    assert state_of(rt, request_id) == RUNNING
    assert http_post(rt, alice, job_id, request_id, current) == "204 No Content"
    assert state_of(rt, request_id) == DONE


def test_each_attempt_has_its_own_secret_and_the_first_keeps_the_one_of_before(rt: Runtime, job_id: str) -> None:
    tokens = [inspection.agent_environment(rt.settings, job_id, attempt=n)[inspection.ENV_TOKEN] for n in range(3)]
    assert len(set(tokens)) == 3 and all(len(token) == 64 for token in tokens)
    assert tokens[0] == inspection.agent_token(rt.settings, job_id, attempt=0)  # a job running through the upgrade


def test_a_second_resubmission_refuses_the_first_two_attempts_agents(rt: Runtime, alice: Principal,
                                                                    job_id: str) -> None:
    tokens = [inspection.agent_token(rt.settings, job_id, attempt=0)]
    tokens.append(inspection.agent_environment(rt.settings, job_id, attempt=resubmitted(
        rt, job_id, payload_started=False))[inspection.ENV_TOKEN])
    third = resubmitted(rt, job_id, payload_started=True)
    assert third == 2
    inspection.ask(rt, alice, job_id, ["ps"])
    for old in tokens:
        assert http_next(rt, alice, job_id, old) == "403 Forbidden"
    current = inspection.agent_environment(rt.settings, job_id, attempt=third)[inspection.ENV_TOKEN]
    assert http_next(rt, alice, job_id, current) == "200 OK"
