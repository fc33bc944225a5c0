"""The execution worker keeps each job owner's matchmaking time across its cycles
(``ExecutionWorker.match_shares``, docs/brokering.md "Matchmaking time: per cycle and per owner"):
another owner's cheap job is matched in the worker's next cycle while one owner has costly jobs
queued ahead of it; and the per-owner window itself (:class:`OwnerShares`). The claims, on both
databases: ``tests/store/test_broker_shares.py``.

A job's matchmaking CPU time is counted by a clock that advances a fixed step each time it is read,
whatever the machine's speed; the cheap job is matched to a Slurm CE, which this worker lacks, so
it is left Waiting with a reason that names the CE it was matched to (nothing is spawned).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import classad2
import pytest

from tests.conftest import Pki
from tests.support import delegate_in_process, principal_of
from tests.unit.services.brokering_support import RankedRuntime, job_row
from tests.unit.services.conftest import DELEGATION
from wmproxy.execution.backends.local import LocalExecutionBackend
from wmproxy.execution.worker import ExecutionWorker
from wmproxy.jdl.glite_functions import CallBudget, GliteCalls
from wmproxy.services import execution
from wmproxy.services.broker_shares import OwnerShares
from wmproxy.services.brokering import NO_MATCH
from wmproxy.services.submission import submit_job

LOCAL = "ce.example.org:2119/jobmanager-pbs-long"
SLURM = "batch.example.org:6817/slurm-short"
CATALOGUE = f"""
[ GlueCEUniqueID = "{LOCAL}"; GlueCEStateStatus = "Production"; L = {{ {", ".join(str(n) for n in range(400))} }} ]
[ GlueCEUniqueID = "{SLURM}"; GlueCEStateStatus = "Production"; WMProxyBackend = "slurm"; SlurmPartition = "short" ]
"""
#: 400 elements against the local CE, none true ("2 s" of the clock below): no CE matches.
COSTLY = '[ Executable = "/bin/true"; Requirements = anyMatch(other.L, target == 1000); ]'
CHEAP = f'[ Executable = "/bin/true"; Requirements = other.GlueCEUniqueID == "{SLURM}"; ]'


class Steps:
    """A CPU clock that advances 5 ms each time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.005
        return self.now


def test_the_worker_holds_one_owners_costly_jobs_back_and_matches_anothers_in_its_next_cycle(
        broker_rt: RankedRuntime, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = broker_rt(CATALOGUE)
    rt.settings = dataclasses.replace(  # an allowance of 3 s per 300 s (the default), whatever the default
        rt.settings, brokering=dataclasses.replace(rt.settings.brokering, owner_match_cpu=3.0))
    alice, bob = principal_of(pki, "alice"), principal_of(pki, "bob")
    delegate_in_process(rt, bob, pki.users["bob"].proxy, DELEGATION)
    costly = [submit_job(rt, alice, COSTLY, DELEGATION).job_id for _ in range(6)]
    cheap = submit_job(rt, bob, CHEAP, DELEGATION).job_id
    evaluated: list[str] = []

    def calls(ad: classad2.ClassAd, job_id: str = "") -> GliteCalls:
        evaluated.append(job_id)
        return GliteCalls(ad, CallBudget(clock=Steps()), job_id=job_id)

    monkeypatch.setattr(execution, "GliteCalls", calls)
    worker = ExecutionWorker(rt, {"local": LocalExecutionBackend(tmp_path / "work", kill_grace=2.0)}, "w1")
    worker.step()
    assert evaluated == costly[:2]  # 4 s: the cycle's 3 s spent, the rest wait for the next
    assert job_row(rt, cheap) == ("Waiting", None, None)
    worker.step()  # alice spent her share (4 s of 3 s) in the first cycle: bob's job goes first
    assert evaluated == [*costly[:2], cheap, *costly[2:4]]  # then hers (nobody else waits), 3 s a cycle
    assert job_row(rt, cheap) == (
        "Waiting", f"matched to CE {SLURM}: waiting for a worker with its slurm backend", None)
    assert [job_row(rt, job_id)[1] for job_id in costly] == [
        *[f"{NO_MATCH}"] * 4, *[None] * 2]  # the last two not reached: their reasons as they were


T0 = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


class TestOwnerShares:
    """The per-owner window itself: 3 s of CPU per 300 s."""

    def test_an_owner_is_held_back_until_enough_of_their_time_left_the_window(self) -> None:
        shares = OwnerShares(3.0, 300.0)
        shares.charge("/CN=a", at(0), 1.0)
        shares.charge("/CN=a", at(10), 1.5)
        assert shares.free_at("/CN=a", at(10)) is None  # 2.5 s: under the allowance
        shares.charge("/CN=a", at(20), 1.0)
        # 3.5 s: free again once the first second has left the window (2.5 s then)
        assert shares.free_at("/CN=a", at(20)) == at(300)
        assert shares.free_at("/CN=a", at(299)) == at(300)
        assert shares.free_at("/CN=a", at(300)) is None
        assert shares.spent("/CN=a", at(300)) == 2.5
        assert shares.free_at("/CN=b", at(20)) is None  # another owner: their own share

    def test_one_costly_job_holds_its_owner_back_for_the_whole_window(self) -> None:
        shares = OwnerShares(3.0, 300.0)
        shares.charge("/CN=a", at(5), 4.2)
        assert shares.free_at("/CN=a", at(5)) == at(305)

    def test_a_batchs_charges_are_kept_as_one_and_owners_gone_quiet_are_forgotten(self) -> None:
        shares = OwnerShares(3.0, 300.0)
        for _ in range(1000):
            shares.charge("/CN=a", at(0), 0.001)
        shares.charge("/CN=b", at(1), 0.5)
        assert [len(charges) for charges in shares._spent.values()] == [1, 1]
        shares.charge("/CN=c", at(400), 0.5)  # a window later: a and b are forgotten
        assert list(shares._spent) == ["/CN=c"]

    def test_charges_adding_up_to_the_allowance_reach_it(self) -> None:
        # Thirty charges of 0.1 s are the allowance of 3 s: summed as floats they made
        # 2.9999999999999996, which left the owner within their share.
        shares = OwnerShares(3.0, 300.0)
        for second in range(30):
            shares.charge("/CN=a", at(second), 0.1)
        assert shares.spent("/CN=a", at(29)) == 3.0
        assert shares.free_at("/CN=a", at(29)) == at(300)
        assert shares.free_at("/CN=a", at(300)) is None  # the first 0.1 s left the window
        assert shares.spent("/CN=a", at(300)) == 2.9

    def test_whether_an_owner_is_within_their_share_reads_none_of_their_charges(self) -> None:
        # A busy worker keeps one charge per claim batch of the window (thousands), and every
        # claimed job asks twice: the answer comes from a total kept with the charges.
        class Counted(deque[tuple[dt.datetime, int]]):
            reads = 0

            def __iter__(self) -> Iterator[tuple[dt.datetime, int]]:
                Counted.reads += 1
                return super().__iter__()

        shares = OwnerShares(3.0, 300.0)
        for batch in range(1000):
            shares.charge("/CN=a", at(batch / 10), 0.001)
        shares._spent["/CN=a"] = Counted(shares._spent["/CN=a"])
        Counted.reads = 0
        assert shares.free_at("/CN=a", at(100)) is None
        assert shares.held(at(100)) == ()
        assert shares.spent("/CN=a", at(100)) == 1.0
        assert Counted.reads == 0
        shares.charge("/CN=a", at(100), 2.5)  # past the allowance: when it is free again is read from them
        assert shares.free_at("/CN=a", at(100)) == at(300 + 50)
        shares.charge("/CN=a", at(500), 0.5)  # the old ones left the window, and their time with them
        assert shares.spent("/CN=a", at(500)) == 0.5
        assert shares.free_at("/CN=a", at(500)) is None

    def test_no_bound_counts_nothing(self) -> None:
        shares = OwnerShares(0.0, 300.0)
        shares.charge("/CN=a", at(0), 100.0)
        assert shares.free_at("/CN=a", at(0)) is None
        assert not shares._spent
