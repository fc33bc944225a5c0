"""The load limiter and the service policy file over real TLS (gunicorn and a worker; SQLite
and PostgreSQL): issue 10. The deployment's 1-minute load threshold is 0.0001, which any
running machine exceeds; its policy file denies bob until the file is edited.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import zeep

from tests.conftest import Pki
from tests.integration.isolated import standard_deployment
from tests.integration.refclient import ReferenceClient, reference_client
from tests.integration.service import Deployment
from tests.support import ECHO_JDL, assert_fault, delegate

pytestmark = pytest.mark.integration

DENY_BOB = "allow *\ndeny /C=XX/O=wmproxy-demo/OU=Users/CN=Bob\n"


@pytest.fixture(scope="module")
def policy() -> Iterator[Path]:
    """A policy file the service user can read (pytest's tmp dirs are root's, mode 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="wmproxy-policy-", dir="/var/tmp"))
    folder.chmod(0o755)
    path = folder / "policy"
    path.write_text(DENY_BOB)
    path.chmod(0o644)
    yield path
    path.unlink()
    folder.rmdir()


@pytest.fixture(scope="module")
def deployment(pki: Pki, database_url: str, policy: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    env = {"WMPROXY_LOAD_LOAD1": "0.0001", "WMPROXY_SECURITY_POLICY_FILE": str(policy)}
    with standard_deployment(pki, database_url, tmp_path_factory.mktemp("state"), extra_env=env) as dep:
        yield dep


def client(deployment: Deployment, pki: Pki, user: str) -> ReferenceClient:
    return reference_client(deployment.endpoint, pki.users[user].proxy, pki.ca_dir)


def test_overload_refuses_new_work_and_serves_the_rest(deployment: Deployment, pki: Pki) -> None:
    alice = client(deployment, pki, "alice")
    delegate(alice, pki.users["alice"].proxy, "load")  # delegation keeps working
    for operation in ("jobRegister", "jobSubmit", "jobListMatch"):
        with pytest.raises(zeep.exceptions.Fault) as err:
            getattr(alice.wmproxy, operation)(ECHO_JDL, "load")
        detail = assert_fault(err, "ServerOverloadedFault", operation, "1228", text="System load is too high: load1 ")
        assert (detail.findtext("Description") or "").endswith(" >= 0.0001")
    assert alice.wmproxy.getVersion()
    assert alice.wmproxy.getDelegatedProxyInfo("load").Identity


def rewrite(policy: Path, text: str) -> None:
    """Edit the policy file; its modification time moves on as a later edit's would."""
    before = policy.stat().st_mtime_ns
    policy.write_text(text)
    os.utime(policy, ns=(before + 10**9, before + 10**9))


def test_policy_deny_entry_and_its_reload(deployment: Deployment, pki: Pki, policy: Path) -> None:
    rewrite(policy, DENY_BOB)  # as the deployment started (the file is shared by both databases' runs)
    bob = client(deployment, pki, "bob")
    with pytest.raises(zeep.exceptions.Fault) as err:
        bob.wmproxy.getVersion()
    assert_fault(err, "GenericFault", "getVersion", "1207", text="user not authorized")  # as declared
    assert client(deployment, pki, "alice").wmproxy.getVersion()
    rewrite(policy, "allow *\n")
    assert bob.wmproxy.getVersion()
