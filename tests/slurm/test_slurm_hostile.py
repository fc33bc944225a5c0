"""A hostile payload against the other jobs the worker follows on Slurm (red team): it renames
its own Slurm job (``scontrol update JobName=...``, allowed to a job's owner at any time) with
newlines in the name. When the worker's squeue printed names, each newline began a line the
payload wrote: another account's running job read as COMPLETED (its work dir released while it
ran), or as held (scancelled as its account), and one malformed line left every job without an
outcome. The state query prints no field a job's owner sets now, and a bad line is skipped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import support
from tests.accounts import AccountSet, local_accounts
from tests.peers.slurm import SlurmCluster
from tests.slurm.slurm_support import launch, make_backend, wait_outcome, wait_started
from wmproxy.domain import JobState
from wmproxy.execution.backends import RunHandle
from wmproxy.execution.backends.slurm import SlurmExecutionBackend
from wmproxy.execution.identity import Account


@pytest.fixture(scope="module")
def two_accounts() -> Iterator[AccountSet]:
    with local_accounts({"atk": ["atk001"], "vic": ["vic001"]}) as accounts:
        yield accounts


@pytest.fixture
def attacker(two_accounts: AccountSet) -> Account:
    return Account.from_name(two_accounts.name("atk001"))


@pytest.fixture
def victim(two_accounts: AccountSet) -> Account:
    return Account.from_name(two_accounts.name("vic001"))


def forge(victim_name: str, template: str) -> str:
    """Payload: rename its own job so that the worker's former squeue (``%i|%T|%V|%j|%r|%Z``)
    printed ``template`` (``{id}`` = each of the victim account's Slurm jobs) as lines of their
    own, sorted after the victim's real line (Nice=1000); then ``forged`` in forge.out."""
    line = f'name="$name$nl{template}"; '.replace("{id}", "$i")
    return ('sleep 1; ids=$(squeue -h -u ' + victim_name + ' -o %i); nl="\n"; name="wmp_x|None|/x"; '
            f'for i in $ids; do {line}done; '
            'scontrol update JobId=$SLURM_JOB_ID Nice=1000 "JobName=$name" > forge.out 2>&1 '
            '&& echo forged >> forge.out; '
            'exec sleep 300')


def slurm_state(cluster: SlurmCluster, slurm_id: int | None) -> str:
    return cluster.run("squeue", "-h", "--states=all", "-o", "%T", "-j", str(slurm_id), check=False).stdout.strip()


def polls(backend: SlurmExecutionBackend, *handles: RunHandle, rounds: int = 20) -> bool:
    """``rounds`` squeue rounds of the backend (its ``refresh`` apart), every job polled: none ends."""
    for _ in range(rounds):
        for handle in handles:
            assert backend.poll(handle) is None
        time.sleep(backend.refresh)
    return True


@pytest.mark.parametrize("template", ["{id}|COMPLETED|0|x|None|/x", "{id}|PENDING|0|x|JobHeldAdmin|/x"],
                         ids=["ended", "held"])
def test_a_renamed_job_neither_ends_nor_cancels_another_accounts_running_job(
    slurm_cluster: SlurmCluster, work_root: Path, attacker: Account, victim: Account, tmp_path: Path, template: str,
) -> None:
    backend = make_backend(slurm_cluster, work_root, max_pending=0.5)
    (tmp_path / "v").mkdir()
    (tmp_path / "a").mkdir()
    vic = backend.spawn(backend.prepare(launch(victim, tmp_path / "v", "echo working; exec sleep 300")))
    wait_started(backend, vic)
    atk = backend.spawn(backend.prepare(launch(attacker, tmp_path / "a", forge(victim.name, template))))
    forged = atk.work_dir / "forge.out"
    try:
        support.wait_for(lambda: polls(backend, vic, atk, rounds=1) and forged.exists() and "forged" in
                         forged.read_text(), what="the payload's rename", timeout=90, interval=0.0)
        polls(backend, vic, atk)
        assert slurm_state(slurm_cluster, vic.pid) == "RUNNING"
        assert backend._followed[str(vic.pid)].expired is None  # never taken for a held job and scancelled
        assert vic.work_dir.is_dir()
    finally:
        for handle in (vic, atk):
            slurm_cluster.run("scancel", str(handle.pid), check=False)
    assert wait_outcome(backend, vic).payload_started  # its end (the scancel above) is read as usual


def test_a_malformed_name_holds_no_other_jobs_outcome(
    slurm_cluster: SlurmCluster, work_root: Path, attacker: Account, victim: Account, tmp_path: Path,
) -> None:
    backend = make_backend(slurm_cluster, work_root)
    (tmp_path / "v").mkdir()
    (tmp_path / "a").mkdir()
    atk = backend.spawn(backend.prepare(launch(
        attacker, tmp_path / "a", 'scontrol update JobId=$SLURM_JOB_ID "JobName=wmp_x\ngarbage"; exec sleep 300')))
    try:
        wait_started(backend, atk)
        vic = backend.spawn(backend.prepare(launch(victim, tmp_path / "v", "sleep 2; echo done")))
        outcome = wait_outcome(backend, vic)
        assert (outcome.state, outcome.exit_code) == (JobState.DONE, 0)
        assert backend.poll(atk) is None
    finally:
        slurm_cluster.run("scancel", str(atk.pid), check=False)
