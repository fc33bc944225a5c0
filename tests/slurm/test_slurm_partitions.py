"""CE attributes read from Slurm (issue 9, point 1, the Slurm side): a partition's Glue values
follow what runs and waits there and how the administrator set it up."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import support
from tests.peers.slurm import SlurmCluster
from tests.slurm.slurm_support import DEADLINE, empty_queue, resume_node
from wmproxy.execution.slurm import UNREACHABLE_RESPONSE_TIME, SlurmCommands, SlurmError


@pytest.fixture
def commands(slurm_cluster: SlurmCluster) -> Iterator[SlurmCommands]:
    """The driver; the queue, the node and both partitions are put back afterwards."""
    yield SlurmCommands(slurm_cluster.conf)
    empty_queue(slurm_cluster)
    for name in ("debug", "long"):
        slurm_cluster.run("scontrol", "update", f"PartitionName={name}", "State=UP", "MaxTime=INFINITE")
    resume_node(slurm_cluster)


def sleeper(cluster: SlurmCluster) -> Path:
    path = cluster.root / "sleeper.sh"
    if not path.exists():
        path.write_text("#!/bin/sh\nexec sleep 600\n")
        path.chmod(0o755)
    return path


def test_an_idle_partition_is_in_production_with_every_cpu_free(commands: SlurmCommands) -> None:
    cpus = os.cpu_count() or 1

    state = commands.partition_state("debug")

    assert state == {
        "GlueCEInfoTotalCPUs": cpus, "GlueCEStateFreeCPUs": cpus, "GlueCEStateFreeJobSlots": cpus,
        "GlueCEStateRunningJobs": 0, "GlueCEStateWaitingJobs": 0, "GlueCEStateTotalJobs": 0,
        "GlueCEStateStatus": "Production", "GlueCEStateEstimatedResponseTime": 0,
    }  # MaxTime=INFINITE: no GlueCEPolicyMaxWallClockTime


def test_running_and_waiting_jobs_change_the_free_cpus_counts_and_response_time(
    commands: SlurmCommands, slurm_cluster: SlurmCluster
) -> None:
    before = commands.partition_states(["debug", "long"])
    total = int(before["debug"]["GlueCEInfoTotalCPUs"])
    script = sleeper(slurm_cluster)
    hog = slurm_cluster.sbatch(script, f"--cpus-per-task={total}", "-D", str(slurm_cluster.root), "-o", "/dev/null")
    support.wait_for(lambda: slurm_cluster.queue().get(hog), lambda state: state == "RUNNING",
                     what="the job holding every CPU to run", timeout=DEADLINE)
    slurm_cluster.sbatch(script, "--partition=long", "-D", str(slurm_cluster.root), "-o", "/dev/null")

    after = support.wait_for(lambda: commands.partition_states(["debug", "long"]),
                             lambda s: s["long"]["GlueCEStateWaitingJobs"] == 1, what="the second job to wait",
                             timeout=DEADLINE)

    debug, long = after["debug"], after["long"]
    assert int(before["debug"]["GlueCEStateFreeCPUs"]) > 0
    assert debug["GlueCEStateFreeCPUs"] == long["GlueCEStateFreeCPUs"] == 0
    assert debug["GlueCEStateRunningJobs"] == 1 and debug["GlueCEStateWaitingJobs"] == 0
    assert long["GlueCEStateRunningJobs"] == 0 and long["GlueCEStateTotalJobs"] == 1
    assert int(debug["GlueCEStateEstimatedResponseTime"]) > 0 == before["debug"]["GlueCEStateEstimatedResponseTime"]
    assert int(long["GlueCEStateEstimatedResponseTime"]) > int(debug["GlueCEStateEstimatedResponseTime"])
    assert debug["GlueCEStateStatus"] == long["GlueCEStateStatus"] == "Production"


def test_the_partition_setup_gives_the_wall_clock_limit_and_the_glue_status(
    commands: SlurmCommands, slurm_cluster: SlurmCluster
) -> None:
    def update(*settings: str) -> dict[str, int | str]:
        slurm_cluster.run("scontrol", "update", "PartitionName=long", *settings)
        return commands.partition_state("long")

    assert update("MaxTime=1-01:30:00")["GlueCEPolicyMaxWallClockTime"] == 1530
    assert update("MaxTime=90")["GlueCEPolicyMaxWallClockTime"] == 90
    assert update("State=DRAIN")["GlueCEStateStatus"] == "Draining"
    queueing = update("State=DOWN")
    assert queueing["GlueCEStateStatus"] == "Queueing"
    assert queueing["GlueCEStateEstimatedResponseTime"] == UNREACHABLE_RESPONSE_TIME
    assert update("State=INACTIVE")["GlueCEStateStatus"] == "Closed"
    assert commands.partition_state("debug")["GlueCEStateStatus"] == "Production"


def test_a_partition_without_a_usable_node_is_queueing_with_no_free_cpu(
    commands: SlurmCommands, slurm_cluster: SlurmCluster
) -> None:
    slurm_cluster.run("scontrol", "update", f"NodeName={slurm_cluster.node}", "State=DOWN", "Reason=test")

    state = commands.partition_state("debug")

    assert (state["GlueCEStateStatus"], state["GlueCEStateFreeCPUs"]) == ("Queueing", 0)
    assert state["GlueCEInfoTotalCPUs"] == os.cpu_count()
    assert state["GlueCEStateEstimatedResponseTime"] == UNREACHABLE_RESPONSE_TIME


def test_an_unknown_partition_is_an_error(commands: SlurmCommands) -> None:
    with pytest.raises(SlurmError, match="no partition 'nosuch'"):
        commands.partition_state("nosuch")
    assert commands.partition_states(["nosuch", "debug"]).keys() == {"debug"}
