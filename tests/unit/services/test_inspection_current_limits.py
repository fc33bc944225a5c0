"""A pending request runs under the site's limits of when it is handed out, not of when it was
asked (a red-team review, Low): a request keeps the ``time_limit`` and ``output_cap`` it was
asked with, and when the operator lowered ``[inspection] time_limit`` or ``output_cap`` and
restarted, the agent was handed the old, larger ones. Now the hand-out (``agent_next``) gives
the smaller of the stored and the current values, and the result kept (``agent_post``) is cut
at the current cap too (a request taken before the restart)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from tests.unit.services.inspection_support import running
from wmproxy.domain import Principal
from wmproxy.services import inspection
from wmproxy.services.runtime import Runtime
from wmproxy.store.inspections import DONE, InspectionRequest


def limits(rt: Runtime, **values: object) -> None:
    rt.settings = dataclasses.replace(rt.settings, inspection=dataclasses.replace(rt.settings.inspection,
                                                                                 **values))  # type: ignore[arg-type]


def stored(rt: Runtime, request_id: str) -> InspectionRequest:
    with rt.uow() as uow:
        request = uow.session.get(InspectionRequest, request_id)
        assert request is not None
        uow.session.expunge(request)
        return request


def outcome(output: bytes) -> inspection.AgentOutcome:
    now = dt.datetime.now(dt.UTC)
    return inspection.AgentOutcome(exit_code=0, started_at=now, ended_at=now, output=output)


def test_a_pending_request_is_handed_out_with_the_limits_lowered_since(rt: Runtime, alice: Principal,
                                                                        delegated: str) -> None:
    limits(rt, time_limit=600.0, output_cap=1_000_000)
    job_id = running(rt, alice, delegated)
    request_id = inspection.ask(rt, alice, job_id, ["ps"])
    assert (stored(rt, request_id).time_limit, stored(rt, request_id).output_cap) == (600.0, 1_000_000)
    limits(rt, time_limit=5.0, output_cap=100)  # the operator lowered them and restarted
    task = inspection.agent_next(rt, alice, job_id, inspection.agent_token(rt.settings, job_id, attempt=0), 0)
    assert task is not None and task.request_id == request_id
    assert (task.time_limit, task.output_cap) == (5.0, 100)  # before: (600.0, 1000000)
    request = stored(rt, request_id)  # what the service holds the agent to ("did not answer within 5 s")
    assert (request.time_limit, request.output_cap) == (5.0, 100)


def test_a_request_asked_under_lower_limits_keeps_them(rt: Runtime, alice: Principal, delegated: str) -> None:
    limits(rt, time_limit=5.0)
    job_id = running(rt, alice, delegated)
    inspection.ask(rt, alice, job_id, ["ps"], time_limit=2)
    limits(rt, time_limit=600.0, output_cap=1_000_000)  # raised since: the request's own values stay
    task = inspection.agent_next(rt, alice, job_id, inspection.agent_token(rt.settings, job_id, attempt=0), 0)
    assert task is not None and (task.time_limit, task.output_cap) == (2.0, 64 * 1024)


def test_a_result_posted_after_the_cap_was_lowered_is_cut_at_the_current_cap(rt: Runtime, alice: Principal,
                                                                             delegated: str) -> None:
    limits(rt, output_cap=1_000_000)
    job_id = running(rt, alice, delegated)
    request_id = inspection.ask(rt, alice, job_id, ["ps"])
    token = inspection.agent_token(rt.settings, job_id, attempt=0)
    task = inspection.agent_next(rt, alice, job_id, token, 0)
    assert task is not None and task.output_cap == 1_000_000  # taken before the restart
    limits(rt, output_cap=100)
    inspection.agent_post(rt, alice, job_id, token, request_id, outcome(b"x" * 5000))
    request = stored(rt, request_id)
    assert (request.state, len(request.output or b""), request.truncated) == (DONE, 100, True)  # before: 5000, False
