"""Rows for the row-lock tests (tests/store/test_locking.py, test_lock_all.py): a job, and a
compound job with one node."""

from __future__ import annotations

from wmproxy.domain import utcnow
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job


def job_row(job_id: str, parent_id: str | None = None) -> Job:
    now = utcnow()
    return Job(id=job_id, parent_id=parent_id, owner_dn="/CN=x", delegation_id="d", state="Waiting",
               jdl_original="[]", jdl_registered="[]", sandbox_dir=job_id, created_at=now, updated_at=now)


def family(factory, name: str) -> tuple[str, str]:
    parent, node = f"https://h:9000/{name}", f"https://h:9000/{name}-node"
    with UnitOfWork(factory) as uow:
        uow.jobs.add(job_row(parent))
        uow.jobs.add(job_row(node, parent))
    return parent, node
