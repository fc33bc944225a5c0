"""The purger and jobPurge on a job whose history was written before migration 0008 (its events
have kind ``state``), on SQLite and PostgreSQL: a job started and then cancelled is not taken for
one cancelled before it started (``wmproxy.services.quota.area_released``), whose bytes left the
owner's counter at the cancel."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from tests.admin.support import days_ago, job_row
from tests.store.purge_support import ALICE, job_purge_whose_commit_fails
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.services import jobs as job_service
from wmproxy.services.purge import purge
from wmproxy.services.quota import area_released
from wmproxy.services.runtime import Runtime

BASE = "https://localhost:7443/"


def add_old_job(rt: Runtime, name: str, history: list[str]) -> str:
    """Alice's job that went through ``history`` (its events written by the service of today); its id."""
    job_id = BASE + name
    with rt.uow() as uow:
        uow.session.add(job_row(job_id, history[0], created=days_ago(1)))
        uow.session.flush()
        job = uow.jobs.get(job_id)
        assert job is not None
        for state in history:
            uow.jobs.set_state(job, state, days_ago(0.5))
    return job_id


def with_area(rt: Runtime, job_id: str) -> None:
    """Give ``job_id`` an area holding 5000 bytes, counted on Alice's counter (which migration
    0010 made: taking the database below 0008 drops it)."""
    rt.storage.create_job_area(job_id)
    (rt.storage.create_area(rt.storage.job_rel_dir(job_id), "output") / "big.out").write_bytes(b"x" * 5000)
    with rt.uow() as uow:
        uow.usage.add(ALICE, rt.storage.counted_bytes(job_id), utcnow())


def used(rt: Runtime) -> int:
    with rt.uow() as uow:
        return uow.usage.used(ALICE)


def before_0008(rt: Runtime, down_to: Callable[[str], AbstractContextManager[None]]) -> None:
    """Take the database below 0008 and back: every event written so far is as one from then."""
    with down_to("0007"):
        pass
    rt.session_factory.kw["bind"].dispose()


class TestJobsFromBeforeMigration0008:
    def test_a_job_started_then_cancelled_is_not_taken_for_one_never_started(
            self, rt: Runtime, down_to: Callable[[str], AbstractContextManager[None]]) -> None:
        started = add_old_job(rt, "started-then-cancelled", ["Submitted", "Waiting", "Cancelled"])
        unstarted = add_old_job(rt, "cancelled-unstarted", ["Submitted", "Cancelled"])
        before_0008(rt, down_to)
        with rt.uow() as uow:
            assert {e.kind for e in uow.jobs.history(started)} == {"state"}
            old_started, old_unstarted = uow.jobs.get(started), uow.jobs.get(unstarted)
            assert old_started is not None and old_unstarted is not None
            assert not area_released(uow, old_started)
            assert area_released(uow, old_unstarted)

    @pytest.mark.parametrize("then", ["jobPurge", "purge pass"])
    def test_the_area_of_a_started_job_left_aside_is_counted_off_or_put_back(
            self, rt: Runtime, down_to: Callable[[str], AbstractContextManager[None]], then: str) -> None:
        """A jobPurge whose commit failed left the area aside with its bytes on the counter. The
        retried jobPurge took the job for one cancelled before it started: it left the area aside
        uncounted (the bytes stayed on the counter for good); a purge pass deleted it while the
        Cancelled job still had it (its output gone, its bytes on the counter)."""
        job_id = add_old_job(rt, f"cancelled-{then.replace(' ', '-')}", ["Submitted", "Waiting", "Cancelled"])
        before_0008(rt, down_to)
        with_area(rt, job_id)
        size, area = used(rt), rt.storage.counted_bytes(job_id)
        job_purge_whose_commit_fails(rt, job_id)
        assert not rt.storage.job_dir(job_id).exists() and used(rt) == size  # aside, still counted
        if then == "jobPurge":
            job_service.purge_job(rt, Principal(dn=ALICE), job_id)
            assert used(rt) == size - area  # the retry took the area's bytes off
            assert purge(rt).errors == [] and not rt.storage.job_dir(job_id).exists()
        else:
            assert purge(rt).errors == []
            assert (rt.storage.job_dir(job_id) / "output" / "big.out").read_bytes() == b"x" * 5000  # put back
            assert used(rt) == size
            with rt.uow() as uow:
                job = uow.jobs.get(job_id)
                assert job is not None and job.state == JobState.CANCELLED.value
        staging = rt.storage.root / rt.storage.dir_name
        assert list(staging.rglob(".purging-*")) == []
