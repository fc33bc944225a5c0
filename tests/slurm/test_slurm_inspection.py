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

# The shared cases, collected here under test names.
test_output_exit_code_time_and_account = cases.output_exit_code_time_and_account
test_the_job_secret_is_in_neither_the_commands_nor_the_payloads_environment = (
    cases.the_job_secret_is_in_neither_the_commands_nor_the_payloads_environment)
test_time_limit_kills_the_command = cases.time_limit_kills_the_command
test_output_is_capped = cases.output_is_capped
test_another_user_is_refused_until_granted = cases.another_user_is_refused_until_granted
test_site_allow_list = cases.site_allow_list
test_ended_job_answers_at_once_with_its_final_state = cases.ended_job_answers_at_once_with_its_final_state
test_wrapper_killed_mid_request_ends_the_ask_with_an_error = cases.wrapper_killed_mid_request_ends_the_ask_with_an_error

__all__ = [
    "dep",
    "running_job",
    "test_another_user_is_refused_until_granted",
    "test_ended_job_answers_at_once_with_its_final_state",
    "test_output_exit_code_time_and_account",
    "test_output_is_capped",
    "test_site_allow_list",
    "test_the_job_secret_is_in_neither_the_commands_nor_the_payloads_environment",
    "test_time_limit_kills_the_command",
    "test_wrapper_killed_mid_request_ends_the_ask_with_an_error",
]


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
