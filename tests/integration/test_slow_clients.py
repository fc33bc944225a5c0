"""Slow clients cannot starve the service (issue 10; wmproxy/soap/tls_worker.py, docs/load.md).

200 TCP connections trickle a TLS ClientHello one byte at a time (no certificate needed) into
the real gunicorn; a normal client must be served while every one of them is still open and
still trickling. The handshake deadline is long here, so none is cut off during the test.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Pki
from tests.integration.isolated import standard_deployment
from tests.integration.refclient import SOAP, WMP, session_for
from tests.integration.service import Deployment
from tests.support import wait_for

pytestmark = pytest.mark.integration

ATTACKERS = 200
#: Seconds between two bytes of one attacker.
TRICKLE_PERIOD = 1.0


@pytest.fixture(scope="module")
def deployment(pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    env = {"WMPROXY_LOAD_HANDSHAKE_TIMEOUT": "3600"}
    with standard_deployment(pki, database_url, tmp_path_factory.mktemp("state"), extra_env=env) as dep:
        yield dep


def client_hello() -> bytes:
    """The first flight of a real TLS client (a ClientHello record)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_side=False)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


class Trickle:
    """``ATTACKERS`` connections, each sending one more byte of a ClientHello every period."""

    def __init__(self, port: int) -> None:
        self.hello = client_hello()
        self.sockets = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(ATTACKERS)]
        for sock in self.sockets:
            sock.setblocking(False)  # one byte never fills a send buffer; a peek never waits
        self.sent = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set() and self.sent < len(self.hello) - 1:  # never the whole hello
            byte = self.hello[self.sent:self.sent + 1]
            for sock in self.sockets:
                try:
                    sock.send(byte)
                except OSError as exc:
                    self.errors.append(repr(exc))
            self.sent += 1
            self.stop.wait(TRICKLE_PERIOD)

    def open_count(self) -> int:
        """How many connections the server has not closed (nothing to read, no EOF, no reset)."""
        count = 0
        for sock in self.sockets:
            try:
                sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                count += 1
            except OSError:
                pass
        return count

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        for sock in self.sockets:
            sock.close()


def get_version(deployment: Deployment, pki: Pki) -> str:
    body = (f'<e:Envelope xmlns:e="{SOAP}"><e:Body><w:getVersion xmlns:w="{WMP}"/></e:Body></e:Envelope>')
    reply = session_for(pki.users["alice"].proxy, pki.ca_dir).post(
        deployment.endpoint, data=body.encode(), headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=120)
    assert reply.status_code == 200, reply.text
    return reply.text


def test_normal_client_is_served_while_handshakes_trickle(deployment: Deployment, pki: Pki) -> None:
    trickle = Trickle(deployment.port)
    try:
        trickle.thread.start()
        wait_for(lambda: trickle.sent >= 3, what="every attacker in its handshake")
        started = time.monotonic()
        assert "<version>" in get_version(deployment, pki)
        latency = time.monotonic() - started
        sent_by_then = trickle.sent
        assert trickle.open_count() == ATTACKERS  # none was closed: all still held open by the attack
        assert trickle.errors == []
        assert trickle.thread.is_alive() and sent_by_then < len(trickle.hello) - 1  # still trickling
        print(f"getVersion served in {latency:.3f} s during {ATTACKERS} trickling handshakes "
              f"({sent_by_then} of {len(trickle.hello)} ClientHello bytes sent each)")
    finally:
        trickle.close()
