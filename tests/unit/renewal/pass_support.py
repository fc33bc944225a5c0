"""One pass of the renewal worker for one running job, against a real MyProxy server (the key
size tests and the VOMS refresh tests)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from tests.conftest import Pki
from tests.peers.myproxy_server import MyProxyServer, store_renewable_credential
from wmproxy.domain import JobState, utcnow
from wmproxy.execution.identity import install_proxy
from wmproxy.renewal.worker import RenewalWorker
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.dn import slash_dn
from wmproxy.services.renewal import job_proxy_path, register_for_renewal, renewal_status
from wmproxy.services.runtime import Runtime
from wmproxy.store.schema import Job


def alices_myproxy(start: Callable[..., MyProxyServer], pki: Pki) -> MyProxyServer:
    """A myproxy-server (``start``: the ``myproxy_server_factory`` fixture) holding alice's plain
    credential for 5 h, renewable by the service's host credential."""
    host_dn = slash_dn(load_pem_chain(pki.host_cert.read_bytes())[0].subject)
    server = start([host_dn])
    store_renewable_credential(server, pki.proxy("alice", 6 * 3600), host_dn, lifetime_hours=5)
    return server


@dataclass(frozen=True)
class PassResult:
    """After the pass: the stored proxy, the running job's copy, the renewal record's notes."""

    stored: bytes
    copy: bytes
    notes: str


@dataclass(frozen=True)
class Staged:
    """A credential staged by :func:`stage_running_job`: its delegation id, its job, its end."""

    owner_dn: str
    delegation_id: str
    job_id: str
    end: dt.datetime


def stage_running_job(rt: Runtime, owner_dn: str, pem: bytes, server: str, *, fqans: tuple[str, ...] = (),
                      jdl_registered: str = "[]") -> Staged:
    """Store ``pem`` as a new credential of ``owner_dn`` delegated with ``fqans``, renewable from
    ``server`` (``host:port``) and used by a running job registered with ``jdl_registered``
    (its proxy copy is ``pem``)."""
    now = utcnow()
    end = min(c.not_valid_after_utc for c in load_pem_chain(pem))
    deleg = uuid.uuid4().hex[:8]
    job_id = "https://localhost:9000/" + deleg.ljust(22, "r")
    rt.storage.create_job_area(job_id)
    with rt.uow() as uow:
        uow.delegations.put_proxy(owner_dn, deleg, rt.sealer.seal(pem), now - dt.timedelta(minutes=5), end, fqans,
                                  now)
        register_for_renewal(uow, owner_dn, deleg, server, now)
        uow.jobs.add(Job(id=job_id, owner_dn=owner_dn, delegation_id=deleg, state=JobState.RUNNING.value,
                         jdl_original="[]", jdl_registered=jdl_registered, sandbox_dir=job_id.rsplit("/", 1)[1],
                         created_at=now, updated_at=now))
    copy = job_proxy_path(rt, job_id)
    copy.parent.mkdir(parents=True, exist_ok=True)
    install_proxy(copy.parent, pem, None)
    return Staged(owner_dn, deleg, job_id, end)


def after_pass(rt: Runtime, staged: Staged) -> PassResult:
    """The stored proxy (renewed: it must end later than the staged one), the job's copy and the
    record's notes."""
    with rt.uow() as uow:
        row = uow.delegations.get(staged.owner_dn, staged.delegation_id)
        assert row is not None and row.not_after > staged.end
        status = renewal_status(uow, staged.owner_dn, staged.delegation_id)
        assert status is not None
        return PassResult(rt.sealer.open(row.sealed_proxy), job_proxy_path(rt, staged.job_id).read_bytes(),
                          status.notes or "")


def renew_running_job(rt: Runtime, owner_dn: str, pem: bytes, server: str, *, fqans: tuple[str, ...] = (),
                      jdl_registered: str = "[]") -> PassResult:
    """:func:`stage_running_job`, then one worker pass, which must renew the credential and
    rewrite the job's copy; :func:`after_pass`."""
    staged = stage_running_job(rt, owner_dn, pem, server, fqans=fqans, jdl_registered=jdl_registered)
    report = RenewalWorker(rt, threads=1).step()
    assert (report.renewed, report.pushed) == (1, 1), report
    return after_pass(rt, staged)
