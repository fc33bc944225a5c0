"""Live inspection of jobs running under Slurm (issue 13): the same cases as on the local
backend (``tests/integration/inspection_cases.py``, imported here and run against this
module's fixtures), with every job sent to the throwaway cluster's ``debug`` partition: the
job wrapper runs in a Slurm allocation, as alice's mapped account, and its agent reaches
the service by an outgoing HTTPS long-poll like any batch node's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Pki
from tests.integration import inspection_cases as cases
from tests.integration.inspection_cases import (
    SETTINGS,
    dep,
    inspect,
    running_job,
)
from tests.integration.isolated import isolated_deployment
from tests.integration.service import Deployment
from tests.peers.slurm import SlurmCluster

pytestmark = pytest.mark.integration

# the shared cases, as test_<name>
cases.collect(globals())

__all__ = ["dep", "running_job"]  # fixtures the shared cases use


@pytest.fixture(scope="module")
def inspection_deployment(pki: Pki, database_url: str, slurm_cluster: SlurmCluster
                          ) -> Iterator[tuple[Deployment, str]]:
    """(deployment with the local and the Slurm backend, the account alice's jobs run as)."""
    with isolated_deployment(pki, database_url, slurm_conf=slurm_cluster.conf, extra_env=SETTINGS,
                             execution="max_running = 8") as iso:
        yield iso.deployment, iso.mapped["alice"].pw_name


@pytest.fixture(scope="module")
def requirements() -> str:
    return 'RegExp("slurm-debug", other.GlueCEUniqueID)'


def test_the_command_runs_inside_the_jobs_slurm_allocation(dep: Deployment, running_job: str) -> None:
    rc, out, err = inspect(dep, running_job, "sh", "-c", "echo job=$SLURM_JOB_ID partition=$SLURM_JOB_PARTITION")
    assert rc == 0, err
    first = out.splitlines()[0]
    assert first.startswith("job=") and first.split()[0] != "job=", out
    assert "partition=debug" in first
