"""What inspection requests may cost the database (``[inspection]`` retention and caps) and the
integers a caller may give (a red-team review, M3 and L6).

Asking a job that has ended stored a request and a job event each time (300 asks: 3.4 MB, the
job's page 3.7 KB → 69 KB); now it stores nothing and its request id is answered from the job.
A running job's requests are capped per job and per requester (ServerOverloadedFault past
them) and deleted ``retention`` after they were asked, by an ask at a cap or by the purger. A
400-digit ``timeLimit`` or ``timeout`` overflowed ``float()``: GenericFault 1201 and a traceback.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from xml.sax.saxutils import escape

import pytest
import sqlalchemy as sa
from lxml import etree

from tests.support import SoapApp
from tests.unit.services.inspection_support import running
from wmproxy.config import InspectionSettings, PurgeSettings
from wmproxy.domain import JobState, Principal
from wmproxy.errors import InspectionLimitError, InvalidArgumentError
from wmproxy.services import inspection
from wmproxy.services.purge import purge
from wmproxy.services.runtime import Runtime
from wmproxy.soap.namespaces import INSPECTION, SOAP_ENV
from wmproxy.store.inspections import InspectionRequest
from wmproxy.store.schema import Job, JobEvent


def limits(rt: Runtime, **inspect: object) -> None:
    rt.settings = dataclasses.replace(rt.settings, inspection=InspectionSettings(**inspect))  # type: ignore[arg-type]


def counts(rt: Runtime) -> tuple[int, int]:
    """(inspection requests, job events) in the database."""
    with rt.uow() as uow:
        requests = uow.session.scalar(sa.select(sa.func.count()).select_from(InspectionRequest))
        events = uow.session.scalar(sa.select(sa.func.count()).select_from(JobEvent))
    return int(requests or 0), int(events or 0)


def age(rt: Runtime, seconds: float) -> None:
    """Every request asked ``seconds`` earlier than it was."""
    with rt.uow() as uow:
        for request in uow.session.scalars(sa.select(InspectionRequest)):
            request.asked_at -= dt.timedelta(seconds=seconds)


def ended(rt: Runtime, alice: Principal, delegation: str) -> str:
    job_id = running(rt, alice, delegation)
    with rt.uow() as uow:
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(state=JobState.DONE.value, exit_code=0))
    return job_id


class TestEndedJob:
    def test_asking_an_ended_job_stores_nothing_and_still_answers(self, rt: Runtime, alice: Principal,
                                                                  delegated: str) -> None:
        job_id = ended(rt, alice, delegated)
        before = counts(rt)
        ids = [inspection.ask(rt, alice, job_id, ["cat", "A" * 1000]) for _ in range(20)]
        assert counts(rt) == before  # before: 20 rows and 20 events more
        found = inspection.result(rt, alice, ids[-1], 0)
        assert (found.state, found.job_id, found.command, found.job_state) == ("ended", job_id, ["cat", "A" * 1000],
                                                                               "Done")
        assert found.message == "The job has ended: Done, exit code 0"

    def test_an_ended_request_id_is_answered_to_the_jobs_owner_only(self, rt: Runtime, alice: Principal,
                                                                    bob: Principal, delegated: str) -> None:
        job_id = ended(rt, alice, delegated)
        request_id = inspection.ask(rt, alice, job_id, ["ls"])
        with pytest.raises(InvalidArgumentError, match="unknown inspection request"):
            inspection.result(rt, bob, request_id, 0)
        live = running(rt, alice, delegated)  # an id forged for a job still running is no request
        forged = inspection.ended_request_id(live, ["ls"], dt.datetime.now(dt.UTC))
        with pytest.raises(InvalidArgumentError, match="unknown inspection request"):
            inspection.result(rt, alice, forged, 0)
        with pytest.raises(InvalidArgumentError, match="unknown inspection request"):
            inspection.result(rt, alice, inspection.ENDED_PREFIX + "!!not-base64", 0)


class TestCaps:
    def test_a_job_keeps_at_most_max_requests_per_job(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        limits(rt, max_requests_per_job=3, retention=600)
        job_id = running(rt, alice, delegated)
        for _ in range(3):
            inspection.ask(rt, alice, job_id, ["ps"])
        before = counts(rt)
        with pytest.raises(InspectionLimitError, match="this job keeps 3 inspection requests, at most 3"):
            inspection.ask(rt, alice, job_id, ["ps"])
        assert counts(rt) == before  # no row, no event
        other = running(rt, alice, delegated)  # another job of the same user has its own count
        inspection.ask(rt, alice, other, ["ps"])
        age(rt, 700)  # past the retention (600 s; the longest answer, 60 + 30 + 30 s, is shorter)
        inspection.ask(rt, alice, job_id, ["ps"])  # the expired ones deleted to make room
        with rt.uow() as uow:
            assert uow.session.scalar(sa.select(sa.func.count()).select_from(InspectionRequest)
                                      .where(InspectionRequest.job_id == job_id)) == 1

    def test_a_user_keeps_at_most_max_requests_per_user(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        limits(rt, max_requests_per_user=4)
        jobs = [running(rt, alice, delegated) for _ in range(3)]
        for job_id in (*jobs, jobs[0]):
            inspection.ask(rt, alice, job_id, ["ps"])
        with pytest.raises(InspectionLimitError, match="you keep 4 inspection requests, at most 4"):
            inspection.ask(rt, alice, jobs[1], ["ps"])

    def test_the_purger_deletes_requests_past_the_retention_batch_by_batch(self, rt: Runtime, alice: Principal,
                                                                           delegated: str) -> None:
        limits(rt, retention=600)
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(batch=2))
        job_id = running(rt, alice, delegated)
        for _ in range(5):
            inspection.ask(rt, alice, job_id, ["ps"])
        age(rt, 700)
        fresh = inspection.ask(rt, alice, job_id, ["ls"])
        assert purge(rt, dry_run=True).inspections == 5
        report = purge(rt)
        assert report.inspections == 5
        with rt.uow() as uow:
            assert uow.session.scalars(sa.select(InspectionRequest.id)).all() == [fresh]
            # the job events stay with the job
            assert uow.session.scalar(sa.select(sa.func.count()).select_from(JobEvent)
                                      .where(JobEvent.reason.like("inspection:%"))) == 6


class TestIntegers:
    BIG = 10 ** 400

    def test_a_huge_time_limit_or_timeout_is_an_invalid_argument(self, rt: Runtime, alice: Principal,
                                                                 delegated: str) -> None:
        job_id = running(rt, alice, delegated)
        with pytest.raises(InvalidArgumentError, match="time limit out of range"):
            inspection.ask(rt, alice, job_id, ["ps"], self.BIG)
        request_id = inspection.ask(rt, alice, job_id, ["ps"], 3)
        with pytest.raises(InvalidArgumentError, match="timeout out of range"):
            inspection.result(rt, alice, request_id, self.BIG)
        with pytest.raises(InvalidArgumentError, match="negative timeout"):
            inspection.result(rt, alice, request_id, -self.BIG)

    @pytest.mark.parametrize("operation", ["inspectJob", "getInspectionResult"])
    def test_the_soap_port_answers_invalid_argument(self, soap: SoapApp, alice: Principal, operation: str) -> None:
        job_id = running(soap.rt, alice, "unit")
        big = "9" * 400
        body = (f"<jobId>{escape(job_id)}</jobId><command><word>ls</word></command><timeLimit>{big}</timeLimit>"
                if operation == "inspectJob" else f"<requestId>x</requestId><timeout>{big}</timeout>")
        envelope = (f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}" xmlns:i="{INSPECTION}"><SOAP-ENV:Body>'
                    f"<i:{operation}>{body}</i:{operation}></SOAP-ENV:Body></SOAP-ENV:Envelope>")
        reply = soap.request(envelope.encode(), alice)
        assert reply.status.startswith("500"), reply.body[:400]
        detail = reply.fault_detail
        assert etree.QName(detail).localname == "InvalidArgumentFault", etree.tostring(detail)  # was GenericFault
        assert "out of range" in (detail.findtext("Description") or "")
