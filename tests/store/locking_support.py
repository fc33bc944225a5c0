"""Rows for the row-lock tests (tests/store/test_locking.py, test_lock_all.py): a job, and a
compound job with one node; and :func:`run_together`, threads racing for the same rows."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from wmproxy.domain import utcnow
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job

T = TypeVar("T")


def job_row(job_id: str, parent_id: str | None = None, *, owner_dn: str = "/CN=x", state: str = "Waiting") -> Job:
    now = utcnow()
    return Job(id=job_id, parent_id=parent_id, owner_dn=owner_dn, delegation_id="d", state=state,
               jdl_original="[]", jdl_registered="[]", sandbox_dir=job_id, created_at=now, updated_at=now)


def family(factory, name: str) -> tuple[str, str]:
    parent, node = f"https://h:9000/{name}", f"https://h:9000/{name}-node"
    with UnitOfWork(factory) as uow:
        uow.jobs.add(job_row(parent))
        uow.jobs.add(job_row(node, parent))
    return parent, node


def run_together(count: int, fn: Callable[[int], T], deadline: float = 120.0) -> list[T]:
    """``fn(0)`` ... ``fn(count - 1)`` in ``count`` threads released together by a barrier;
    their results (in the order they finished). Fails the test if any raised or did not end
    within ``deadline`` seconds (generous: the machine is shared)."""
    results: list[T] = []
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(n: int) -> None:
        try:
            start.wait(deadline)
            results.append(fn(n))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(deadline)
    assert errors == []
    assert not any(t.is_alive() for t in threads)
    return results
