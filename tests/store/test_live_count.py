"""``SqlJobStore.live_count``: the ``[load] max_live_jobs`` check's count, on both databases."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from wmproxy.domain import FINAL_STATES, JobState, utcnow
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job

FINAL = [state.value for state in FINAL_STATES]


def _job(job_id: str, owner: str, state: JobState, parent_id: str | None = None) -> Job:
    now = utcnow()
    return Job(id=job_id, parent_id=parent_id, owner_dn=owner, delegation_id="d", state=state.value,
               jdl_original="[ a = 1 ]", jdl_registered="[ a = 1 ]", sandbox_dir=job_id.rsplit("/", 1)[1],
               created_at=now, updated_at=now)


def test_only_the_owners_jobs_not_nodes_and_not_ended_are_counted(factory: sessionmaker[Session]) -> None:
    owner, other = "/CN=live-count", "/CN=live-count-other"
    with UnitOfWork(factory) as uow:
        assert uow.jobs.live_count(owner, FINAL) == 0
        uow.jobs.add_all([
            _job("https://h:9000/lc-submitted", owner, JobState.SUBMITTED),
            _job("https://h:9000/lc-running", owner, JobState.RUNNING),
            _job("https://h:9000/lc-collection", owner, JobState.WAITING),
            *(_job(f"https://h:9000/lc-collection-node-{i}", owner, JobState.RUNNING,
                   parent_id="https://h:9000/lc-collection") for i in range(3)),
            *(_job(f"https://h:9000/lc-{state.value}", owner, state) for state in FINAL_STATES),
            _job("https://h:9000/lc-other", other, JobState.RUNNING),
        ])
    with UnitOfWork(factory) as uow:
        assert uow.jobs.live_count(owner, FINAL) == 3  # Submitted, Running, the collection
        assert uow.jobs.live_count(other, FINAL) == 1
