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

cases.collect(globals())  # the shared cases, as test_<name>

__all__ = ["dep", "running_job"]  # fixtures the shared cases use


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
