"""Proxy renewal pushed into a job running in Slurm (issue 9), on SQLite and PostgreSQL.

The deployment is the privilege-split one of ``test_slurm_service.py`` (gunicorn and the
worker as a throwaway service user, alice mapped to her own account, the Slurm backend on
the session's throwaway cluster) plus Debian's myproxy-server holding alice's renewable
credential and one ``wmproxy-renewal`` worker as the service user with the capabilities of
``deploy/wmproxy-renewal.service`` (``CAP_CHOWN``, ``CAP_DAC_OVERRIDE``). alice delegates a
10 min proxy; the renewal threshold is just under it, so it is due 10 s later.

The job runs in Slurm as alice's account and writes, every second, the end date of the file
its ``X509_USER_PROXY`` names: what the job itself sees. The renewal worker starts once the
job has reported the delegated proxy, however long Slurm took to start it (the proxy lives
through any such delay); the test then waits until the job sees the renewed proxy (the
stored delegation's new end), that is, until the renewal worker has pushed it into the work
dir on the shared filesystem while the job runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.integration.isolated import Isolated, isolated_deployment, setpriv
from tests.integration.refclient import reference_client
from tests.integration.service import BIN
from tests.peers.myproxy_server import (  # noqa: F401  (fixture import)
    MyProxyServer,
    myproxy_server_factory,
    store_renewable_credential,
)
from tests.peers.slurm import SlurmCluster
from tests.support import delegate, wait_for, wait_for_final
from wmproxy.config import load_settings
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.dn import slash_dn

pytestmark = pytest.mark.integration

LIFETIME = 600  # seconds of the delegated proxy: beyond the waits for Slurm to start the job
THRESHOLD = LIFETIME - 10  # due 10 s after the delegation, renewed once the worker runs
#: asked of MyProxy (more than the threshold): a renewed proxy is not due again during the test
ASKED = 2 * LIFETIME
RENEWAL_ENV = {"WMPROXY_SECURITY_MIN_PROXY_LIFETIME": "10", "WMPROXY_RENEWAL_CYCLE": "1",
               "WMPROXY_RENEWAL_THRESHOLD": str(THRESHOLD), "WMPROXY_RENEWAL_LIFETIME": str(ASKED),
               "WMPROXY_RENEWAL_TIMEOUT": "5"}
#: Capabilities of deploy/wmproxy-renewal.service: the push hands the copy to the job's account.
RENEWAL_CAPS = ("chown", "dac_override")
#: The job: every second, the end date of the proxy it sees, until the test leaves a ``stop`` file.
SEES = ('while [ ! -e stop ]; do openssl x509 -noout -enddate -in $X509_USER_PROXY > seen.new '
        '&& mv seen.new seen; sleep 1; done')


@pytest.fixture
def server(pki: Pki, myproxy_server_factory: Callable[..., MyProxyServer]) -> MyProxyServer:  # noqa: F811
    """A myproxy-server that renews alice's proxy for the service's host."""
    host_dn = slash_dn(load_pem_chain(pki.host_cert.read_bytes())[0].subject)
    started: MyProxyServer = myproxy_server_factory([host_dn])
    store_renewable_credential(started, pki.users["alice"].proxy, host_dn, lifetime_hours=2, proxy_lifetime_hours=1)
    return started


@pytest.fixture
def iso(pki: Pki, database_url: str, slurm_cluster: SlurmCluster, server: MyProxyServer) -> Iterator[Isolated]:
    # the server by name and port: one allowed only through "*" is reached at public addresses only
    env = {**RENEWAL_ENV, "WMPROXY_RENEWAL_MYPROXY_ALLOWED_SERVERS": f"localhost:{server.port}"}
    with isolated_deployment(pki, database_url, slurm_conf=slurm_cluster.conf, extra_env=env,
                             execution="heartbeat_lease = 4") as deployment:
        yield deployment


def start_renewal_worker(iso: Isolated) -> None:
    """``wmproxy-renewal`` as the service user with the unit's capabilities; stopped with the deployment."""
    dep = iso.deployment
    dep.start([*setpriv(iso.service, RENEWAL_CAPS),
               *dep.python_command("wmproxy.renewal", BIN / "wmproxy-renewal"), "--name", "renewal-1"],
              "renewal-1.log")


def _seen_end(work_dir: Path) -> dt.datetime | None:
    """The job's last report of its proxy's end (``notAfter=Mon DD HH:MM:SS YYYY GMT``)."""
    try:
        text = (work_dir / "seen").read_text().strip()
    except OSError:
        return None
    if not text.startswith("notAfter="):
        return None
    return dt.datetime.strptime(text.removeprefix("notAfter="), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.UTC)


def test_a_renewed_proxy_reaches_the_job_running_in_slurm(iso: Isolated, pki: Pki, server: MyProxyServer) -> None:
    alice = reference_client(iso.deployment.endpoint, pki.users["alice"].proxy, iso.root / "certificates")
    delegate(alice, pki.users["alice"].proxy, "renew", lifetime=LIFETIME)
    jdl = (f'[ Executable = "/bin/sh"; Arguments = "-c \'{SEES}\'"; MyProxyServer = "localhost:{server.port}"; '
           'Requirements = RegExp("slurm-debug", other.GlueCEUniqueID); ]')
    job = alice.wmproxy.jobSubmit(jdl, "renew").id
    db = sa.create_engine(load_settings(iso.deployment.config).database.url)
    try:
        def row() -> tuple[str | None, dt.datetime]:
            with db.connect() as conn:
                ref = conn.execute(sa.text("select backend_ref from jobs where id = :j"), {"j": job}).scalar_one()
                end = conn.execute(sa.text("select not_after from delegations where delegation_id = 'renew'"))\
                    .scalar_one()
            end = dt.datetime.fromisoformat(end) if isinstance(end, str) else end
            return ref, end.replace(tzinfo=dt.UTC) if end.tzinfo is None else end.astimezone(dt.UTC)

        ref, delegated_end = wait_for(row, lambda r: r[0] is not None and r[0].split(":")[2] != "-",
                                      what=f"{job} to be submitted to Slurm", timeout=120)
        assert ref is not None and ref.startswith("slurm:")
        work_dir = iso.work_root / ref.split(":", 3)[3]
        first = wait_for(lambda: _seen_end(work_dir), what="the job to report its proxy", timeout=120)
        assert first is not None and abs((first - delegated_end).total_seconds()) <= 1, (first, delegated_end)
        # no renewal before: the worker, started now, renews the due proxy and pushes it into the work dir
        start_renewal_worker(iso)
        _, renewed_end = wait_for(row, lambda r: r[1] > delegated_end + dt.timedelta(seconds=10),
                                  what="the stored proxy to be renewed from MyProxy", timeout=180)
        seen = wait_for(lambda: _seen_end(work_dir), lambda end: end is not None and end > first,
                        what="the running job to see the renewed proxy", timeout=120)
        _, latest_end = row()  # a later renewal may have come meanwhile: the job sees one of them
        assert seen is not None and renewed_end - dt.timedelta(seconds=1) <= seen <= latest_end + dt.timedelta(
            seconds=1), (seen, renewed_end, latest_end)
        assert str(alice.wmproxy.getJobStatus(job).status) == "Running"
        (work_dir / "stop").touch()
        assert wait_for_final(alice, job) == "Done (Exit Code 0)"
    finally:
        db.dispose()
