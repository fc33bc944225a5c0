"""The worker runs no job as an account the database names but the mapping never gives.

On the deployment with the privilege split (:mod:`tests.integration.isolated`: gunicorn and the
worker as the service user ``svc``, the worker with its 5 capabilities; alice and bob mapped to
their own accounts), SQLite and PostgreSQL. Bob registers a job whose payload would write a
marker file; its stored account (``jobs.local_account``) is then rewritten in the database, as a
compromised gunicorn (the service user) or a job reaching a password-less database could, before
bob starts it. Before the fix the worker ran the job as whatever the column named: as root it
printed uid 0 and the worker's capabilities (CapEff 0xe3); as the service user it could read the
store key. Now the job ends Aborted without running, with the refusal as its reason and an ERROR
line of the worker naming the job and the account.

Also: a job's ``status.json`` nested deeper than the JSON parser goes (``'[' * 100000``) raised
RecursionError in the worker, which set the job aside (Running for an hour, its slot freed); now it
is a forged status like any other, and the job ends Aborted.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.integration.isolated import SYSTEM_PYTHON, Isolated, client, isolated_deployment
from tests.integration.refclient import ReferenceClient
from tests.support import wait_for_final
from wmproxy.security.filemodes import SQLITE_COMPANIONS

pytestmark = pytest.mark.integration

#: Bob's payload for the nested status: writes it in its wrapper's place and SIGKILLs the wrapper
#: (same uid), so the status is what the worker reads.
NESTED = r'''
import os, signal
with open(".wmproxy/nested.tmp", "w") as f:
    f.write("[" * 100000)
os.rename(".wmproxy/nested.tmp", ".wmproxy/status.json")
os.kill(os.getppid(), signal.SIGKILL)
'''


@pytest.fixture(scope="module")
def iso(pki: Pki, database_url: str) -> Iterator[Isolated]:
    with isolated_deployment(pki, database_url, extra_env={"WMPROXY_INSPECTION_MODE": "off"}) as deployment:
        script = deployment.root / "nested.py"
        script.write_text(NESTED)
        os.chmod(script, 0o644)
        yield deployment


@pytest.fixture(scope="module")
def bob(iso: Isolated, pki: Pki) -> ReferenceClient:
    return client(iso, pki, "bob")


def _database(iso: Isolated, database_url: str) -> str:
    return f"sqlite:///{iso.state}/wmproxy.db" if database_url.startswith("sqlite") else database_url


def _rewrite_account(iso: Isolated, database_url: str, job_id: str, account: str) -> None:
    """Set the job's stored account as whoever can write the database could."""
    engine = sa.create_engine(_database(iso, database_url))
    try:
        with engine.begin() as conn:
            done = conn.execute(sa.text("UPDATE jobs SET local_account = :account WHERE id = :id"),
                                {"account": account, "id": job_id})
            assert done.rowcount == 1
    finally:
        engine.dispose()
    database = iso.state / "wmproxy.db"
    for suffix in SQLITE_COMPANIONS:  # one this root process created must stay the service's
        companion = database.with_name(database.name + suffix)
        if companion.exists() and companion.stat().st_uid != iso.service.pw_uid:
            os.chown(companion, iso.service.pw_uid, iso.service.pw_gid)


def _reason(iso: Isolated, database_url: str, job_id: str) -> str:
    engine = sa.create_engine(_database(iso, database_url))
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SELECT reason FROM jobs WHERE id = :id"), {"id": job_id}).scalar_one())
    finally:
        engine.dispose()


def _worker_log(iso: Isolated) -> list[str]:
    return (iso.state / "worker-1.log").read_text(errors="replace").splitlines()


@pytest.mark.parametrize("who", ["root", "service", "unmapped"])
def test_a_job_whose_stored_account_was_rewritten_ends_aborted_without_running(
        iso: Isolated, bob: ReferenceClient, database_url: str, who: str) -> None:
    """root: uid 0; service: the service user (the worker's own uid); unmapped: an existing
    account (``nobody``) that no line of the grid-mapfile names."""
    account = {"root": "root", "service": iso.service.pw_name, "unmapped": "nobody"}[who]
    if who == "unmapped":
        try:
            pwd.getpwnam(account)
        except KeyError:
            pytest.skip("no account nobody on this host")
    marker = iso.shared / f"ran-as-{who}"
    job = bob.wmproxy.jobRegister(f'[ Executable = "/bin/sh"; Arguments = "-c \'id > {marker}\'"; ]', "iso")
    _rewrite_account(iso, database_url, job.id, account)
    bob.wmproxy.jobStart(job.id)
    assert wait_for_final(bob, job.id).startswith("Aborted")
    assert not marker.exists(), marker.read_text()
    reason = _reason(iso, database_url, job.id)
    assert reason.startswith(f"Refusing to run a job as {account}: "), reason
    refusals = [line for line in _worker_log(iso) if " ERROR " in line and job.id in line]
    assert refusals and f"refused, not run (its stored account is not one jobs may run as): {reason}" in \
        refusals[0], refusals
    # the mapped account still runs bob's jobs
    other = bob.wmproxy.jobSubmit(f'[ Executable = "/bin/sh"; Arguments = "-c \'id -u > {marker}-ok\'"; ]', "iso").id
    assert wait_for_final(bob, other) == "Done (Exit Code 0)"
    assert (iso.shared / f"ran-as-{who}-ok").read_text().strip() == str(iso.mapped["bob"].pw_uid)


def test_a_status_nested_deeper_than_the_parser_goes_ends_the_job_aborted(
        iso: Isolated, bob: ReferenceClient, database_url: str) -> None:
    job_id = bob.wmproxy.jobSubmit(f'[ Executable = "{SYSTEM_PYTHON}"; Arguments = "-I {iso.root / "nested.py"}"; ]',
                                   "iso").id
    assert wait_for_final(bob, job_id).startswith("Aborted")
    # Where the worker knows how the wrapper ended (a pidfd's exit status, Linux 6.15+), the killed
    # wrapper decides and the file is not read; else the file is read and refused as not JSON
    # (tests/unit/execution/test_identity.py reads such a file directly). Never set aside.
    reason = _reason(iso, database_url, job_id)
    assert ("The job's status.json is not JSON" in reason
            or reason.startswith("the job wrapper was killed by signal 9")), reason
    assert not [line for line in _worker_log(iso) if "set aside" in line and job_id in line]
