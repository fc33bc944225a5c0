"""The key size of a renewed proxy, against the real Debian myproxy-server: one pass of the
renewal worker renews a due proxy and writes it into a running job; the stored proxy and the
job's copy get a key of ``[security] delegation_key_bits``, or of the stored proxy's size when
larger (a renewal never weakens a key). Before, every renewed proxy got a 2048-bit key
whatever the site configured."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import Pki
from tests.peers.myproxy_server import (  # noqa: F401  (fixture import)
    MyProxyServer,
    myproxy_server_factory,
    store_renewable_credential,
)
from tests.support import build_runtime, close_runtime
from wmproxy.domain import JobState, utcnow
from wmproxy.execution.identity import install_proxy
from wmproxy.renewal.worker import RenewalWorker
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.dn import slash_dn
from wmproxy.security.proxy import credential_pem, load_credential, make_proxy
from wmproxy.services.renewal import job_proxy_path, register_for_renewal
from wmproxy.services.runtime import Runtime
from wmproxy.store.schema import Job

DELEG = "keys"


@pytest.fixture(scope="module")
def myproxy(myproxy_server_factory, pki: Pki) -> MyProxyServer:  # noqa: F811
    """A myproxy-server holding alice's credential, renewable by the service's host credential."""
    host_dn = slash_dn(load_pem_chain(pki.host_cert.read_bytes())[0].subject)
    server = myproxy_server_factory([host_dn])
    store_renewable_credential(server, pki.proxy("alice", 6 * 3600), host_dn, lifetime_hours=5)
    return server


@pytest.fixture
def runtime(tmp_path: Path, pki: Pki) -> Iterator[Runtime]:
    """A runtime that makes delegation keys of 3072 bits and allows any MyProxy server."""
    rt = build_runtime(tmp_path, pki, security={"delegation_key_bits": 3072},
                       renewal={"myproxy_allowed_servers": "*"})
    yield rt
    close_runtime(rt)


def key_bits(pem: bytes) -> int:
    key = load_credential(pem).key
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.key_size


def renew_once(rt: Runtime, pki: Pki, myproxy: MyProxyServer, stored_key_bits: int) -> tuple[int, int]:
    """Store a 20-minute proxy of alice with a key of ``stored_key_bits`` (due: less than the
    35 min threshold left), used by a running job; one worker pass. Returns the key sizes of
    the stored proxy and of the job's copy after the pass."""
    now = utcnow()
    pem = credential_pem(make_proxy(pki.users["alice"].credential, lifetime=20 * 60, key_bits=stored_key_bits))
    dn = slash_dn(pki.users["alice"].credential.cert.subject)
    end = min(c.not_valid_after_utc for c in load_pem_chain(pem))
    job_id = "https://localhost:9000/" + "k" * 22
    rt.storage.create_job_area(job_id)
    with rt.uow() as uow:
        uow.delegations.put_proxy(dn, DELEG, rt.sealer.seal(pem), now - dt.timedelta(minutes=5), end, (), now)
        register_for_renewal(uow, dn, DELEG, f"{myproxy.host}:{myproxy.port}", now)
        uow.jobs.add(Job(id=job_id, owner_dn=dn, delegation_id=DELEG, state=JobState.RUNNING.value,
                         jdl_original="[]", jdl_registered="[]", sandbox_dir="k" * 22, created_at=now,
                         updated_at=now))
    copy = job_proxy_path(rt, job_id)
    copy.parent.mkdir(parents=True, exist_ok=True)
    install_proxy(copy.parent, pem, None)
    report = RenewalWorker(rt, threads=1).step()
    assert (report.renewed, report.pushed) == (1, 1), report
    with rt.uow() as uow:
        row = uow.delegations.get(dn, DELEG)
        assert row is not None and row.not_after > end
        stored = rt.sealer.open(row.sealed_proxy)
    return key_bits(stored), key_bits(copy.read_bytes())


def test_a_renewed_proxy_gets_a_key_of_the_configured_size(
        runtime: Runtime, pki: Pki, myproxy: MyProxyServer) -> None:
    assert renew_once(runtime, pki, myproxy, stored_key_bits=2048) == (3072, 3072)


def test_a_renewal_keeps_a_stored_key_larger_than_the_configured_size(
        runtime: Runtime, pki: Pki, myproxy: MyProxyServer) -> None:
    assert renew_once(runtime, pki, myproxy, stored_key_bits=4096) == (4096, 4096)
