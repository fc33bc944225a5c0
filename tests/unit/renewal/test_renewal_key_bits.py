"""The key size of a renewed proxy, against the real Debian myproxy-server: one pass of the
renewal worker renews a due proxy and writes it into a running job; the stored proxy and the
job's copy get a key of ``[security] delegation_key_bits``, or of the stored proxy's size when
larger (a renewal never weakens a key). Before, every renewed proxy got a 2048-bit key
whatever the site configured."""

from __future__ import annotations

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
from tests.unit.renewal.pass_support import alices_myproxy, renew_running_job
from wmproxy.security.dn import slash_dn
from wmproxy.security.proxy import credential_pem, load_credential, make_proxy
from wmproxy.services.runtime import Runtime


@pytest.fixture(scope="module")
def myproxy(myproxy_server_factory, pki: Pki) -> MyProxyServer:  # noqa: F811
    """A myproxy-server holding alice's plain credential, renewable by the service's host credential."""
    return alices_myproxy(myproxy_server_factory, pki)


@pytest.fixture
def runtime(tmp_path: Path, pki: Pki, myproxy: MyProxyServer) -> Iterator[Runtime]:
    """A runtime that makes delegation keys of 3072 bits and allows the MyProxy server (named:
    a wildcard reaches no loopback address)."""
    rt = build_runtime(tmp_path, pki, security={"delegation_key_bits": 3072},
                       renewal={"myproxy_allowed_servers": f"{myproxy.host}:{myproxy.port}"})
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
    pem = credential_pem(make_proxy(pki.users["alice"].credential, lifetime=20 * 60, key_bits=stored_key_bits))
    dn = slash_dn(pki.users["alice"].credential.cert.subject)
    after = renew_running_job(rt, dn, pem, f"{myproxy.host}:{myproxy.port}")
    return key_bits(after.stored), key_bits(after.copy)


def test_a_renewed_proxy_gets_a_key_of_the_configured_size(
        runtime: Runtime, pki: Pki, myproxy: MyProxyServer) -> None:
    assert renew_once(runtime, pki, myproxy, stored_key_bits=2048) == (3072, 3072)


def test_a_renewal_keeps_a_stored_key_larger_than_the_configured_size(
        runtime: Runtime, pki: Pki, myproxy: MyProxyServer) -> None:
    assert renew_once(runtime, pki, myproxy, stored_key_bits=4096) == (4096, 4096)


def test_a_stored_1024_bit_proxy_is_renewed_into_a_key_of_the_configured_size(
        runtime: Runtime, pki: Pki, myproxy: MyProxyServer) -> None:
    """A proxy stored with a 1024-bit key (delegated while the service still accepted
    ``delegation_key_bits = 1024``) still authorizes its renewal (its key only signs
    MyProxy's challenge, it is not a TLS credential) and the renewed proxy gets the site's
    size: the upgrade needs no action on stored delegations."""
    assert renew_once(runtime, pki, myproxy, stored_key_bits=1024) == (3072, 3072)
