"""What a connection may do after its TLS handshake, on the real service (gunicorn with
``wmproxy.soap.tls_worker.HandshakeWorker``).

- A connection that completed its handshake and then sends nothing must not hold a request
  thread: it waits in the worker's event loop like any idle kept-alive connection, and is
  closed after gunicorn's keep-alive timeout. Twice as many such connections as the service
  has request threads must not stop another client from being served.
- A connection kept alive past the end of its proxy is refused from then on (the chain is
  verified again when its kept Principal lapses with the proxy, wmproxy/soap/auth.py), not
  only at its next handshake.

Authentication and the event loop do not depend on the database: SQLite only. Every wait is
for a condition with a generous deadline.
"""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import Pki
from tests.integration.refclient import SOAP, WMP
from tests.integration.service import Deployment, closed_by_peer, tls_client_context
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("database_kind", ["sqlite"], indirect=True)]

GET_VERSION = (f'<e:Envelope xmlns:e="{SOAP}"><e:Body><w:getVersion xmlns:w="{WMP}"/></e:Body>'
               "</e:Envelope>").encode()
#: Request threads of the test deployments (tests/integration/service.py: 2 workers x 4 threads).
THREADS = 8
#: Seconds a proxy made for the expiry test lives: the handshake and one call happen before its
#: end, a generous margin on a loaded machine.
LIFETIME = 20


def post(conn: http.client.HTTPSConnection, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", "/glite_wms_wmproxy_server", body=body, headers={"Content-Type": "text/xml"})
    reply = conn.getresponse()
    return reply.status, reply.read()


def connection(deployment: Deployment, ca_dir: Path, proxy: Path) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("localhost", deployment.port, timeout=60,
                                       context=tls_client_context(ca_dir, proxy))


def test_idle_connections_after_their_handshake_hold_no_request_thread(deployment: Deployment, pki: Pki) -> None:
    ctx = tls_client_context(pki.ca_dir, pki.users["alice"].proxy)
    idle = []
    try:
        for _ in range(2 * THREADS):
            raw = socket.create_connection(("127.0.0.1", deployment.port), timeout=60)
            idle.append(ctx.wrap_socket(raw, server_hostname="localhost"))  # handshake done, then silence
        conn = connection(deployment, pki.ca_dir, pki.users["bob"].proxy)
        try:
            status, body = post(conn, GET_VERSION)  # 60 s timeout: without a free thread it never comes
        finally:
            conn.close()
        assert status == 200, body[:400]
        # ... and the idle ones are closed after the keep-alive timeout (5 s), as idle kept-alive ones are.
        wait_for(lambda: all(closed_by_peer(s) for s in idle), timeout=120, what="the idle connections closed")
    finally:
        for s in idle:
            s.close()


def test_a_connection_kept_alive_past_its_proxy_end_is_refused(deployment: Deployment, pki: Pki) -> None:
    proxy = pki.proxy("alice", lifetime=LIFETIME)
    end = x509.load_pem_x509_certificate(proxy.read_bytes()).not_valid_after_utc.timestamp()
    conn = connection(deployment, pki.ca_dir, proxy)
    try:
        status, body = post(conn, GET_VERSION)
        assert status == 200, f"the first call, before the proxy's end, was refused: {body[:400]!r}"
        sock = conn.sock
        # Keep the connection alive (a call a second, within the 5 s keep-alive) until the end has passed.
        while time.time() < end + 2:
            post(conn, GET_VERSION)
            assert conn.sock is sock, "the service closed the kept-alive connection"
            time.sleep(1)
        status, body = post(conn, GET_VERSION)
        assert conn.sock is sock, "the call went out on a new connection"
        assert status == 500, body[:400]
        assert b"AuthenticationFault" in body or b"GenericFault" in body, body[:600]
        assert b"expired" in body, body[:600]
    finally:
        conn.close()
