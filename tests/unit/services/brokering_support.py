"""Helpers of the brokering tests (test_brokering.py, test_claim_batch_site.py): the built-in
CE's id, a jobSubmit of a trivial JDL and a job's state and destination."""

from __future__ import annotations

from collections.abc import Callable

from tests.unit.services.conftest import DELEGATION
from wmproxy.domain import Principal
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job

BUILTIN = "localhost:7443/wmproxy-local"
RankedRuntime = Callable[..., Runtime]


def jdl(extra: str = "") -> str:
    return f'[ Executable = "/bin/true"; {extra} ]'


def submit(rt: Runtime, alice: Principal, extra: str = "") -> str:
    return submit_job(rt, alice, jdl(extra), DELEGATION).job_id


def job_row(rt: Runtime, job_id: str) -> tuple[str, str | None, str | None]:
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        return job.state, job.reason, job.destination
