"""The execution worker keeps each job owner's matchmaking time across its cycles
(``ExecutionWorker.match_shares``, docs/brokering.md "Matchmaking time: per cycle and per owner"):
another owner's cheap job is matched in the worker's next cycle while one owner has costly jobs
queued ahead of it. The claims themselves, on both databases: ``tests/store/test_broker_shares.py``.

A job's matchmaking CPU time is counted by a clock that advances a fixed step each time it is read,
whatever the machine's speed; the cheap job is matched to a Slurm CE, which this worker lacks, so
it is left Waiting with a reason that names the CE it was matched to (nothing is spawned).
"""

from __future__ import annotations

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
    worker.step()  # alice spent her share (4 s of 3 s) in the first cycle: her jobs are held back
    assert evaluated == [*costly[:2], cheap]
    assert job_row(rt, cheap) == (
        "Waiting", f"matched to CE {SLURM}: waiting for a worker with its slurm backend", None)
    assert [job_row(rt, job_id)[1] for job_id in costly] == [
        *[f"{NO_MATCH}"] * 2, *[worker.match_shares.reason()] * 4]
