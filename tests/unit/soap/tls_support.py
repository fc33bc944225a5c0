"""A TLS connection pair as gunicorn's handshake makes it, shared by the authentication tests."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

from tests.conftest import Pki

#: Seconds a handshake may take at most.
DEADLINE = 60.0


def tls_pair(pki: Pki, client_credential: Path) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
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
