"""The caller's Principal kept per verified chain (soap/auth.py; issue 14) on a real TLS
connection with the test PKI: reused for the same chain, never past the first expiry in the
chain, and the chain-depth check still refuses every time."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import Pki
from wmproxy.errors import AuthenticationError
from wmproxy.soap import auth

#: Seconds for the TLS handshake between two threads; generous, the machine is shared.
DEADLINE = 60.0


def _tls_pair(pki: Pki, client_credential: Path) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """A connected (server side, client side) pair after the handshake; the server verifies
    the client chain as gunicorn does (CA directory, proxies allowed, CRLs checked)."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.host_cert, pki.host_key)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(capath=str(pki.ca_dir))
    server_ctx.verify_flags |= ssl.VERIFY_ALLOW_PROXY_CERTS | ssl.VERIFY_CRL_CHECK_CHAIN
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(capath=str(pki.ca_dir))
    client_ctx.load_cert_chain(client_credential)
    a, b = socket.socketpair()
    a.settimeout(DEADLINE)
    b.settimeout(DEADLINE)
    client = client_ctx.wrap_socket(b, server_hostname="localhost", do_handshake_on_connect=False)
    errors: list[BaseException] = []

    def handshake() -> None:
        try:
            client.do_handshake()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=handshake)
    thread.start()
    server = server_ctx.wrap_socket(a, server_side=True)
    thread.join(DEADLINE)
    assert errors == []
    return server, client


@pytest.fixture
def alice_socket(pki: Pki) -> Iterator[ssl.SSLSocket]:
    auth._cache.clear()
    server, client = _tls_pair(pki, pki.users["alice"].proxy)
    yield server
    client.close()
    server.close()
    auth._cache.clear()


def test_the_same_chain_gives_the_kept_principal(alice_socket: ssl.SSLSocket, pki: Pki) -> None:
    environ = {"gunicorn.socket": alice_socket}
    first = auth.tls_principal(environ, ca_dir=str(pki.ca_dir), max_chain_depth=10)
    again = auth.tls_principal(environ, ca_dir=str(pki.ca_dir), max_chain_depth=10)
    assert first.dn == pki.users["alice"].dn
    assert again is first
    other_settings = auth.tls_principal(environ, ca_dir=str(pki.ca_dir), max_chain_depth=9)
    assert other_settings is not first and other_settings == first


def test_a_kept_principal_ends_with_the_first_expiry_in_the_chain(pki: Pki) -> None:
    short = pki.proxy("alice", lifetime=1800)
    server, client = _tls_pair(pki, short)
    try:
        ders = auth.verified_chain_der(server)
        principal, valid_until = auth._principal_of(ders, vomsdir=None, ca_dir=str(pki.ca_dir), max_chain_depth=None)
        proxy_end = x509.load_pem_x509_certificate(short.read_bytes()).not_valid_after_utc.timestamp()
        assert valid_until == proxy_end
        cache = auth._PrincipalCache(4)
        cache.put("k", principal, valid_until)
        assert cache.get("k", valid_until - 1) is principal
        assert cache.get("k", valid_until) is None
        assert cache.get("k", valid_until - 1) is None  # dropped for good
    finally:
        client.close()
        server.close()


def test_a_too_deep_chain_is_refused_every_time(alice_socket: ssl.SSLSocket, pki: Pki) -> None:
    environ = {"gunicorn.socket": alice_socket}
    for _ in range(2):
        with pytest.raises(AuthenticationError, match="too long"):
            auth.tls_principal(environ, ca_dir=str(pki.ca_dir), max_chain_depth=0)


def test_the_cache_keeps_at_most_its_size() -> None:
    from wmproxy.domain import Principal

    cache = auth._PrincipalCache(2)
    for i in range(3):
        cache.put(i, Principal(dn=f"/CN={i}"), 100.0)
    assert cache.get(0, 0.0) is None
    assert cache.get(2, 0.0) == Principal(dn="/CN=2")
