"""The agent's result POST (``wmproxy/inspection_http.py``): a hostile value is a 400 naming it.

An ``exit_code`` past the 32-bit column (``2**63``) reached the database and a time that is
before year 1 once in UTC (``0001-01-01T00:00:00+14:00``) overflowed ``astimezone``: each
answered ``500 internal error`` with a traceback in the log. Each is now a ``400`` with the
reason, the request left as it was; the edge values are recorded.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pytest
import sqlalchemy as sa

from wmproxy.domain import Principal
from wmproxy.inspection_http import TOKEN_HEADER, InspectionAgentApp
from wmproxy.services import inspection
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job
from wmproxy.store.inspections import DONE, PENDING, RUNNING, InspectionRequest
from wmproxy.store.schema import Job


@pytest.fixture
def taken(rt: Runtime, alice: Principal, delegated: str) -> tuple[str, str]:
    """(job id, request id): alice's running job whose agent has taken a ``ps`` request."""
    job_id = submit_job(rt, alice, '[ Executable = "/bin/sleep"; ]', delegated).job_id
    with rt.uow() as uow:
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(state="Running"))
    request_id = inspection.ask(rt, alice, job_id, ["ps"])
    task = inspection.agent_next(rt, alice, job_id, inspection.agent_token(rt.settings, job_id, attempt=0), 0)
    assert task is not None and task.request_id == request_id
    return job_id, request_id


def post(rt: Runtime, alice: Principal, job_id: str, request_id: str, body: dict[str, Any]) -> tuple[str, bytes]:
    raw = json.dumps(body).encode()
    seen: dict[str, str] = {}
    out = InspectionAgentApp(rt, lambda environ: alice)(
        {"PATH_INFO": f"{inspection.AGENT_PATH}/result", "REQUEST_METHOD": "POST",
         "QUERY_STRING": f"job={job_id}&request={request_id}",
         TOKEN_HEADER: inspection.agent_token(rt.settings, job_id, attempt=0),
         "CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw)},
        lambda status, headers, exc_info=None: seen.setdefault("status", status))
    return seen["status"], b"".join(out)


def stored(rt: Runtime, request_id: str) -> tuple[str, int | None]:
    with rt.uow() as uow:
        request = uow.session.get(InspectionRequest, request_id)
        assert request is not None
        return request.state, request.exit_code


@pytest.mark.parametrize("code", [2**63, 2**31, -(2**31) - 1, 10**30])
def test_an_exit_code_past_32_bits_is_a_400(rt: Runtime, alice: Principal, taken: tuple[str, str],
                                            code: int) -> None:
    status, body = post(rt, alice, *taken, {"exit_code": code, "output": ""})
    assert (status, body) == ("400 Bad Request", b"exit_code must be from -2147483648 to 2147483647\n")
    assert stored(rt, taken[1]) == (RUNNING, None)


@pytest.mark.parametrize("code", [2**31 - 1, -(2**31)])
def test_the_32_bit_edges_are_recorded(rt: Runtime, alice: Principal, taken: tuple[str, str], code: int) -> None:
    assert post(rt, alice, *taken, {"exit_code": code, "output": ""}) == ("204 No Content", b"")
    assert stored(rt, taken[1]) == (DONE, code)


@pytest.mark.parametrize(("field", "value"), [("started_at", "0001-01-01T00:00:00+14:00"),
                                              ("ended_at", "9999-12-31T23:59:59-14:00")])
def test_a_time_outside_years_1_to_9999_in_utc_is_a_400(rt: Runtime, alice: Principal, taken: tuple[str, str],
                                                       field: str, value: str) -> None:
    status, body = post(rt, alice, *taken, {"exit_code": 0, field: value, "output": ""})
    assert status == "400 Bad Request"
    assert body == f"not a UTC time within years 1 to 9999: {value!r}\n".encode()
    assert stored(rt, taken[1]) == (RUNNING, None)


# --- the secret before the body (a red-team review, L3) ---------------------------------------


class Body(io.BytesIO):
    """A request body that records whether it was read."""

    read_at_all = False

    def read(self, size: int | None = -1) -> bytes:
        self.read_at_all = True
        return super().read(size)


def raw_post(rt: Runtime, caller: Principal, job_id: str, request_id: str, token: str,
             raw: bytes) -> tuple[str, bytes, bool]:
    """(status, body, whether the request's body was read) of a result POST."""
    body = Body(raw)
    seen: dict[str, str] = {}
    out = InspectionAgentApp(rt, lambda environ: caller)(
        {"PATH_INFO": f"{inspection.AGENT_PATH}/result", "REQUEST_METHOD": "POST",
         "QUERY_STRING": f"job={job_id}&request={request_id}", TOKEN_HEADER: token,
         "CONTENT_LENGTH": str(len(raw)), "wsgi.input": body},
        lambda status, headers, exc_info=None: seen.setdefault("status", status))
    return seen["status"], b"".join(out), body.read_at_all


@pytest.mark.parametrize("raw", [b"{not json", b'{"output": "@@@"}', b'{"exit_code": 0, "output": ""}'])
def test_a_wrong_secret_is_refused_before_the_body_is_read(rt: Runtime, alice: Principal, taken: tuple[str, str],
                                                           raw: bytes) -> None:
    status, body, read = raw_post(rt, alice, *taken, "0" * 64, raw)
    assert (status, body) == ("403 Forbidden", b"Authorization error: not the agent of this job\n")
    assert not read
    assert stored(rt, taken[1]) == (RUNNING, None)


def test_another_users_credential_is_refused_before_the_body_is_read(
        rt: Runtime, bob: Principal, taken: tuple[str, str]) -> None:
    job_id, request_id = taken
    status, _body, read = raw_post(rt, bob, job_id, request_id, inspection.agent_token(rt.settings, job_id, attempt=0),
                                   b"{not json")
    assert status == "403 Forbidden" and not read


# --- only a taken request is answered, at times the service saw (a red-team review, L4) ---------


def times(rt: Runtime, request_id: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    with rt.uow() as uow:
        request = uow.session.get(InspectionRequest, request_id)
        assert request is not None
        return request.started_at, request.ended_at


FORGED_TIMES = {"exit_code": 0, "started_at": "0001-01-01T00:00:00Z", "ended_at": "9999-12-31T23:59:59Z",
                "timed_out": False, "truncated": False, "error": None, "output": ""}


def test_a_result_for_a_request_not_handed_out_is_refused(rt: Runtime, alice: Principal, delegated: str) -> None:
    job_id = submit_job(rt, alice, '[ Executable = "/bin/sleep"; ]', delegated).job_id
    with rt.uow() as uow:
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(state="Running"))
    pending = inspection.ask(rt, alice, job_id, ["ps"])
    status, body = post(rt, alice, job_id, pending, FORGED_TIMES)
    assert status == "400 Bad Request"
    assert b"was not handed it" in body
    assert stored(rt, pending) == (PENDING, None)
    assert times(rt, pending) == (None, None)


def test_forged_times_are_kept_within_the_claim_and_the_post(rt: Runtime, alice: Principal,
                                                             taken: tuple[str, str]) -> None:
    claimed, _ = times(rt, taken[1])
    assert claimed is not None
    before = dt.datetime.now(dt.UTC)
    assert post(rt, alice, *taken, FORGED_TIMES) == ("204 No Content", b"")
    after = dt.datetime.now(dt.UTC)
    started, ended = times(rt, taken[1])
    assert started == claimed  # not year 1: no sooner than it was handed out
    assert ended is not None and before <= ended <= after  # not year 9999: no later than the post


def test_an_ended_time_before_the_start_is_the_start(rt: Runtime, alice: Principal, taken: tuple[str, str]) -> None:
    claimed, _ = times(rt, taken[1])
    assert claimed is not None
    started = dt.datetime.now(dt.UTC)
    assert post(rt, alice, *taken, dict(FORGED_TIMES, started_at=started.isoformat(),
                                        ended_at=(started - dt.timedelta(hours=1)).isoformat()))[0] == "204 No Content"
    assert times(rt, taken[1]) == (started, started)


def test_times_within_the_claim_and_the_post_are_kept(rt: Runtime, alice: Principal, taken: tuple[str, str]) -> None:
    claimed, _ = times(rt, taken[1])
    assert claimed is not None
    ended = dt.datetime.now(dt.UTC)
    assert post(rt, alice, *taken, dict(FORGED_TIMES, started_at=claimed.isoformat(),
                                        ended_at=ended.isoformat()))[0] == "204 No Content"
    assert times(rt, taken[1]) == (claimed, ended)
