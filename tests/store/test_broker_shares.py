"""The broker's matchmaking time per claim batch and per job owner (``wmproxy.services.broker_shares``,
docs/brokering.md "Matchmaking time: per cycle and per owner"), on each backend (SQLite file and
PostgreSQL: a claim batch takes a different path on each).

Each job's matchmaking CPU time is counted by a clock that advances a fixed step each time it is
read (:class:`Steps`), so a costly job (an ``anyMatch`` over 400 elements) costs the same "2 s" on
any machine, and a cheap one a few hundredths. Before these bounds a claim batch matched every costly
job it claimed (20 of them held the worker's cycle about 80 s) and one owner's costly jobs, the oldest
requests, were all matched before another owner's cheap job.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import classad2
import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.store.conftest import DELEGATION
from tests.support import build_runtime, close_runtime, delegate_in_process, principal_of
from wmproxy.config import BrokeringSettings, ConfigError
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.jdl.glite_functions import CallBudget, GliteCalls
from wmproxy.services import execution
from wmproxy.services.broker_shares import OwnerShares
from wmproxy.services.brokering import NO_MATCH
from wmproxy.services.execution import claim_starts
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job
from wmproxy.store.schema import ExecutionRequest, ExecutionWorkerRow, Job, JobEvent

CE = "ce.example.org:2119/jobmanager-pbs-long"
CATALOGUE = (f'[ GlueCEUniqueID = "{CE}"; GlueCEStateStatus = "Production"; '
             f'L = {{ {", ".join(str(n) for n in range(400))} }} ]\n')
#: 400 elements evaluated against the one CE: 400 reads of the clock, "2 s" (within the job's own 3 s).
COSTLY = '[ Executable = "/bin/true"; Requirements = anyMatch(other.L, target == 399); ]'
CHEAP = '[ Executable = "/bin/true"; Requirements = other.GlueCEStateStatus == "Production"; ]'
STEP = 0.005
ROOM = {"local": 8}


class Steps:
    """A CPU clock that advances :data:`STEP` "seconds" each time it is read: a job's matchmaking
    time counted in evaluations, whatever the machine's speed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += STEP
        return self.now


@pytest.fixture
def site(tmp_path: Path, pki: Pki, database_url: str, store_key_dir: Path) -> Iterator[Runtime]:
    """A runtime on the module's database (emptied first) whose catalogue is :data:`CE`; alice and
    bob have delegated under :data:`DELEGATION`."""
    catalogue = tmp_path / "ce-catalogue.ads"
    catalogue.write_text(CATALOGUE)
    runtime = build_runtime(tmp_path / "rt", pki, database={"url": database_url},
                            security={"store_key_file": str(store_key_dir / "store.key")},
                            jobs={"ce_catalogue": str(catalogue)},
                            brokering={"owner_match_cpu": 3.0})  # the tests' allowance: 3 s per 300 s
    with runtime.uow() as uow:
        for table in (ExecutionRequest, JobEvent, Job, ExecutionWorkerRow):
            uow.session.execute(sa.delete(table))
    for user in ("alice", "bob"):
        delegate_in_process(runtime, principal_of(pki, user), pki.users[user].proxy, DELEGATION)
    try:
        yield runtime
    finally:
        close_runtime(runtime)


@pytest.fixture
def evaluated(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the jobs whose Requirements the broker evaluated, in order; each under a
    :class:`Steps` clock."""
    seen: list[str] = []

    def calls(ad: classad2.ClassAd, job_id: str = "") -> GliteCalls:
        seen.append(job_id)
        return GliteCalls(ad, CallBudget(clock=Steps()), job_id=job_id)

    monkeypatch.setattr(execution, "GliteCalls", calls)
    return seen


def submit(rt: Runtime, pki: Pki, user: str, jdl: str, count: int = 1) -> list[str]:
    who: Principal = principal_of(pki, user)
    return [submit_job(rt, who, jdl, DELEGATION).job_id for _ in range(count)]


def cycle(rt: Runtime, shares: OwnerShares, now: dt.datetime) -> list[str]:
    """One worker cycle's claims (the worker's room: 8 local jobs), the ids claimed."""
    return [order.job_id for order in claim_starts(rt, "w1", ROOM, limit=8, now=now, shares=shares)]


def state(rt: Runtime, job_id: str) -> tuple[str, str | None, dt.datetime | None]:
    """The job's state and reason, and when its pending start request is due (None: at once)."""
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        pending = uow.queue.pending_for(job_id)
        return job.state, job.reason, pending[0].not_before if pending else None


def reasons(rt: Runtime, job_id: str) -> list[str | None]:
    with rt.uow() as uow:
        return list(uow.session.scalars(sa.select(JobEvent.reason).where(JobEvent.job_id == job_id)
                                        .order_by(JobEvent.id)))


def with_brokering(rt: Runtime, **fields: float) -> None:
    rt.settings = dataclasses.replace(rt.settings, brokering=dataclasses.replace(rt.settings.brokering, **fields))


def test_another_owners_cheap_job_is_matched_in_the_next_cycle_while_one_owner_has_costly_ones(
        site: Runtime, pki: Pki, evaluated: list[str]) -> None:
    costly = submit(site, pki, "alice", COSTLY, 6)
    cheap = submit(site, pki, "bob", CHEAP)[0]
    shares = OwnerShares.of(site.settings.brokering)
    now = utcnow()
    # The first cycle stops matching once it spent its 3 s: two of alice's jobs (2 s each), not six.
    assert cycle(site, shares, now) == costly[:2]
    assert evaluated == costly[:2]
    assert [state(site, job_id)[:2] for job_id in (*costly[2:], cheap)] == [("Waiting", None)] * 5
    # The next cycle: alice spent 4 s of her 3 s share; bob's job is matched first, then (nobody
    # else waiting) alice's until the cycle's 3 s are spent: two more.
    assert cycle(site, shares, now + dt.timedelta(seconds=1)) == [cheap, *costly[2:4]]
    assert evaluated == [*costly[:2], cheap, *costly[2:4]]
    for job_id in costly[4:]:
        assert state(site, job_id) == ("Waiting", None, None)  # not reached, its request as it was
        assert NO_MATCH not in str(reasons(site, job_id))


def test_more_held_requests_than_a_batch_looks_at_do_not_keep_another_owners_job_waiting(
        site: Runtime, pki: Pki, evaluated: list[str]) -> None:
    # A claim batch looks at limit + CLAIM_BATCH requests (28 here): alice's held requests, the
    # oldest, are passed over by the query itself, not claimed and set aside one by one.
    costly = submit(site, pki, "alice", COSTLY, 2)
    queued = submit(site, pki, "alice", COSTLY, 3 * (8 + execution.CLAIM_BATCH))
    cheap = submit(site, pki, "bob", CHEAP)[0]
    shares = OwnerShares.of(site.settings.brokering)
    now = utcnow()
    assert cycle(site, shares, now) == costly  # 4 s: the cycle's 3 s and alice's share spent
    assert cycle(site, shares, now + dt.timedelta(seconds=1))[0] == cheap  # first, ahead of alice's
    assert evaluated[:3] == [*costly, cheap]
    assert {state(site, job_id) for job_id in queued[2:]} == {("Waiting", None, None)}


def test_an_owner_past_their_share_with_nobody_else_waiting_is_matched_on(site: Runtime, pki: Pki,
                                                                          evaluated: list[str]) -> None:
    # The share orders the owners; it never leaves the worker idle while requests are due.
    costly = submit(site, pki, "alice", COSTLY, 4)
    shares = OwnerShares.of(site.settings.brokering)
    now = utcnow()
    assert cycle(site, shares, now) == costly[:2]
    assert shares.free_at(principal_of(pki, "alice").dn, now) is not None  # past her share
    assert cycle(site, shares, now + dt.timedelta(seconds=1)) == costly[2:]
    assert evaluated == costly
    for job_id in costly:
        assert state(site, job_id)[0] == JobState.READY.value
        assert NO_MATCH not in str(reasons(site, job_id))


def test_requests_a_spent_cycle_did_not_reach_stay_queued_unchanged_and_are_matched_next(
        site: Runtime, pki: Pki, evaluated: list[str]) -> None:
    with_brokering(site, owner_match_cpu=0)  # the cycle's bound alone
    costly = submit(site, pki, "alice", COSTLY, 3)
    shares = OwnerShares.of(site.settings.brokering)
    now = utcnow()
    before = reasons(site, costly[2])
    assert cycle(site, shares, now) == costly[:2]
    assert evaluated == costly[:2]
    assert state(site, costly[2]) == ("Waiting", None, None)  # due at once, its reason unchanged
    assert reasons(site, costly[2]) == before  # no event: not a failed match
    assert cycle(site, shares, now) == costly[2:]  # the next cycle, at the same time
    assert evaluated == costly


def test_without_bounds_a_cycle_matches_every_job_it_claims(site: Runtime, pki: Pki, evaluated: list[str]) -> None:
    with_brokering(site, owner_match_cpu=0, cycle_match_cpu=0)
    costly = submit(site, pki, "alice", COSTLY, 4)
    assert cycle(site, OwnerShares.of(site.settings.brokering), utcnow()) == costly
    assert evaluated == costly


def test_every_job_of_an_owner_past_their_share_waits_behind_other_owners_submit_to_ones_too_and_one_warning(
        site: Runtime, pki: Pki, evaluated: list[str], caplog: pytest.LogCaptureFixture) -> None:
    costly = submit(site, pki, "alice", COSTLY, 2)
    shares = OwnerShares.of(site.settings.brokering)
    now = utcnow()
    with caplog.at_level("WARNING", logger="wmproxy.services.execution"):
        assert cycle(site, shares, now) == costly
        named = submit(site, pki, "alice", f'[ Executable = "/bin/true"; SubmitTo = "{CE}"; ]')
        more = submit(site, pki, "alice", CHEAP)
        cheap = submit(site, pki, "bob", CHEAP)
        assert cycle(site, shares, now + dt.timedelta(seconds=1)) == [*cheap, *named, *more]  # bob's first
    until = (now + dt.timedelta(seconds=site.settings.brokering.match_retry_period)).isoformat()
    warning = (f"owner {principal_of(pki, 'alice').dn}: the matchmaking of their jobs took 4.05 s of CPU in the last "
               f"300 s on this worker ([brokering] owner_match_cpu 3 s): until {until} their further jobs wait, not "
               "evaluated, while other owners' jobs are due")
    assert [record.getMessage() for record in caplog.records if record.getMessage().startswith("owner ")] == [warning]


@pytest.mark.parametrize("fields", [{"cycle_match_cpu": -1.0}, {"owner_match_cpu": float("inf")},
                                    {"owner_match_cpu": float("nan")}])
def test_a_bound_that_is_no_number_of_seconds_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="cycle_match_cpu and owner_match_cpu"):
        BrokeringSettings(**fields)

