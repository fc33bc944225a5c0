"""``SqlJobStore.live_count``: the ``[load] max_live_jobs`` check's count, on both databases."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from tests.store.locking_support import job_row
from wmproxy.domain import FINAL_STATES
from wmproxy.store import UnitOfWork

FINAL = [state.value for state in FINAL_STATES]


def test_only_the_owners_jobs_not_nodes_and_not_ended_are_counted(factory: sessionmaker[Session]) -> None:
    owner, other = "/CN=live-count", "/CN=live-count-other"
    with UnitOfWork(factory) as uow:
        assert uow.jobs.live_count(owner, FINAL) == 0
        uow.jobs.add_all([
            job_row("https://h:9000/lc-submitted", owner_dn=owner, state="Submitted"),
            job_row("https://h:9000/lc-running", owner_dn=owner, state="Running"),
            job_row("https://h:9000/lc-collection", owner_dn=owner, state="Waiting"),
            *(job_row(f"https://h:9000/lc-collection-node-{i}", "https://h:9000/lc-collection", owner_dn=owner,
                      state="Running") for i in range(3)),
            *(job_row(f"https://h:9000/lc-{state}", owner_dn=owner, state=state) for state in FINAL),
            job_row("https://h:9000/lc-other", owner_dn=other, state="Running"),
        ])
    with UnitOfWork(factory) as uow:
        assert uow.jobs.live_count(owner, FINAL) == 3  # Submitted, Running, the collection
        assert uow.jobs.live_count(other, FINAL) == 1
