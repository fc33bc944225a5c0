"""The renewal worker's connections look the server's name up under the attempt's deadline
(``wmproxy.renewal.connect``). Before, ``getaddrinfo`` ran unbounded in the renewal thread: with
a name server that does not answer, glibc waited its own timeout (30 s by default) per attempt,
whatever the attempt's ``[renewal] timeout``, and the MyProxy attempt then failed with "Temporary
failure in name resolution".

The real test points the C resolver at a local UDP socket that never answers, in a child
process of its own mount namespace (``unshare -m``, a bind mount over ``/etc/resolv.conf``
seen by that child only: the machine's file is not touched); it needs root (CI runs as root)
and is skipped where the kernel refuses the namespace. The mechanism is also tested with a real
slow callable as the resolver, which runs anywhere.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from wmproxy.renewal import connect
from wmproxy.renewal.connect import LookupTimeoutError, Resolve, connect_within, getaddrinfo_within

#: Seconds a child or a released lookup may take; generous, the machine is shared.
GENEROUS = 120.0

#: The child: one MyProxy renewal and one VOMS request for names only the silent server is
#: asked about, each with a 2 s timeout; prints ``[[error type, message], ...]``.
CHILD = r"""
import json, sys
from pathlib import Path
from wmproxy.renewal.myproxy import renew_proxy
from wmproxy.renewal.voms_client import request_ac
from wmproxy.security.vomses import VomsServer

cert, key, ca_dir, proxy = sys.argv[1:5]
out = []
try:
    renew_proxy("myproxy.lookup-test.example.org", 7512, host_cert=cert, host_key=key, ca_dir=ca_dir,
                user_proxy_pem=Path(proxy).read_bytes(), username="/CN=alice", lifetime=3600, timeout=2.0)
except Exception as exc:
    out.append([type(exc).__name__, str(exc)])
server = VomsServer(vo="dteam", host="voms.lookup-test.example.org", port=15004, dn="/CN=voms", alias="")
try:
    request_ac(server, Path(proxy).read_bytes(), ["/dteam"], ca_dir=ca_dir, lifetime=3600, timeout=2.0)
except Exception as exc:
    out.append([type(exc).__name__, str(exc)])
print(json.dumps(out))
"""


@pytest.fixture
def silent_name_server() -> Iterator[tuple[socket.socket, str]]:
    """A UDP socket on port 53 of a loopback address of its own that reads nothing and never
    answers (root: port 53); yields it and its address."""
    if os.geteuid() != 0:
        pytest.skip("binding port 53 and a mount namespace need root (CI runs as root)")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(20):
        address = f"127.{random.randint(60, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"  # noqa: S311
        try:
            sock.bind((address, 53))
            break
        except OSError:
            continue
    else:
        sock.close()
        pytest.fail("no free loopback address for the silent name server")
    yield sock, address
    sock.close()


def _namespace_usable() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    done = subprocess.run([unshare, "-m", "true"], capture_output=True, timeout=GENEROUS, check=False)
    return done.returncode == 0


def test_a_resolver_that_does_not_answer_fails_the_attempt_within_its_deadline(
        silent_name_server: tuple[socket.socket, str], pki: Pki, tmp_path: Path) -> None:
    if not _namespace_usable():
        pytest.skip("the kernel refuses a mount namespace here (unshare -m)")
    server, address = silent_name_server
    resolv = tmp_path / "resolv.conf"
    # glibc alone would wait 30 s for this server (one attempt), the attempt's timeout is 2 s
    resolv.write_text(f"nameserver {address}\noptions timeout:30 attempts:1\n")
    cert, key = pki.ca.issue_host("wms.localhost", tmp_path / "wms")
    proxy = pki.proxy("alice", 3600)
    script = 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"'
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", str(resolv), sys.executable, "-c", CHILD,
         str(cert), str(key), str(pki.ca_dir), str(proxy)],
        capture_output=True, text=True, timeout=GENEROUS, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])})
    assert done.returncode == 0, done.stderr
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert [kind for kind, _ in failures] == ["MyProxyUnreachableError", "VomsUnreachableError"], failures
    myproxy_text, voms_text = (text for _, text in failures)
    assert myproxy_text.startswith("MyProxy server myproxy.lookup-test.example.org:7512 timed out: the name lookup "
                                   "of myproxy.lookup-test.example.org did not answer in"), myproxy_text
    assert "the name lookup of voms.lookup-test.example.org did not answer in" in voms_text, voms_text
    server.settimeout(0)
    query, _ = server.recvfrom(4096)  # the lookups did go to the silent server
    assert b"lookup-test" in query


def _blocked_lookup(release: threading.Event, calls: list[str]) -> Resolve:
    """A resolver that answers only once ``release`` is set (a real wait, no clock of its own)."""
    def resolve(host: str, port: int, **kw: object) -> list[tuple[object, ...]]:
        calls.append(host)
        release.wait(GENEROUS)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))]
    return resolve


def _wait_for_lookup_threads(prefix: str) -> None:
    """Wait (generously) until no lookup thread of a name starting with ``prefix`` is alive."""
    end = time.monotonic() + GENEROUS
    while any(t.name.startswith(f"lookup {prefix}") for t in threading.enumerate()):
        assert time.monotonic() < end, f"lookup threads of {prefix}* still alive"
        time.sleep(0.01)


def test_a_lookup_past_the_deadline_fails_and_its_thread_ends_once_the_resolver_answers() -> None:
    release, calls = threading.Event(), []
    resolve = _blocked_lookup(release, calls)
    try:
        with pytest.raises(LookupTimeoutError, match=r"the name lookup of slow\.example\.org did not answer"):
            getaddrinfo_within("slow.example.org", 7512, time.monotonic() + 0.2, resolve=resolve)
        assert calls == ["slow.example.org"]
    finally:
        release.set()
    _wait_for_lookup_threads("slow")  # the thread ends once the resolver answers
    answer = getaddrinfo_within("fast.example.org", 7512, time.monotonic() + GENEROUS, resolve=resolve)
    assert answer == [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", 7512))]


def test_lookups_waiting_for_the_resolver_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken resolver holds each lookup's thread until it gives up: past
    ``MAX_PENDING_LOOKUPS`` of them (3 here) a lookup fails at once instead of adding threads."""
    monkeypatch.setattr(connect, "MAX_PENDING_LOOKUPS", 3)
    monkeypatch.setattr(connect, "_pending", threading.BoundedSemaphore(3))
    release, calls = threading.Event(), []
    resolve = _blocked_lookup(release, calls)
    try:
        for i in range(connect.MAX_PENDING_LOOKUPS):
            with pytest.raises(LookupTimeoutError, match="did not answer"):
                getaddrinfo_within(f"slow{i}.example.org", 7512, time.monotonic() + 0.05, resolve=resolve)
        with pytest.raises(LookupTimeoutError, match=f"was not tried: {connect.MAX_PENDING_LOOKUPS} lookups are still"):
            getaddrinfo_within("one-more.example.org", 7512, time.monotonic() + GENEROUS, resolve=resolve)
        assert "one-more.example.org" not in calls
    finally:
        release.set()
    _wait_for_lookup_threads("slow")  # each gave its slot back
    assert getaddrinfo_within("again.example.org", 7512, time.monotonic() + GENEROUS, resolve=resolve)


def test_an_address_is_not_looked_up_in_a_thread() -> None:
    def resolve(host: str, port: int, **kw: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, threading.current_thread().name, (host, port))]

    assert getaddrinfo_within("127.0.0.1", 1, time.monotonic() - 1, resolve=resolve)[0][3] == \
        threading.current_thread().name


def test_a_name_with_a_percent_that_is_no_address_is_looked_up_within_the_deadline() -> None:
    """``1.2.3.4%x`` is no address (only IPv6 has a scope): it goes to the resolver, in a thread,
    under the deadline (here past: it fails at once), not in the caller's thread without one."""
    calls: list[str] = []

    def resolve(host: str, port: int, **kw: object) -> list[tuple[object, ...]]:
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, port))]

    with pytest.raises(LookupTimeoutError, match=r"no time left to look up 1\.2\.3\.4%x"):
        getaddrinfo_within("1.2.3.4%x", 1, time.monotonic() - 1, resolve=resolve)
    assert calls == []
    assert getaddrinfo_within("fe80::1%lo", 1, time.monotonic() - 1, resolve=resolve)  # scoped IPv6: an address
    assert calls == ["fe80::1%lo"]


def test_an_address_whose_socket_cannot_be_made_is_passed_over() -> None:
    """A host booted with ``ipv6.disable=1``: an IPv6 socket fails with EAFNOSUPPORT, the next
    address (IPv4) is tried, as ``socket.create_connection`` did."""
    def no_ipv6(family: int, kind: int, proto: int) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))
        return socket.socket(family, kind, proto)

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        addresses = [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
                     (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        with connect_within(addresses, time.monotonic() + GENEROUS, make_socket=no_ipv6) as sock:
            assert sock.getpeername() == ("127.0.0.1", port)
        with pytest.raises(OSError, match="Address family not supported") as err:
            connect_within(addresses[:1], time.monotonic() + GENEROUS, make_socket=no_ipv6)
        assert err.value.errno == errno.EAFNOSUPPORT
