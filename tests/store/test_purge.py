"""The purger (``wmproxy.services.purge``) on each backend, with rows back-dated instead of
waiting days: the reference's policy (7 days after the end, 15 days after the last change whatever
the state but a running job's, never-started jobs after 2 days), sandboxes, work dirs,
credentials, tombstones, dry run."""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import functools
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from tests.admin.support import days_ago, initialised_runtime, job_row, sealed_rows
from tests.conftest import Pki
from tests.deep_trees import make_chain, removed_afterwards
from tests.store.purge_support import ALICE, job_purge_whose_commit_fails
from wmproxy.config import PurgeSettings
from wmproxy.domain import FINAL_STATES, JobState, Principal, to_filename, utcnow
from wmproxy.errors import JobNotFoundError, OperationNotAllowedError, SandboxBusyError, SandboxError
from wmproxy.execution.identity import remove_work_dir
from wmproxy.sandbox.storage import Retirement
from wmproxy.sandbox.trees import tree_totals
from wmproxy.services import jobs as job_service
from wmproxy.services import purge as purge_module
from wmproxy.services.access import job_for
from wmproxy.services.execution import change_state
from wmproxy.services.purge import job_id_of_work_dir, purge
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork
from wmproxy.store.housekeeping import SqlHousekeepingStore
from wmproxy.store.schema import Delegation, DelegationRequest, Job, JobEvent, ProxyRenewal

UNFINISHED = [s.value for s in JobState if s not in FINAL_STATES]
BASE = "https://localhost:7443/"


@pytest.fixture(params=["sqlite", "postgresql"])
def rt(request: pytest.FixtureRequest, tmp_path: Path, pki: Pki) -> Iterator[Runtime]:
    yield from initialised_runtime(request.param, tmp_path, pki)


def add_job(rt: Runtime, name: str, state: str, *, created_days: float, updated_days: float | None = None,
            nodes: int = 0, delegation_id: str = "d1") -> str:
    """A job (with ``nodes`` nodes) registered ``created_days`` ago, last changed
    ``updated_days`` ago, with its sandbox area; returns its id."""
    job_id = BASE + name
    created = days_ago(created_days)
    updated = days_ago(updated_days if updated_days is not None else created_days)
    with rt.uow() as uow:
        uow.session.add(job_row(job_id, state, created=created, updated=updated, delegation_id=delegation_id))
        uow.session.flush()
        uow.session.add(JobEvent(job_id=job_id, state=state, reason=None, at=updated))
        for i in range(nodes):
            uow.session.add(job_row(f"{job_id}-node{i}", state, created=created, updated=updated, parent_id=job_id,
                                    delegation_id=delegation_id))
    for jid in (job_id, *(f"{job_id}-node{i}" for i in range(nodes))):
        rt.storage.create_job_area(jid)
        (rt.storage.create_area(rt.storage.job_rel_dir(jid), "output") / "std.out").write_text("out\n")
    return job_id


def exists(rt: Runtime, job_id: str) -> bool:
    with rt.uow() as uow:
        return uow.jobs.get(job_id) is not None


def used(rt: Runtime) -> int:
    with rt.uow() as uow:
        return uow.usage.used(ALICE)


def counted(rt: Runtime, *job_ids: str) -> int:
    """Count what the job areas hold on Alice's counter (as their uploads and outputs did); the total."""
    size = sum(rt.storage.counted_bytes(job_id) for job_id in job_ids)
    with rt.uow() as uow:
        uow.usage.add(ALICE, size, utcnow())
    return size


class TestPolicy:
    def test_the_reference_defaults(self) -> None:
        policy = PurgeSettings()
        assert (policy.final_age, policy.forced_age, policy.registered_age) == (604800, 1296000, 172800)
        assert policy.interval == 6 * 3600

    def test_ended_jobs_go_after_seven_days_with_their_sandbox(self, rt: Runtime) -> None:
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(pass_time=86400))  # not the clock's
        old = {s: add_job(rt, f"old-{s.lower()}", s, created_days=9, updated_days=7.1)
               for s in ("Done", "Aborted", "Cancelled", "Cleared")}
        young = add_job(rt, "young-done", "Done", created_days=9, updated_days=6.9)
        report = purge(rt)
        assert {c.job_id for c in report.jobs} == set(old.values())
        assert all(c.rule == "final" for c in report.jobs)
        for job_id in old.values():
            assert not exists(rt, job_id) and not rt.storage.job_dir(job_id).exists()
        assert exists(rt, young) and rt.storage.job_dir(young).exists()

    def test_never_started_jobs_expire_after_two_days(self, rt: Runtime) -> None:
        # An interrupted jobSubmit leaves exactly this: a Submitted job nobody will start.
        stale = add_job(rt, "interrupted-submit", "Submitted", created_days=2.1)
        fresh = add_job(rt, "registered-yesterday", "Submitted", created_days=1)
        report = purge(rt)
        assert [(c.job_id, c.rule) for c in report.jobs] == [(stale, "registered")]
        assert not exists(rt, stale) and exists(rt, fresh)

    def test_the_forced_purge_counts_from_the_last_change_not_the_registration(self, rt: Runtime) -> None:
        # The reference's Sunday run (-o -s -t 1296000) skips the state check only; its threshold
        # is the L&B last update, as the 7-day run's. A job that ran 16 days and ended an hour ago
        # keeps its output (registered 16 days ago, changed an hour ago).
        done = add_job(rt, "long-running-just-done", "Done", created_days=16, updated_days=1 / 24)
        out = rt.storage.job_dir(done) / "output" / "std.out"
        assert purge(rt).jobs == []
        assert exists(rt, done) and out.exists()
        # ... until it has been unchanged for final_age (7 days).
        report = purge(rt, now=utcnow() + dt.timedelta(days=7.1))
        assert [(c.job_id, c.rule) for c in report.jobs] == [(done, "final")]

    def test_the_forced_purge_takes_any_state_unchanged_fifteen_days_but_a_running_job(self, rt: Runtime) -> None:
        # With final_age above forced_age, the forced rule is what takes an ended job: one
        # unchanged for 16 days goes whatever its state, one changed yesterday stays (however old
        # it is), and a job a worker holds stays whatever its age.
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(final_age=30 * 86400))
        done = add_job(rt, "ended-long-ago", "Done", created_days=20, updated_days=16)
        recent = add_job(rt, "old-ended-yesterday", "Done", created_days=20, updated_days=1)
        running = add_job(rt, "old-running", "Running", created_days=20, updated_days=16)
        waiting = add_job(rt, "old-waiting", "Waiting", created_days=20, updated_days=16)
        report = purge(rt)
        assert [(c.job_id, c.rule) for c in report.jobs] == [(done, "forced")]
        assert exists(rt, recent) and exists(rt, running) and exists(rt, waiting)

    def test_a_compound_job_is_forced_from_its_last_nodes_end(self, rt: Runtime) -> None:
        # A DAG registered (and last changed) 16 days ago whose nodes ran until an hour ago: the
        # end of its last node ends it (refresh_parent), so its last change is that end.
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(final_age=30 * 86400))
        dag = add_job(rt, "long-dag", "Running", created_days=16, nodes=2)
        an_hour_ago = days_ago(1 / 24)
        with rt.uow() as uow:
            for i in range(2):
                change_state(uow, f"{dag}-node{i}", JobState.DONE, an_hour_ago, exit_code=0)
        with rt.uow() as uow:
            assert (uow.jobs.get(dag).state, uow.jobs.get(dag).updated_at) == ("Done", an_hour_ago)
        assert purge(rt).jobs == []
        assert exists(rt, dag) and (rt.storage.job_dir(f"{dag}-node0") / "output" / "std.out").exists()
        report = purge(rt, now=utcnow() + dt.timedelta(days=15.1))
        assert [(c.job_id, c.rule) for c in report.jobs] == [(dag, "forced")]
        assert not exists(rt, dag) and not exists(rt, f"{dag}-node0")

    def test_old_running_jobs_do_not_fill_the_batch(self, rt: Runtime) -> None:
        # More jobs past forced_age that a worker runs than a batch holds: they are not candidates,
        # so the Done job behind them (older by updated_at) goes in the first pass.
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(batch=3))
        running = [add_job(rt, f"long-running-{i}", state, created_days=20, updated_days=19)
                   for i, state in enumerate(("Running", "Waiting", "Ready", "Scheduled"))]
        done = add_job(rt, "done-long-ago", "Done", created_days=12, updated_days=10)
        report = purge(rt)
        assert [(c.job_id, c.rule) for c in report.jobs] == [(done, "final")]
        assert not exists(rt, done) and all(exists(rt, job_id) for job_id in running)
        assert [c.job_id for c in purge(rt, dry_run=True).jobs] == []

    @pytest.mark.parametrize("same_change", [False, True], ids=["by-change", "same-change-by-id"])
    def test_a_job_whose_area_cannot_be_removed_does_not_hold_up_the_others(self, rt: Runtime,
                                                                          same_change: bool) -> None:
        # The two oldest candidates fail at every pass (a file where their area should be:
        # rmtree refuses it); the pass goes on past them, a batch at a time, instead of stopping
        # there. With one last-change time for all, the order (and where the next read starts) is by id.
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(batch=2, pass_time=86400))  # not the clock's
        stuck = [add_job(rt, f"a-stuck-{i}", "Done", created_days=12, updated_days=11 - i) for i in range(2)]
        for job_id in stuck:
            area = rt.storage.job_dir(job_id)
            shutil.rmtree(area)
            area.write_text("not a directory\n")
        later = [add_job(rt, f"b-later-{i}", "Done", created_days=12, updated_days=9 - i) for i in range(3)]
        if same_change:
            with rt.uow() as uow:
                uow.session.execute(update(Job).values(updated_at=days_ago(10)))
        report = purge(rt)
        assert [c.job_id for c in report.jobs] == later  # read past the stuck ones, oldest first
        assert [e.split(": ")[0] for e in report.errors] == [f"job {job_id}" for job_id in stuck]
        assert all(exists(rt, job_id) for job_id in stuck) and not report.cut_short
        report = purge(rt)
        assert report.jobs == [] and len(report.errors) == 2

    def test_a_compound_job_goes_with_its_nodes_events_and_queue(self, rt: Runtime) -> None:
        dag = add_job(rt, "dag", "Done", created_days=10, updated_days=8, nodes=3)
        with rt.uow() as uow:
            uow.queue.enqueue(dag, "start", days_ago(10))
        purge(rt)
        with rt.uow() as uow:
            assert uow.session.scalars(select(Job)).all() == []
            assert uow.session.scalars(select(JobEvent)).all() == []
        for i in range(3):
            assert not rt.storage.job_dir(f"{dag}-node{i}").exists()

    def test_a_purged_job_answers_job_unknown_with_the_purged_text(self, rt: Runtime) -> None:
        job_id = add_job(rt, "gone", "Done", created_days=9, updated_days=8)
        purge(rt)
        with rt.uow() as uow:
            with pytest.raises(JobNotFoundError) as err:
                job_for(uow, Principal(dn=ALICE), job_id)
            tomb = SqlHousekeepingStore(uow.session).tombstone(job_id)
        assert "or it has been purged" in str(err.value)
        assert tomb is not None and tomb.owner_dn == ALICE and tomb.state == "Done"
        assert "ended more than 7 days ago" in tomb.reason

    def test_dry_run_removes_nothing(self, rt: Runtime) -> None:
        job_id = add_job(rt, "old", "Aborted", created_days=9, updated_days=8)
        report = purge(rt, dry_run=True)
        assert [c.job_id for c in report.jobs] == [job_id] and report.dry_run
        assert exists(rt, job_id) and rt.storage.job_dir(job_id).exists()

    def test_a_job_whose_area_is_thousands_of_levels_deep_is_purged(self, rt: Runtime) -> None:
        """A tree as 2,500 directory PUTs would make it: counting and removing it recursed
        (RecursionError on 3.11), which failed every purge pass from the first job on."""
        # the pass not bounded by the clock: removing the tree took more than pass_time's 5 s on
        # a loaded machine, and the pass then rightly stopped before the job after it
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(pass_time=86400))
        deep = add_job(rt, "deep", "Done", created_days=9, updated_days=8.1)
        after = add_job(rt, "after-it", "Done", created_days=9, updated_days=8)
        with removed_afterwards(rt.storage.job_dir(deep)):
            make_chain(rt.storage.create_area(rt.storage.job_rel_dir(deep), "input"))
            report = purge(rt)
            assert [c.job_id for c in report.jobs] == [deep, after] and report.errors == []
            assert not rt.storage.job_dir(deep).exists() and not exists(rt, deep)

    def test_a_job_that_changed_since_it_was_selected_stays(self, rt: Runtime) -> None:
        job_id = add_job(rt, "raced", "Submitted", created_days=3)
        later = utcnow() + dt.timedelta(days=30)  # everything is old from there
        with rt.uow() as uow:
            job = uow.jobs.get(job_id)
            assert job is not None
            uow.jobs.set_state(job, "Waiting", utcnow())
        report = purge(rt, now=later)
        assert report.jobs == [] and exists(rt, job_id)  # a live job is never forced


class TestPassTime:
    """A pass reads past full batches until no job is due, or its ``pass_time`` has run out."""

    def test_a_pass_removes_more_than_one_batch(self, rt: Runtime) -> None:
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(batch=2, pass_time=86400))
        jobs = [add_job(rt, f"old-{i}", "Done", created_days=10, updated_days=9 - i / 10) for i in range(7)]
        report = purge(rt)
        assert [c.job_id for c in report.jobs] == jobs and not report.cut_short
        assert not any(exists(rt, job_id) for job_id in jobs)

    def test_a_pass_cut_short_leaves_the_task_due_at_once(self, rt: Runtime) -> None:
        from wmproxy.execution.purging import purge_tasks

        Path(rt.settings.execution.work_dir).mkdir(mode=0o755, exist_ok=True)
        jobs = [add_job(rt, f"old-{i}", "Done", created_days=10, updated_days=9 - i / 10) for i in range(7)]
        # a time that has run out at the first check, after the first batch: no clock is raced
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(batch=2, pass_time=1e-9))
        [task] = purge_tasks(rt)
        task.due = 1e18  # as the worker sets it before a run: the next run an interval later
        task.run()
        assert [exists(rt, job_id) for job_id in jobs] == [False] + [True] * 6  # the clock is read after each job
        assert task.due == 0.0  # the next cycle runs the next pass
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(batch=2, pass_time=86400))
        [task] = purge_tasks(rt)
        task.due = 1e18
        task.run()  # ends the backlog: the task keeps its interval
        assert task.due == 1e18 and not any(exists(rt, job_id) for job_id in jobs)


    def test_a_pass_cut_short_reads_the_clock_after_each_job(self, rt: Runtime) -> None:
        # One batch (500) of compound jobs held a pass many times pass_time: the clock was read
        # only after a whole batch.
        jobs = [add_job(rt, f"dag-{i}", "Done", created_days=10, updated_days=9 - i / 10, nodes=2) for i in range(3)]
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(pass_time=1e-9))
        report = purge(rt)
        assert [c.job_id for c in report.jobs] == jobs[:1] and report.cut_short
        assert [exists(rt, job_id) for job_id in jobs] == [False, True, True]
        assert report.resume_after == (report.jobs[0].updated_at, jobs[0])
        report = purge(rt, resume_after=report.resume_after)
        assert [c.job_id for c in report.jobs] == jobs[1:2] and report.cut_short
        report = purge(rt, resume_after=report.resume_after)  # the last one: nothing is left after it
        assert [c.job_id for c in report.jobs] == jobs[2:] and not report.cut_short and report.resume_after is None

    def test_jobs_whose_removal_fails_do_not_hold_up_the_jobs_after_them(self, rt: Runtime) -> None:
        # Each pass started again from the oldest job: when the jobs whose removal fails took
        # pass_time to try, every pass was cut short among them, the jobs after them and the
        # orphan areas were never reached, and the worker ran a pass at every cycle.
        from wmproxy.execution.purging import purge_tasks

        Path(rt.settings.execution.work_dir).mkdir(mode=0o755, exist_ok=True)
        stuck = [add_job(rt, f"a-stuck-{i}", "Done", created_days=12, updated_days=11 - i / 10) for i in range(2)]
        for job_id in stuck:  # something else than a directory in the area's place: the removal fails
            shutil.rmtree(rt.storage.job_dir(job_id))
            rt.storage.job_dir(job_id).write_text("x")
        later = [add_job(rt, f"later-{i}", "Done", created_days=10, updated_days=9 - i / 10) for i in range(3)]
        orphan = BASE + "orphan"
        rt.storage.create_job_area(orphan)
        os.utime(rt.storage.job_dir(orphan), (time.time() - 3 * 86400,) * 2)
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(batch=2, pass_time=1e-9))
        [task] = purge_tasks(rt)
        for _cycle in range(10):  # one job per pass: 5 passes, the last one not cut short
            task.due = 1e18
            task.run()
            if task.due == 1e18:
                break
        assert task.due == 1e18  # the backlog has ended: the task keeps its interval
        assert [exists(rt, job_id) for job_id in stuck + later] == [True] * 2 + [False] * 3
        assert not rt.storage.job_dir(orphan).exists()  # the pass that ended the backlog removed it
        task.due = 1e18
        task.run()  # the next round starts from the oldest again: the failing jobs are tried again
        assert task.due == 0.0 and exists(rt, stuck[0])


    def test_a_pass_going_on_after_one_cut_short_does_not_walk_the_areas(self, rt: Runtime) -> None:
        # Each pass listed every sandbox area before its jobs, untimed: in a backlog the worker
        # runs a pass at every cycle, and at 100,000 areas the listing took about 2 s of each
        # (benchmarks/purge_orphan_walk.py). The round's first pass settles the leftovers; the
        # pass that ends the backlog walks the orphans.
        jobs = [add_job(rt, f"old-{i}", "Done", created_days=10, updated_days=9 - i / 10) for i in range(3)]
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(batch=2, pass_time=1e-9))
        first = purge(rt)
        assert [c.job_id for c in first.jobs] == jobs[:1] and first.cut_short
        young = add_job(rt, "young", "Done", created_days=2, updated_days=1)
        dead = Retirement()  # a removal that died after the round's first pass had listed the areas
        aside = rt.storage.retire_job_area(young, dead)[1]
        assert aside is not None and dead.fd is not None
        os.close(dead.fd)
        orphan = BASE + "orphan"
        rt.storage.create_job_area(orphan)
        os.utime(rt.storage.job_dir(orphan), (time.time() - 3 * 86400,) * 2)
        second = purge(rt, resume_after=first.resume_after)
        assert [c.job_id for c in second.jobs] == jobs[1:2] and second.cut_short
        assert aside.is_dir() and rt.storage.job_dir(orphan).is_dir()  # not listed: left to their passes
        last = purge(rt, resume_after=second.resume_after)
        assert [c.job_id for c in last.jobs] == jobs[2:] and not last.cut_short
        assert last.areas == [orphan] and not rt.storage.job_dir(orphan).exists()  # the backlog's end walks them
        assert aside.is_dir()  # a leftover waits for the next round's first pass
        # (with time for it: the passes above, out of time, left their jobs' areas aside part deleted too)
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(batch=2, pass_time=86400))
        assert purge(rt).errors == [] and rt.storage.job_dir(young).is_dir() and not aside.exists()

    def test_in_a_backlog_that_never_ends_leftovers_are_settled_once_an_interval(self, rt: Runtime) -> None:
        # Only a round's first pass settled the leftovers, and the worker starts a round only
        # after a pass that ends the backlog: in one that never ends, an area left aside by a
        # removal that did not commit stayed aside for good (its job never purged, its bytes
        # on the counter).
        from wmproxy.execution.purging import purge_tasks

        Path(rt.settings.execution.work_dir).mkdir(mode=0o755, exist_ok=True)
        jobs = [add_job(rt, f"old-{i}", "Done", created_days=10, updated_days=9 - i / 10) for i in range(5)]
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(batch=2, pass_time=1e-9))
        start = utcnow()
        clock = [start]
        [task] = purge_tasks(rt, clock=lambda: clock[0])
        task.due = 1e18
        task.run()  # the round's first pass: settles, one job, cut short
        assert task.due == 0.0 and [exists(rt, job_id) for job_id in jobs] == [False] + [True] * 4
        young = add_job(rt, "young", "Done", created_days=2, updated_days=1)
        dead = Retirement()  # a removal that died (before its commit) after that pass
        aside = rt.storage.retire_job_area(young, dead)[1]
        assert aside is not None and dead.fd is not None
        os.close(dead.fd)
        clock[0] = start + dt.timedelta(seconds=rt.settings.purge.interval - 1)
        task.run()  # going on, within the interval: no listing
        assert task.due == 0.0 and aside.is_dir() and not rt.storage.job_dir(young).exists()
        clock[0] = start + dt.timedelta(seconds=rt.settings.purge.interval)
        task.run()  # going on, an interval after the last settle: settles
        assert task.due == 0.0 and not aside.exists() and rt.storage.job_dir(young).is_dir()  # put back
        assert [exists(rt, job_id) for job_id in jobs] == [False] * 3 + [True] * 2  # still a backlog

    @pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "purge"])
    def test_the_admin_command_runs_passes_until_the_backlog_is_gone(self, rt: Runtime, dry_run: bool) -> None:
        # wmproxy-admin purge ran one pass: cut short after pass_time, it stopped silently.
        jobs = [add_job(rt, f"old-{i}", "Done", created_days=10, updated_days=9 - i / 10) for i in range(5)]
        orphan = BASE + "orphan"
        rt.storage.create_job_area(orphan)
        os.utime(rt.storage.job_dir(orphan), (time.time() - 3 * 86400,) * 2)
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(batch=2, pass_time=1e-9))
        report = purge_module.purge_until_done(rt, dry_run=dry_run)
        assert [c.job_id for c in report.jobs] == jobs and report.areas == [orphan] and not report.cut_short
        assert [exists(rt, job_id) for job_id in jobs] == [dry_run] * 5
        assert rt.storage.job_dir(orphan).exists() == dry_run


class TestInterruptedRemoval:
    """The area of a job removed in a transaction is only moved aside until the commit: a
    removal that does not commit leaves the job, its files and its bytes on the counter."""

    @pytest.mark.parametrize("then", ["jobPurge", "purge pass"])
    def test_the_leftover_of_a_committed_cancel_is_never_counted_again(
            self, rt: Runtime, monkeypatch: pytest.MonkeyPatch, then: str) -> None:
        """A job cancelled before it started leaves the counter at the cancel; its process died
        before deleting the area it moved aside. The job's jobPurge (or a purge pass, then the job's
        purge) deletes that leftover without taking its bytes off a second time (another job's
        bytes went with them: the counter fell to 0)."""
        other = add_job(rt, "running", "Running", created_days=1)
        (rt.storage.job_dir(other) / "output" / "o.out").write_bytes(b"y" * 3000)
        other_size = counted(rt, other)
        job_id = add_job(rt, "never-started", "Submitted", created_days=0.01)
        (rt.storage.job_dir(job_id) / "output" / "big.out").write_bytes(b"x" * 5000)
        counted(rt, job_id)
        monkeypatch.setattr(rt.storage, "discard_area", lambda path, **_kw: None)  # died after the commit
        job_service.cancel_job(rt, Principal(dn=ALICE), job_id)
        monkeypatch.undo()
        assert used(rt) == other_size
        if then == "jobPurge":
            job_service.purge_job(rt, Principal(dn=ALICE), job_id)
            assert used(rt) == other_size
            assert purge(rt).errors == []  # the leftover, of a Cleared job now, deleted
        else:
            report = purge(rt)
            assert report.errors == [] and not rt.storage.job_dir(job_id).exists()  # deleted, not put back
            with rt.uow() as uow:
                uow.session.execute(update(Job).where(Job.id == job_id).values(updated_at=days_ago(8)))
            assert [c.job_id for c in purge(rt).jobs] == [job_id]
        assert used(rt) == other_size
        fan_out = rt.storage.job_dir(job_id).parent
        assert not fan_out.exists() or list(fan_out.iterdir()) == []

    def test_the_leftover_of_a_never_started_compound_job_ended_aborted_is_never_counted_again(
            self, rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
        """A node of a never-started DAG cancelled alone, its dependant aborted below it: the DAG
        ends Aborted and its areas are released at the cancel; its process died before deleting
        them. A pass put them back (area_released read only Cancelled) and the DAG's jobPurge took
        their bytes off a second time (the other job's with them)."""
        dag = add_job(rt, "dag", "Submitted", created_days=1, updated_days=0.5, nodes=2)
        node0, node1 = f"{dag}-node0", f"{dag}-node1"
        (rt.storage.job_dir(node0) / "output" / "big.out").write_bytes(b"x" * 5000)
        counted(rt, dag, node0, node1)
        other = add_job(rt, "other", "Done", created_days=1, updated_days=0.5)
        (rt.storage.job_dir(other) / "output" / "keep.out").write_bytes(b"y" * 7000)
        other_size = counted(rt, other)
        with rt.uow() as uow:  # aborted below node0, as its dependency's failure does
            uow.jobs.set_state(uow.jobs.get(node1), JobState.ABORTED.value, utcnow())

        def dies(path: Path, **_kw: object) -> None:
            raise SandboxError(f"died before deleting {path}")

        monkeypatch.setattr(rt.storage, "discard_area", dies)  # died after the commit
        job_service.cancel_job(rt, Principal(dn=ALICE), node0)
        monkeypatch.undo()
        assert used(rt) == other_size
        with rt.uow() as uow:
            assert uow.jobs.get(dag).state == JobState.ABORTED.value
        assert purge(rt).errors == []
        assert [rt.storage.job_dir(j).exists() for j in (dag, node0, node1)] == [False] * 3  # deleted, not back
        job_service.purge_job(rt, Principal(dn=ALICE), dag)
        assert used(rt) == other_size == rt.storage.counted_bytes(other)

    def test_a_removal_that_fails_before_its_commit_keeps_the_area_the_row_and_the_counter(
            self, rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
        job_id = add_job(rt, "old", "Done", created_days=9, updated_days=8)
        output = rt.storage.job_dir(job_id) / "output" / "big.out"
        output.write_bytes(b"x" * 5000)
        size = counted(rt, job_id)
        release_areas = purge_module.release_areas

        def fails_after_the_release(uow: UnitOfWork, rt_: Runtime, owner: str, released: list[str],
                                    cleared: bool = False, deadline: float | None = None) -> Retirement:
            release_areas(uow, rt_, owner, released, cleared=cleared, deadline=deadline)
            raise RuntimeError("the worker died before the commit")

        monkeypatch.setattr(purge_module, "release_areas", fails_after_the_release)
        with pytest.raises(RuntimeError, match=r"^the worker died before the commit$"):
            purge(rt)
        assert exists(rt, job_id) and output.read_bytes() == b"x" * 5000 and used(rt) == size
        assert [p.name for p in output.parents[2].iterdir()] == [to_filename(job_id)]  # nothing left aside
        monkeypatch.undo()
        report = purge(rt)
        assert [c.job_id for c in report.jobs] == [job_id] and report.errors == []
        assert not exists(rt, job_id) and not rt.storage.job_dir(job_id).exists() and used(rt) == 0

    def test_an_area_left_aside_by_a_killed_removal_is_settled_by_the_next_pass(self, rt: Runtime) -> None:
        due = add_job(rt, "due", "Done", created_days=9, updated_days=8, nodes=1)  # removal killed before its commit
        young = add_job(rt, "young", "Aborted", created_days=2, updated_days=1)  # the same, not due
        gone = add_job(rt, "gone", "Done", created_days=9, updated_days=8)  # killed after its commit
        cleared = add_job(rt, "cleared", "Done", created_days=2, updated_days=1)  # jobPurge killed after its commit
        counted(rt, due, f"{due}-node0", young, gone, cleared)
        aside = {job_id: rt.storage.retire_job_area(job_id)[1]
                 for job_id in (due, f"{due}-node0", young, gone, cleared)}
        assert all(path is not None and path.name.startswith(".purging-") for path in aside.values())
        out = len(b"out\n")  # each area's std.out
        with rt.uow() as uow:  # what the committed transactions of gone and cleared did
            store = SqlHousekeepingStore(uow.session)
            uow.usage.add(ALICE, -2 * out, utcnow())
            job = store.lock_job(gone)
            assert job is not None
            store.remove_job(job, "Done: test", utcnow())
            job = uow.jobs.get(cleared)
            assert job is not None
            uow.jobs.set_state(job, JobState.CLEARED.value, utcnow())
        assert used(rt) == 3 * out  # due's, its node's and young's
        report = purge(rt)
        assert [c.job_id for c in report.jobs] == [due] and report.errors == []
        assert rt.storage.job_dir(young).is_dir() and (rt.storage.job_dir(young) / "output" / "std.out").exists()
        assert used(rt) == out  # young's: due was put back, then purged with its bytes
        assert not any(path is not None and os.path.lexists(path) for path in aside.values())
        assert not rt.storage.job_dir(gone).exists() and not rt.storage.job_dir(cleared).exists()


    def test_a_pass_leaves_to_a_committed_removal_the_areas_it_is_deleting(
            self, rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
        # The row locks go at the commit, the areas are deleted after it: a pass starting then
        # took them for leftovers of a removal that did not commit and put the cancelled job's
        # back (half deleted, their bytes already off the counter, taken off again at its purge).
        from wmproxy.services.jobs import cancel_job

        dag = add_job(rt, "dag", "Submitted", created_days=0.01, nodes=3)
        ids = [dag, *(f"{dag}-node{i}" for i in range(3))]
        counted(rt, *ids)
        deleting, go = threading.Event(), threading.Event()
        discard_area = rt.storage.discard_area

        def held_discard(path: Path, **kw: Retirement) -> None:  # the cancel's first delete waits for the pass
            if threading.current_thread() is canceller and not deleting.is_set():
                deleting.set()
                assert go.wait(60)
            discard_area(path, **kw)

        monkeypatch.setattr(rt.storage, "discard_area", held_discard)
        canceller = threading.Thread(target=cancel_job, args=(rt, Principal(dn=ALICE), dag))
        canceller.start()
        try:
            assert deleting.wait(60)  # committed; its areas aside, none deleted yet
            with rt.uow() as uow:
                job = uow.jobs.get(dag)
                assert job is not None and job.state == JobState.CANCELLED.value
            report = purge(rt)
        finally:
            go.set()
            canceller.join(60)
        assert report.errors == [] and not canceller.is_alive()
        assert not any(rt.storage.job_dir(job_id).exists() for job_id in ids) and used(rt) == 0
        staging = rt.storage.root / rt.storage.dir_name
        assert list(staging.rglob(".purging-*")) == []  # the areas deleted, the lock file gone

    def test_the_lock_of_a_removal_goes_when_its_commit_fails(self, rt: Runtime) -> None:
        # Neither committed() nor undone() runs then: the areas stay aside, for the next pass.
        job_id = add_job(rt, "done", "Done", created_days=2, updated_days=1)
        size = counted(rt, job_id)
        job_purge_whose_commit_fails(rt, job_id)
        staging = rt.storage.root / rt.storage.dir_name
        [aside] = staging.rglob(".purging-*")  # the area; its lock file is gone, nothing holds it
        assert aside.is_dir() and not rt.storage.retirement_busy(aside) and used(rt) == size
        report = purge(rt)  # the job is still Done: its area goes back
        assert report.errors == [] and rt.storage.job_dir(job_id).is_dir() and used(rt) == size


    def test_a_job_purge_tried_again_after_a_failed_commit_takes_the_bytes_off(self, rt: Runtime) -> None:
        # The retry found no job dir and took 0 bytes off; the next pass deleted the area aside:
        # its bytes stayed on the counter for good.
        job_id = add_job(rt, "done", "Done", created_days=2, updated_days=1, nodes=1)
        node = f"{job_id}-node0"
        (rt.storage.job_dir(node) / "output" / "big.out").write_bytes(b"x" * 5000)
        counted(rt, job_id, node)
        job_purge_whose_commit_fails(rt, job_id)
        assert not rt.storage.job_dir(node).exists()  # aside
        job_service.purge_job(rt, Principal(dn=ALICE), job_id)  # the user tries again
        assert used(rt) == 0
        report = purge(rt)
        staging = rt.storage.root / rt.storage.dir_name
        assert report.errors == [] and list(staging.rglob(".purging-*")) == [] and used(rt) == 0
        assert not rt.storage.job_dir(job_id).exists() and not rt.storage.job_dir(node).exists()


    def test_the_area_aside_of_a_cleared_job_is_not_taken_off_the_counter_again(
            self, rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
        # A jobPurge that committed (its bytes off the counter) and died before its delete; the
        # pass could not settle the area (here: skipped), then purges the Cleared job.
        job_id = add_job(rt, "cleared", "Cleared", created_days=9, updated_days=8)
        (rt.storage.job_dir(job_id) / "output" / "big.out").write_bytes(b"x" * 5000)
        aside = rt.storage.retire_job_area(job_id)[1]
        assert aside is not None
        other = add_job(rt, "running", "Running", created_days=1)
        size = counted(rt, other)  # what the counter holds: the other job's bytes
        monkeypatch.setattr(purge_module, "_settle_retired_areas", lambda *args: None)
        report = purge(rt)
        assert [c.job_id for c in report.jobs] == [job_id] and used(rt) == size


    def test_a_pass_removes_the_lock_files_nothing_holds_and_skips_the_areas_of_a_held_one(
            self, rt: Runtime) -> None:
        dead = add_job(rt, "dead", "Done", created_days=2, updated_days=1)
        held = add_job(rt, "held", "Done", created_days=2, updated_days=1)
        staging = rt.storage.root / rt.storage.dir_name
        gone = Retirement()  # a removal whose process died before its commit: its lock went with it
        rt.storage.retire_job_area(dead, gone)
        assert gone.fd is not None
        os.close(gone.fd)
        holding = Retirement()  # a removal settling its areas (in another thread or process)
        aside = rt.storage.retire_job_area(held, holding)[1]
        assert aside is not None and rt.storage.retirement_busy(aside)
        try:
            report = purge(rt)
            assert report.errors == [] and rt.storage.job_dir(dead).is_dir()  # back: the job is Done
            assert aside.is_dir() and not rt.storage.job_dir(held).exists()  # left to its removal
            assert sorted(p.name for p in staging.glob(".purging-*")) == [f".purging-{holding.token}"]
        finally:
            rt.storage.end_retirement(holding)
        assert not (staging / f".purging-{holding.token}").exists()
        purge(rt)
        assert rt.storage.job_dir(held).is_dir() and list(staging.rglob(".purging-*")) == []


    def test_a_job_purge_is_refused_while_another_removal_holds_an_area_aside(self, rt: Runtime) -> None:
        # A removal that did not commit, still putting its areas back (its lock held). The
        # jobPurge found no area for the node and passed the held one by: it answered success,
        # the job Cleared, the node's bytes on the counter for good and its files on disk.
        job_id = add_job(rt, "done", "Done", created_days=2, updated_days=1, nodes=1)
        node = f"{job_id}-node0"
        (rt.storage.job_dir(node) / "output" / "big.out").write_bytes(b"x" * 5000)
        size = counted(rt, job_id, node)
        holding = Retirement()
        aside = rt.storage.retire_job_area(node, holding)[1]
        assert aside is not None
        try:
            with pytest.raises(OperationNotAllowedError, match=r"being removed .* try again later") as refused:
                job_service.purge_job(rt, Principal(dn=ALICE), job_id)
            assert isinstance(refused.value, SandboxBusyError) and refused.value.code == 1226
            with rt.uow() as uow:
                job = uow.jobs.get(job_id)
                assert job is not None and job.state == JobState.DONE.value
            assert used(rt) == size and aside.is_dir() and rt.storage.job_dir(job_id).is_dir()  # as it was
        finally:
            rt.storage.end_retirement(holding)
        job_service.purge_job(rt, Principal(dn=ALICE), job_id)  # tried again once that removal has ended
        assert used(rt) == 0 and not aside.exists() and not rt.storage.job_dir(job_id).exists()
        staging = rt.storage.root / rt.storage.dir_name
        assert list(staging.rglob(".purging-*")) == []

    @pytest.mark.parametrize("errno_", [errno.ENOLCK, errno.EOPNOTSUPP], ids=["ENOLCK", "EOPNOTSUPP"])
    def test_without_flock_a_pass_leaves_the_areas_of_a_young_lock_file_alone(
            self, rt: Runtime, monkeypatch: pytest.MonkeyPatch, errno_: int) -> None:
        # NFS without its lock manager: flock fails (here injected, with the real errno), so no
        # removal looked busy, and a pass put back (or deleted) the areas of a live removal.
        from wmproxy.sandbox import trees
        from wmproxy.sandbox.storage import UNLOCKED_RETIREMENT_AGE

        def no_flock(_fd: int, _operation: int) -> None:
            raise OSError(errno_, os.strerror(errno_))

        monkeypatch.setattr(trees.fcntl, "flock", no_flock)
        job_id = add_job(rt, "done", "Done", created_days=2, updated_days=1)
        size = counted(rt, job_id)
        removal = Retirement()  # a removal in another process, still at work (or dead: nothing tells)
        aside = rt.storage.retire_job_area(job_id, removal)[1]
        assert aside is not None and removal.fd is not None
        os.close(removal.fd)
        lock = rt.storage.root / rt.storage.dir_name / f".purging-{removal.token}"
        assert purge(rt).errors == [] and aside.is_dir() and lock.exists()  # left alone
        with pytest.raises(OperationNotAllowedError, match="try again later"):
            job_service.purge_job(rt, Principal(dn=ALICE), job_id)
        before = os.stat(lock).st_mtime - UNLOCKED_RETIREMENT_AGE - 1
        os.utime(lock, (before, before))  # unchanged for longer than a live removal leaves it
        assert purge(rt).errors == []
        assert rt.storage.job_dir(job_id).is_dir() and not lock.exists() and used(rt) == size  # back


class TestPassTimeInsideAnArea:
    """A pass's time (``pass_time``) bounds the deletes of the areas of a removal that committed,
    inside an area: one compound job of 60 nodes of 10,000 files each held a pass 9.7 s (red
    team), as its areas were deleted after the commit whatever the time. What is left stays aside
    (``.purging-*``), its bytes off the counter, and the next passes finish it. The time here
    has run out at every look (``pass_time`` 1e-9): each pass removes what one look allows."""

    FILES = 600  # above trees.REMOVALS_PER_CHECK: a delete stops inside a directory

    @staticmethod
    def fill(rt: Runtime, job_id: str, files: int) -> None:
        """``files`` files of one byte in the job's input area."""
        fd = os.open(rt.storage.create_area(rt.storage.job_rel_dir(job_id), "input"), os.O_RDONLY | os.O_DIRECTORY)
        try:
            for n in range(files):
                file = os.open(f"f{n}", os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=fd)
                os.write(file, b"x")
                os.close(file)
        finally:
            os.close(fd)

    @staticmethod
    def aside(rt: Runtime) -> list[Path]:
        return sorted((rt.storage.root / rt.storage.dir_name).glob("*/.purging-*"))

    @staticmethod
    def entries(paths: list[Path]) -> int:
        return sum(1 + tree_totals(path).files + tree_totals(path).dirs for path in paths)

    def big_dag_and_a_kept_job(self, rt: Runtime, nodes: int = 3) -> tuple[list[str], int]:
        """A due compound job whose nodes hold :attr:`FILES` files each, and a job of Alice's not
        due; the dag's ids and the kept job's bytes (what Alice's counter holds once the dag is purged)."""
        dag = add_job(rt, "dag", "Done", created_days=9, updated_days=8, nodes=nodes)
        ids = [dag, *(f"{dag}-node{i}" for i in range(nodes))]
        for job_id in ids[1:]:
            self.fill(rt, job_id, self.FILES)
        counted(rt, *ids)
        kept = add_job(rt, "kept", "Done", created_days=2, updated_days=1)
        self.fill(rt, kept, 10)
        return ids, counted(rt, kept)

    def test_a_pass_out_of_time_leaves_an_area_part_deleted_and_the_next_passes_finish_it(self, rt: Runtime) -> None:
        ids, kept = self.big_dag_and_a_kept_job(rt)
        total = self.entries([rt.storage.job_dir(job_id) for job_id in ids])
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(pass_time=1e-9))
        report = purge(rt)
        assert [c.job_id for c in report.jobs] == ids[:1] and not exists(rt, ids[0]) and not report.cut_short
        assert used(rt) == kept  # the bytes left the counter at the commit, once
        assert sorted(report.unfinished.areas) == self.aside(rt) and len(report.unfinished.areas) == len(ids)
        left = self.entries(report.unfinished.areas)
        assert 0 < left < total  # stopped inside the first area
        passes = 0
        while report.unfinished:
            passes += 1
            assert passes < 100
            report = purge(rt, resume_after=report.resume_after, settled_at=report.settled_at,
                           unfinished=report.unfinished)
            assert report.errors == [] and report.jobs == [] and used(rt) == kept
            assert not any(rt.storage.job_dir(job_id).exists() for job_id in ids)  # never put back
            now_left = self.entries(self.aside(rt))
            assert now_left < left  # each pass removes something
            left = now_left
        assert passes > 1 and self.aside(rt) == [] and used(rt) == kept
        assert rt.storage.counted_bytes(ids[0].replace("dag", "kept")) == kept  # the kept job's area is whole

    def test_a_pass_out_of_time_inside_an_area_leaves_the_task_due_at_once(self, rt: Runtime) -> None:
        from wmproxy.execution.purging import purge_tasks

        Path(rt.settings.execution.work_dir).mkdir(mode=0o755, exist_ok=True)
        ids, kept = self.big_dag_and_a_kept_job(rt)
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(pass_time=1e-9))
        [task] = purge_tasks(rt)
        runs = 0
        while True:
            runs += 1
            assert runs < 100
            task.due = 1e18
            task.run()
            assert used(rt) == kept and not any(rt.storage.job_dir(job_id).exists() for job_id in ids)
            if task.due == 1e18:  # nothing left: the task keeps its interval
                break
            assert task.due == 0.0 and self.aside(rt) != []  # the next cycle goes on
        assert runs > 2 and self.aside(rt) == [] and not exists(rt, ids[0])

    def test_areas_part_deleted_and_lost_with_the_worker_are_settled_by_the_next_round_a_bit_at_a_time(
            self, rt: Runtime) -> None:
        # The worker died (its unfinished list with it): the next round's first pass lists the
        # areas aside and settles them as a crash's leftovers, out of time too; an area of a
        # removal that did not commit, among them, is put back whole.
        ids, kept = self.big_dag_and_a_kept_job(rt)
        young = add_job(rt, "young", "Done", created_days=2, updated_days=1)
        self.fill(rt, young, 5)
        kept += counted(rt, young)
        dead = Retirement()  # a removal of young that died before its commit
        assert rt.storage.retire_job_area(young, dead)[1] is not None and dead.fd is not None
        os.close(dead.fd)
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(pass_time=1e-9))
        first = purge(rt)  # young's area aside is the first settled (or not reached), the dag purged
        assert [c.job_id for c in first.jobs] == ids[:1] and first.unfinished and used(rt) == kept
        report = purge(rt)  # a new round: first.unfinished is lost
        assert report.unfinished.areas  # out of time while settling
        passes = 1
        while report.unfinished:
            passes += 1
            assert passes < 100
            assert used(rt) == kept and not any(rt.storage.job_dir(job_id).exists() for job_id in ids)
            report = purge(rt, resume_after=report.resume_after, settled_at=report.settled_at,
                           unfinished=report.unfinished)
            assert report.errors == []
        assert self.aside(rt) == [] and used(rt) == kept and rt.storage.counted_bytes(young) == kept - (
            rt.storage.counted_bytes(ids[0].replace("dag", "kept")))  # young's area back whole

    def test_leftover_work_dirs_are_removed_a_pass_time_at_a_time(self, rt: Runtime) -> None:
        root = Path(rt.settings.execution.work_dir)
        root.mkdir(mode=0o755, exist_ok=True)
        names = [to_filename(BASE + f"vanished-{i}") for i in range(2)]
        for name in names:
            (root / name).mkdir()
            for n in range(self.FILES):
                (root / name / f"f{n}").write_text("x")
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(pass_time=1e-9))
        remover = functools.partial(remove_work_dir, root)
        report = purge(rt, remove_work_dir=remover)
        assert report.work_dirs == [] and report.unfinished.work_dirs == names
        assert 0 < len(os.listdir(root / names[0])) < self.FILES  # stopped inside the first
        assert len(os.listdir(root / names[1])) == self.FILES  # not reached
        removed = []
        for _pass in range(100):
            if not report.unfinished:
                break
            report = purge(rt, remove_work_dir=remover, resume_after=report.resume_after,
                           settled_at=report.settled_at, unfinished=report.unfinished)
            assert report.errors == []
            removed += report.work_dirs
        assert removed == names and not report.unfinished and os.listdir(root) == []


class TestOrphanAreas:
    def test_areas_no_job_has_go_once_older_than_registered_age(self, rt: Runtime) -> None:
        # A registration killed before its commit leaves its job areas without rows.
        running = add_job(rt, "running", "Running", created_days=5)
        orphan, fresh = BASE + "orphan", BASE + "fresh"
        for job_id in (orphan, fresh):
            rt.storage.create_job_area(job_id)
            (rt.storage.create_area(rt.storage.job_rel_dir(job_id), "input") / "in.txt").write_text("in\n")
        three_days_ago = time.time() - 3 * 86400
        for job_id in (running, orphan):
            os.utime(rt.storage.job_dir(job_id), (three_days_ago, three_days_ago))
        report = purge(rt, dry_run=True)
        assert report.areas == [orphan] and rt.storage.job_dir(orphan).exists()
        report = purge(rt)
        assert report.areas == [orphan] and report.errors == []
        assert not rt.storage.job_dir(orphan).exists()
        assert rt.storage.job_dir(fresh).exists() and rt.storage.job_dir(running).exists()

    def test_an_area_outside_its_own_fan_out_directory_is_not_the_purgers(self, rt: Runtime) -> None:
        # Only the job's own fan-out directory (the first 2 chars of its unique part) holds its area.
        stray = BASE + "strayed"
        rt.storage.create_job_area(stray)
        moved = rt.storage.job_dir(stray).parent.with_name("zz") / rt.storage.job_dir(stray).name
        moved.parent.mkdir()
        rt.storage.job_dir(stray).rename(moved)
        os.utime(moved, (time.time() - 3 * 86400,) * 2)
        report = purge(rt)
        assert report.areas == [] and report.errors == [] and moved.is_dir()


class TestWorkDirs:
    def test_leftover_work_dirs_of_gone_or_long_ended_jobs_are_removed(self, rt: Runtime) -> None:
        root = Path(rt.settings.execution.work_dir)
        root.mkdir(mode=0o755, exist_ok=True)
        running = add_job(rt, "running", "Running", created_days=1)
        ended = add_job(rt, "ended-long-ago", "Done", created_days=6, updated_days=5)
        recent = add_job(rt, "ended-now", "Done", created_days=1, updated_days=0)
        names = {job: to_filename(job) for job in (running, ended, recent, BASE + "vanished")}
        (root / "lost+found").mkdir()  # not a job's: never touched
        for name in names.values():
            (root / name).mkdir()
            (root / name / "std.out").write_text("x")
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(final_age=4 * 86400))
        report = purge(rt, remove_work_dir=functools.partial(remove_work_dir, root))
        assert set(report.work_dirs) == {names[ended], names[BASE + "vanished"]}
        assert (root / names[running]).exists() and (root / names[recent]).exists()
        assert not (root / names[BASE + "vanished"]).exists()
        assert (root / "lost+found").exists()

    def test_work_dir_names_map_back_to_job_ids(self) -> None:
        job_id = "https://wms.example.org:9000/AbC-x_1"
        assert job_id_of_work_dir(to_filename(job_id)) == job_id


class TestCredentials:
    def test_expired_unused_delegations_go_with_their_renewal_record(self, rt: Runtime) -> None:
        now = utcnow()
        with rt.uow() as uow:
            for did, not_after in (("expired-unused", now - dt.timedelta(hours=1)),
                                   ("expired-in-use", now - dt.timedelta(hours=1)),
                                   ("valid", now + dt.timedelta(hours=5))):
                delegation, _request = sealed_rows(rt.sealer, ALICE, did, not_after=not_after)
                uow.session.add(delegation)
                uow.session.add(ProxyRenewal(owner_dn=ALICE, delegation_id=did, myproxy_server="myproxy:7512",
                                             created_at=now, updated_at=now, attempts=0, renewals=0))
            uow.session.add(ProxyRenewal(owner_dn=ALICE, delegation_id="orphan", myproxy_server="myproxy:7512",
                                         created_at=now, updated_at=now, attempts=0, renewals=0))
        add_job(rt, "uses-expired", "Running", created_days=0.1, delegation_id="expired-in-use")
        add_job(rt, "done-with-unused", "Done", created_days=1, delegation_id="expired-unused")
        report = purge(rt)
        assert report.delegations == [(ALICE, "expired-unused")]
        assert report.renewals == [(ALICE, "orphan")]
        with rt.uow() as uow:
            assert sorted(uow.session.scalars(select(Delegation.delegation_id))) == ["expired-in-use", "valid"]
            assert sorted(uow.session.scalars(select(ProxyRenewal.delegation_id))) == ["expired-in-use", "valid"]

    def test_a_delegation_renewed_or_taken_after_the_listing_stays(self, rt: Runtime) -> None:
        """The purger lists expired unused delegations, then deletes them one by one: a putProxy
        that stores a fresh proxy under the same (DN, id) in between (an upsert of the row, as the
        default delegation id is fixed per DN and FQANs), or a job that starts using one, keeps it."""
        now = utcnow()
        with rt.uow() as uow:
            for did in ("renewed", "taken", "expired"):
                delegation, _request = sealed_rows(rt.sealer, ALICE, did, not_after=now - dt.timedelta(hours=1))
                uow.session.add(delegation)
                uow.session.add(ProxyRenewal(owner_dn=ALICE, delegation_id=did, myproxy_server="myproxy:7512",
                                             created_at=now, updated_at=now, attempts=0, renewals=0))
        live = [s.value for s in JobState if s not in FINAL_STATES]
        purger = rt.session_factory()
        try:
            store = SqlHousekeepingStore(purger)
            listed = store.unused_expired_delegations(now, live, limit=10)
            assert sorted(listed) == [(ALICE, "expired"), (ALICE, "renewed"), (ALICE, "taken")]
            if purger.get_bind().dialect.name == "sqlite":  # BEGIN IMMEDIATE: the other writer would wait
                purger.commit()
            with rt.uow() as uow:  # another process commits meanwhile (PostgreSQL: inside the purger's transaction)
                uow.session.execute(update(Delegation).where(Delegation.delegation_id == "renewed")
                                    .values(not_after=now + dt.timedelta(hours=12), updated_at=now))
            add_job(rt, "takes", "Running", created_days=0, delegation_id="taken")
            removed = [pair for pair in listed if store.remove_delegation(*pair, now, live)]
            purger.commit()
        finally:
            purger.close()
        assert removed == [(ALICE, "expired")]
        with rt.uow() as uow:
            assert sorted(uow.session.scalars(select(Delegation.delegation_id))) == ["renewed", "taken"]
            assert sorted(uow.session.scalars(select(ProxyRenewal.delegation_id))) == ["renewed", "taken"]

    def test_a_renewal_record_whose_delegation_came_back_after_the_listing_stays(self, rt: Runtime) -> None:
        """The purger lists renewal records whose delegation is gone, then deletes them one by one:
        one whose (DN, id) a putProxy stored a proxy under again in between keeps its record."""
        now = utcnow()
        with rt.uow() as uow:
            for did in ("back", "gone"):
                uow.session.add(ProxyRenewal(owner_dn=ALICE, delegation_id=did, myproxy_server="myproxy:7512",
                                             created_at=now, updated_at=now, attempts=0, renewals=0))
        purger = rt.session_factory()
        try:
            store = SqlHousekeepingStore(purger)
            assert sorted(store.orphan_renewals(UNFINISHED)) == [(ALICE, "back"), (ALICE, "gone")]
            if purger.get_bind().dialect.name == "sqlite":  # BEGIN IMMEDIATE: the other writer would wait
                purger.commit()
            with rt.uow() as uow:  # putProxy in another process
                delegation, _request = sealed_rows(rt.sealer, ALICE, "back", not_after=now + dt.timedelta(hours=12))
                uow.session.add(delegation)
            removed = [pair for pair in [(ALICE, "back"), (ALICE, "gone")]
                       if store.remove_renewal(*pair, UNFINISHED)]
            purger.commit()
        finally:
            purger.close()
        assert removed == [(ALICE, "gone")]
        with rt.uow() as uow:
            assert list(uow.session.scalars(select(ProxyRenewal.delegation_id))) == ["back"]

    def test_a_destroyed_delegations_renewal_record_stays_while_its_jobs_run(self, rt: Runtime) -> None:
        """A delegation destroyed while jobs use it keeps its renewal record until they end: a
        proxy delegated again under the same id is renewed for them (the purger dropped the
        record, and the jobs lost their renewal for good)."""
        now = utcnow()
        running = add_job(rt, "uses-destroyed", JobState.RUNNING.value, created_days=0.1, delegation_id="destroyed")
        add_job(rt, "ended", JobState.DONE.value, created_days=0.1, delegation_id="unused")
        with rt.uow() as uow:
            for did in ("destroyed", "unused"):
                uow.session.add(ProxyRenewal(owner_dn=ALICE, delegation_id=did, myproxy_server="myproxy:7512",
                                             created_at=now, updated_at=now, attempts=0, renewals=0))
        assert purge(rt, dry_run=True).renewals == [(ALICE, "unused")]
        assert purge(rt).renewals == [(ALICE, "unused")]
        with rt.uow() as uow:
            assert list(uow.session.scalars(select(ProxyRenewal.delegation_id))) == ["destroyed"]
            uow.jobs.set_state(uow.jobs.get(running), JobState.DONE.value, utcnow())
        assert purge(rt).renewals == [(ALICE, "destroyed")]

    def test_pending_requests_go_after_a_day(self, rt: Runtime) -> None:
        with rt.uow() as uow:
            for did, created in (("old", days_ago(1.1)), ("new", days_ago(0.5))):
                _delegation, request = sealed_rows(rt.sealer, ALICE, did, request_created=created)
                uow.session.add(request)
        assert purge(rt, dry_run=True).requests == 1
        assert purge(rt).requests == 1
        with rt.uow() as uow:
            assert list(uow.session.scalars(select(DelegationRequest.delegation_id))) == ["new"]

    def test_old_tombstones_go(self, rt: Runtime) -> None:
        job_id = add_job(rt, "gone", "Done", created_days=9, updated_days=8)
        purge(rt)
        report = purge(rt, now=utcnow() + dt.timedelta(days=91))
        assert report.tombstones == 1
        with rt.uow() as uow:
            assert SqlHousekeepingStore(uow.session).tombstone(job_id) is None


class TestWorkerTask:
    def test_the_execution_worker_runs_the_purger_every_interval(self, rt: Runtime) -> None:
        from wmproxy.execution.purging import purge_tasks

        Path(rt.settings.execution.work_dir).mkdir(mode=0o755, exist_ok=True)
        job_id = add_job(rt, "old", "Done", created_days=9, updated_days=8)
        [task] = purge_tasks(rt)
        assert task.interval == 21600
        task.run()
        assert not exists(rt, job_id)
        rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(enabled=False))
        assert purge_tasks(rt) == []
