"""Jobs the inspection service tests ask about."""

from __future__ import annotations

import sqlalchemy as sa

from wmproxy.domain import JobState, Principal
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job
from wmproxy.store.schema import Job


def running(rt: Runtime, alice: Principal, delegation: str) -> str:
    """A job of alice marked Running (nothing answers the agent's side)."""
    job_id = submit_job(rt, alice, '[ Executable = "/bin/sleep"; Arguments = "600"; ]', delegation).job_id
    with rt.uow() as uow:
        uow.session.execute(sa.update(Job).where(Job.id == job_id).values(state=JobState.RUNNING.value))
    return job_id
