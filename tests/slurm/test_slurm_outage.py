"""The Slurm backend while slurmctld is down (stopped, as an administrator's restart does):
one squeue per refresh for every job it follows, not one per job (a squeue that finds no
controller takes seconds), and a cancel that could not reach slurmctld is sent again once
it is back. Jobs without Slurm id are looked for by one squeue of their names."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import support
from tests.peers.slurm import SlurmCluster
from tests.slurm.slurm_support import DEADLINE, empty_queue, launch, make_backend, wait_started
from wmproxy.domain import JobState
from wmproxy.execution.backends import RunHandle
from wmproxy.execution.backends.local import CANCEL_MARGIN
from wmproxy.execution.backends.slurm import SlurmExecutionBackend
from wmproxy.execution.identity import Account
from wmproxy.execution.slurm import SlurmCommands


class Counted(SlurmCommands):
    """The real Slurm commands, each run recorded by program name."""

    def __init__(self, slurm_conf: Path) -> None:
        super().__init__(slurm_conf)
        self.runs: list[str] = []

    def run(self, name: str, *args: str, **options: object) -> str:
        self.runs.append(name)
        return super().run(name, *args, **options)  # type: ignore[arg-type]


@pytest.fixture
def restarted(slurm_cluster: SlurmCluster, work_root: Path) -> Iterator[SlurmCluster]:
    """The cluster, its controller restarted after the test once its jobs are gone, so that the
    node shows idle again (:meth:`SlurmCluster.restart_controller`) for the next test."""
    yield slurm_cluster
    empty_queue(slurm_cluster)
    slurm_cluster.restart_controller()


def cycle(backend: SlurmExecutionBackend, handles: list[RunHandle]) -> None:
    """One worker cycle's polls: every job still running (or its state unknown)."""
    for handle in handles:
        assert backend.poll(handle) is None


def test_an_outage_costs_one_squeue_per_refresh_not_one_per_job(
    restarted: SlurmCluster, work_root: Path, account: Account, input_dir: Path
) -> None:
    slurm_cluster = restarted
    commands = Counted(slurm_cluster.conf)
    backend = make_backend(slurm_cluster, work_root, commands=commands, refresh=1.0, submit_settle=3600.0)
    followed = [backend.spawn(backend.prepare(launch(account, input_dir, "sleep 3600"))) for _ in range(3)]
    dead = make_backend(slurm_cluster, work_root)  # a worker that died before its sbatch: jobs without id
    unresolved = [backend.attach(dead.prepare(launch(account, input_dir, "true")).ref, account) for _ in range(3)]
    handles = followed + [handle for handle in unresolved if handle is not None]
    assert len(handles) == 6
    cycle(backend, handles)

    per_cycle: list[int] = []
    with slurm_cluster.controller_down():
        deadline = time.monotonic() + 4 * DEADLINE
        while sum(1 for count in per_cycle if count) < 3:  # three cycles that asked Slurm
            assert time.monotonic() < deadline, f"squeue was not tried again during the outage: {per_cycle}"
            before = len(commands.runs)
            cycle(backend, handles)
            per_cycle.append(len(commands.runs) - before)
            time.sleep(0.05)
        assert set(commands.runs[-sum(per_cycle):]) == {"squeue"}
    assert max(per_cycle) == 1, f"Slurm commands per cycle of 6 polls with slurmctld down: {per_cycle}"


def test_jobs_without_slurm_id_are_looked_for_with_one_squeue(
    slurm_cluster: SlurmCluster, work_root: Path, account: Account, input_dir: Path
) -> None:
    dead = make_backend(slurm_cluster, work_root)  # the worker that died before (or during) its sbatches
    prepared = [dead.prepare(launch(account, input_dir, "sleep 3600")) for _ in range(4)]
    refs = [handle.ref for handle in prepared]
    dead.spawn(prepared[0])  # that one sbatch went through before the worker died
    commands = Counted(slurm_cluster.conf)
    heir = make_backend(slurm_cluster, work_root, commands=commands, refresh=DEADLINE, submit_settle=3600.0)
    adopted = [heir.attach(ref, account) for ref in refs]
    handles = [handle for handle in adopted if handle is not None]
    assert len(handles) == 4

    cycle(heir, handles)

    # one for the four, within one refresh period, and one asking Slurm the work dir of the one
    # it lists (one job per squeue: a work dir its owner set with a newline cannot forge a line)
    assert commands.runs == ["squeue", "squeue"]
    assert handles[0].pid == prepared[0].pid
    assert [handle.pid for handle in handles[1:]] == [None, None, None]  # waited for (submit_settle)


def test_a_cancel_sent_while_slurmctld_is_down_is_sent_again_once_it_is_back(
    restarted: SlurmCluster, work_root: Path, account: Account, input_dir: Path
) -> None:
    slurm_cluster = restarted
    backend = make_backend(slurm_cluster, work_root)
    handle = backend.spawn(backend.prepare(launch(account, input_dir, "echo start; sleep 3600")))
    wait_started(backend, handle)

    with slurm_cluster.controller_down():  # past the time the cancel would escalate to a plain scancel
        first = time.monotonic()
        while time.monotonic() - first <= backend.kill_grace + CANCEL_MARGIN + 1.0:
            backend.cancel(handle)  # the worker's cycles: the cancel, then the polls
            assert backend.poll(handle) is None
            time.sleep(0.2)
        backend.cancel(handle)  # a cycle past that time (a poll may have taken the end of the loop)

    def cancelled() -> object:
        backend.cancel(handle)
        return backend.poll(handle)

    outcome = support.wait_for(cancelled, lambda outcome: outcome is not None, timeout=DEADLINE, interval=0.2,
                               what="the job cancelled during the outage to end")  # the payload sleeps an hour
    assert outcome is not None and outcome.state == JobState.CANCELLED
