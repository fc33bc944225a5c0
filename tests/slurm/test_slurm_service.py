"""The whole service in front of the throwaway Slurm cluster (issue 9), on SQLite and PostgreSQL.

The deployment is :func:`tests.integration.isolated.isolated_deployment` with ``slurm_conf``:
gunicorn and the worker as a throwaway service user, alice mapped to her own account, the
worker running the local and the Slurm backend, and the catalogue holding the local test CEs
plus two Slurm CEs (partitions ``debug`` and ``long``). Jobs go through the reference
WSDL's operations (zeep); where they ran is read from what the job itself saw (Slurm's
``SLURM_*`` variables) and from Slurm (``squeue``/``scontrol``).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tests.conftest import Pki
from tests.integration.isolated import Isolated, isolated_deployment
from tests.integration.refclient import ReferenceClient, reference_client
from tests.peers.slurm import SlurmCluster
from tests.support import delegate, outputs, wait_for, wait_for_final

pytestmark = pytest.mark.integration

#: A job that says where it runs.
WHERE = ('[ Executable = "/bin/sh"; Arguments = "-c \'echo job=$SLURM_JOB_ID partition=$SLURM_JOB_PARTITION; '
         'id -un\'"; StdOutput = "where.out"; StdError = "where.err"; OutputSandbox = {"where.out", "where.err"}; '
         'Requirements = {requirements}; {extra} ]')


def where_jdl(requirements: str, extra: str = "") -> str:
    return WHERE.replace("{requirements}", requirements).replace("{extra}", extra)


@pytest.fixture(scope="module")
def iso(pki: Pki, database_url: str, slurm_cluster: SlurmCluster) -> Iterator[Isolated]:
    with isolated_deployment(pki, database_url, slurm_conf=slurm_cluster.conf,
                             execution="max_running = 8\nheartbeat_lease = 4") as deployment:
        yield deployment


@pytest.fixture(scope="module")
def alice(iso: Isolated, pki: Pki) -> ReferenceClient:
    ref = reference_client(iso.deployment.endpoint, pki.users["alice"].proxy, iso.root / "certificates")
    delegate(ref, pki.users["alice"].proxy, "slurm")
    return ref


def test_a_job_matched_to_a_slurm_ce_runs_in_its_partition_as_the_mapped_account(
        iso: Isolated, alice: ReferenceClient) -> None:
    job = alice.wmproxy.jobSubmit(where_jdl('RegExp("slurm-debug", other.GlueCEUniqueID)'), "slurm").id
    assert wait_for_final(alice, job) == "Done (Exit Code 0)"
    out = outputs(alice, job)["where.out"].decode()
    assert "partition=debug" in out
    job_line, account = out.split("\n")[:2]
    assert job_line.split()[0] != "job=", out  # a Slurm job id
    assert account == iso.mapped["alice"].pw_name


def test_a_job_needing_a_value_only_slurm_publishes_runs_once_the_state_is_refreshed(
        alice: ReferenceClient) -> None:
    """``GlueCEInfoTotalCPUs`` is not in the catalogue entry: only the worker's refresh from
    sinfo puts it there, so this job can match only through the refreshed state."""
    job = alice.wmproxy.jobSubmit(
        where_jdl('RegExp("slurm-long", other.GlueCEUniqueID) && other.GlueCEInfoTotalCPUs > 0'), "slurm").id
    assert wait_for_final(alice, job) == "Done (Exit Code 0)"
    assert "partition=long" in outputs(alice, job)["where.out"].decode()


def test_rank_chooses_between_a_local_ce_and_a_slurm_ce(alice: ReferenceClient) -> None:
    to_slurm = alice.wmproxy.jobSubmit(where_jdl(
        'other.GlueCEStateStatus == "Production"',
        'Rank = RegExp("slurm-debug", other.GlueCEUniqueID) ? 100 : 0;'), "slurm").id
    to_local = alice.wmproxy.jobSubmit(where_jdl(
        'other.GlueCEStateStatus == "Production"',
        'Rank = RegExp("slurm", other.GlueCEUniqueID) ? -100 : 0;'), "slurm").id
    assert wait_for_final(alice, to_slurm) == "Done (Exit Code 0)"
    assert wait_for_final(alice, to_local) == "Done (Exit Code 0)"
    assert "partition=debug" in outputs(alice, to_slurm)["where.out"].decode()
    assert "job= partition=" in outputs(alice, to_local)["where.out"].decode()  # no Slurm variables


def test_submit_to_names_the_slurm_ce_directly(alice: ReferenceClient) -> None:
    job = alice.wmproxy.jobSubmit(where_jdl("false", 'SubmitTo = "localhost:6817/slurm-long";'), "slurm").id
    assert wait_for_final(alice, job) == "Done (Exit Code 0)"
    assert "partition=long" in outputs(alice, job)["where.out"].decode()


def test_cancel_stops_the_job_in_slurm(alice: ReferenceClient, slurm_cluster: SlurmCluster) -> None:
    jdl = ('[ Executable = "/bin/sleep"; Arguments = "600"; '
           'Requirements = RegExp("slurm-debug", other.GlueCEUniqueID) ]')
    job = alice.wmproxy.jobSubmit(jdl, "slurm").id
    wait_for(lambda: str(alice.wmproxy.getJobStatus(job).status), lambda s: s == "Running",
             what=f"{job} to run in Slurm")
    before = set(slurm_cluster.queue())
    assert before, "the job is not in Slurm's queue"
    alice.wmproxy.jobCancel(job)
    assert wait_for_final(alice, job).startswith("Cancelled")
    wait_for(lambda: set(slurm_cluster.queue()) & before, lambda left: not left,
             what="the cancelled job to leave Slurm")


def test_a_failing_prologue_is_a_shallow_failure_retried_then_aborted(alice: ReferenceClient) -> None:
    jdl = ('[ Executable = "/bin/hostname"; StdOutput = "std.out"; OutputSandbox = {"std.out"}; '
           'Prologue = "/bin/false"; ShallowRetryCount = 1; '
           'Requirements = RegExp("slurm-debug", other.GlueCEUniqueID) ]')
    job = alice.wmproxy.jobSubmit(jdl, "slurm").id
    assert wait_for_final(alice, job) == "Aborted (hit job shallow retry count (1))"


def test_a_failing_epilogue_is_a_deep_failure_retried_then_aborted(alice: ReferenceClient) -> None:
    jdl = ('[ Executable = "/bin/hostname"; StdOutput = "std.out"; OutputSandbox = {"std.out"}; '
           'Epilogue = "/bin/false"; RetryCount = 1; '
           'Requirements = RegExp("slurm-debug", other.GlueCEUniqueID) ]')
    job = alice.wmproxy.jobSubmit(jdl, "slurm").id
    assert wait_for_final(alice, job) == "Aborted (hit job retry count (1))"


def test_kill_9_of_the_worker_with_jobs_in_slurm_then_restart(iso: Isolated, alice: ReferenceClient,
                                                               slurm_cluster: SlurmCluster) -> None:
    """Jobs keep running in Slurm while no worker lives; the restarted worker (same name)
    follows them by their Slurm job ids to their end."""
    marker = iso.shared / "release"
    jdl = ('[ Executable = "/bin/sh"; Arguments = "-c \'while [ ! -e ' + str(marker) + ' ]; do sleep 0.2; done; '
           'echo released\'"; StdOutput = "std.out"; OutputSandbox = {"std.out"}; '
           'Requirements = RegExp("slurm-debug", other.GlueCEUniqueID) ]')
    jobs = [alice.wmproxy.jobSubmit(jdl, "slurm").id for _ in range(2)]
    for job in jobs:
        wait_for(lambda job=job: str(alice.wmproxy.getJobStatus(job).status), lambda s: s == "Running",
                 what=f"{job} to run in Slurm")
    worker = next(p for p in iso.deployment.processes if "wmproxy.execution" in " ".join(map(str, p.args)))
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    iso.deployment.processes.remove(worker)
    marker.write_text("")
    wait_for(lambda: len(slurm_cluster.queue()), lambda n: n == 0, what="the jobs to end in Slurm")
    assert all(str(alice.wmproxy.getJobStatus(job).status) == "Running" for job in jobs)  # nobody followed them
    iso.deployment.start_worker()
    for job in jobs:
        assert wait_for_final(alice, job) == "Done (Exit Code 0)"
        assert outputs(alice, job)["std.out"] == b"released\n"


def test_a_dag_runs_its_nodes_in_slurm_in_dependency_order(iso: Isolated, alice: ReferenceClient) -> None:
    """nodeB runs only after nodeA ended: it finds the file nodeA wrote, and both ran in Slurm."""
    mark = iso.shared / "dag-nodeA-done"
    dag = ('[ Type = "dag"; Requirements = RegExp("slurm-debug", other.GlueCEUniqueID); nodes = [ '
           'nodeA = [ Description = [ Executable = "/bin/sh"; Arguments = "-c \'sleep 1; echo A $SLURM_JOB_ID; '
           f'touch {mark}\'"; StdOutput = "a.out"; OutputSandbox = {{"a.out"}}; ]; ]; '
           'nodeB = [ Description = [ Executable = "/bin/sh"; Arguments = "-c \'echo B $SLURM_JOB_ID; '
           f'test -e {mark}\'"; StdOutput = "b.out"; OutputSandbox = {{"b.out"}}; ]; ]; '
           'dependencies = { { nodeA, nodeB } }; ]; ]')
    job = alice.wmproxy.jobSubmit(dag, "slurm")
    nodes = {c.name: c.id for c in job.childrenJob}
    assert wait_for_final(alice, job.id) == "Done (Exit Code 0)"
    for name, letter in (("nodeA", "A"), ("nodeB", "B")):
        assert wait_for_final(alice, nodes[name]) == "Done (Exit Code 0)"
        words = outputs(alice, nodes[name])[f"{letter.lower()}.out"].decode().split()
        assert words[0] == letter and len(words) == 2, words  # a Slurm job id follows


def test_perusal_of_a_job_running_in_slurm(iso: Isolated, alice: ReferenceClient) -> None:
    """The worker samples a perused file of a Slurm job from the shared work dir while it runs."""
    release = iso.shared / "release-slurm-perusal"
    script = f"echo $SLURM_JOB_PARTITION > live.txt; while [ ! -e {release} ]; do sleep 0.2; done"
    jdl = (f'[ Executable = "/bin/sh"; Arguments = "-c \'{script}\'"; PerusalFileEnable = true; '
           'PerusalTimeInterval = 1; Requirements = RegExp("slurm-debug", other.GlueCEUniqueID) ]')
    job = alice.wmproxy.jobRegister(jdl, "slurm")
    alice.wmproxy.enableFilePerusal(job.id, {"Item": ["live.txt"]})
    alice.wmproxy.jobStart(job.id)
    uris = wait_for(lambda: alice.wmproxy.getPerusalFiles(job.id, "live.txt", True, "https"),
                    what="a perusal chunk of live.txt")
    assert str(alice.wmproxy.getJobStatus(job.id).status) == "Running"  # sampled while it ran
    assert b"".join(alice.session.get(u).content for u in uris) == b"debug\n"
    release.touch()
    assert wait_for_final(alice, job.id) == "Done (Exit Code 0)"
