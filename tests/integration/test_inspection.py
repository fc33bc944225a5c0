"""Live inspection of running jobs (issue 13) on the local backend: the cases of
``inspection_cases.py`` plus the limited-proxy refusal.

As root the deployment maps alice to the account ``ali`` (``isolated_deployment``), so the
command's ``id -un`` proves it ran as the job's account; otherwise jobs run as the test user.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.integration import inspection_cases as cases
from tests.integration.inspection_cases import (
    SETTINGS,
    dep,
    inspect,
    running_job,
)
from tests.integration.isolated import isolated_deployment, standard_deployment
from tests.integration.service import Deployment

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
def inspection_deployment(pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory
                          ) -> Iterator[tuple[Deployment, str]]:
    """(deployment, the account alice's jobs run as)."""
    if os.geteuid() == 0:
        with isolated_deployment(pki, database_url, mapping="gridmap", extra_env=SETTINGS) as iso:
            yield iso.deployment, iso.mapped["alice"].pw_name
        return
    import pwd

    with standard_deployment(pki, database_url, tmp_path_factory.mktemp("state"), extra_env=SETTINGS) as dep:
        yield dep, pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture(scope="module")
def requirements() -> str:
    """The JDL Requirements of the jobs inspected (the Slurm tests send them to a Slurm CE)."""
    return "true"


def test_a_limited_proxy_cannot_inspect(dep: Deployment, pki: Pki, running_job: str, tmp_path: Path) -> None:
    from wmproxy.security.proxy import credential_pem, make_proxy

    limited = tmp_path / "limited.pem"
    limited.write_bytes(credential_pem(make_proxy(pki.users["alice"].credential, lifetime=3600, limited=True)))
    limited.chmod(0o600)
    rc, _out, err = inspect(dep, running_job, "pwd", proxy=limited)
    assert rc == 1
    assert "Error - AuthorizationFault: Authorization error: a limited proxy cannot inspect jobs" in err
