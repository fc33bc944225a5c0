"""The MyProxy protocol client against Debian's real myproxy-server over real TLS (no mocks)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from tests.conftest import Pki
from tests.peers.myproxy_server import (  # noqa: F401  (fixture import)
    MyProxyServer,
    myproxy_server_factory,
    store_renewable_credential,
)
from tests.port_support import closed_port
from wmproxy.renewal import myproxy as myproxy_module
from wmproxy.renewal.myproxy import (
    MAX_ADDRESSES,
    MAX_CERTIFICATES,
    MAX_ERROR_TEXT,
    MAX_REPLY,
    UNREACHABLE_TEXT,
    MyProxyError,
    MyProxyRefusedError,
    MyProxyUnreachableError,
    _connect,
    _Connection,
    _status,
    renew_proxy,
)
from wmproxy.security.chain import certificate_der, identity_dn, load_pem_chain, verify_chain
from wmproxy.security.dn import slash_dn
from wmproxy.security.proxy import credential_pem, load_credential, make_proxy

SKEW = timedelta(seconds=60)


class Service:
    """The WMS host credential used as the MyProxy renewer."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self.dn = slash_dn(load_pem_chain(cert.read_bytes())[0].subject)


@pytest.fixture
def closed() -> Iterator[int]:
    """A port of 127.0.0.1 where nothing listens, held so for the test: no other process takes it."""
    with closed_port() as port:
        yield port


@pytest.fixture(scope="module")
def service(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Service:
    return Service(*pki.ca.issue_host("wms.localhost", tmp_path_factory.mktemp("wms")))


@pytest.fixture(scope="module")
def rogue(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Service:
    return Service(*pki.ca.issue_host("rogue.localhost", tmp_path_factory.mktemp("rogue")))


@pytest.fixture(scope="module")
def myproxy(myproxy_server_factory, service: Service) -> MyProxyServer:  # noqa: F811
    return myproxy_server_factory([service.dn])


@pytest.fixture(scope="module")
def alice_proxy(pki: Pki) -> Path:
    return pki.proxy("alice", 6 * 3600)


@pytest.fixture(scope="module")
def alice_stored(myproxy: MyProxyServer, alice_proxy: Path, service: Service) -> str:
    """Alice's credential stored the WMS way: DN as username, renewable by the service (-t 2 h)."""
    return store_renewable_credential(myproxy, alice_proxy, service.dn, lifetime_hours=5, proxy_lifetime_hours=2)


def renew(myproxy: MyProxyServer, service: Service, pki: Pki, proxy_pem: bytes, username: str, **kw) -> bytes:
    args = {"host_cert": str(service.cert), "host_key": str(service.key), "ca_dir": str(pki.ca_dir),
            "user_proxy_pem": proxy_pem, "username": username, "lifetime": 3600, "timeout": 15.0}
    args.update(kw)
    return renew_proxy(myproxy.host, myproxy.port, **args)


class TestRenewProxy:
    def test_renewal_keeps_the_users_identity(self, myproxy, service, pki, alice_proxy, alice_stored):
        assert alice_stored == pki.users["alice"].dn
        pem = renew(myproxy, service, pki, alice_proxy.read_bytes(), alice_stored)
        cred = load_credential(pem)  # checks that the key matches the new proxy
        assert cred.key is not None
        assert identity_dn(cred.full_chain) == pki.users["alice"].dn
        assert slash_dn(cred.cert.subject).startswith(pki.users["alice"].dn + "/CN=")
        assert pem.index(b"PRIVATE KEY") < pem.index(b"CERTIFICATE-----", pem.index(b"PRIVATE KEY"))

    def test_renewed_proxy_verifies_against_the_ca_directory(self, myproxy, service, pki, alice_proxy, alice_stored):
        cred = load_credential(renew(myproxy, service, pki, alice_proxy.read_bytes(), alice_stored))
        verify_chain(cred.full_chain, str(pki.ca_dir))

    def test_lifetime_requested_below_the_cap_is_honoured(self, myproxy, service, pki, alice_proxy, alice_stored):
        before = datetime.now(UTC)
        cred = load_credential(renew(myproxy, service, pki, alice_proxy.read_bytes(), alice_stored, lifetime=1800))
        assert cred.cert.not_valid_after_utc <= before + timedelta(seconds=1800) + SKEW

    def test_lifetime_is_capped_by_what_the_server_grants(self, myproxy, service, pki, alice_proxy, alice_stored):
        before = datetime.now(UTC)
        cred = load_credential(
            renew(myproxy, service, pki, alice_proxy.read_bytes(), alice_stored, lifetime=48 * 3600)
        )
        # the credential was stored with -t 2 (hours): the server hands out at most 2 h
        assert cred.cert.not_valid_after_utc <= before + timedelta(hours=2) + SKEW
        assert cred.cert.not_valid_after_utc > before + timedelta(hours=1)

    def test_server_wide_max_proxy_lifetime_caps_too(self, myproxy_server_factory, service, pki):  # noqa: F811
        capped = myproxy_server_factory([service.dn], max_proxy_lifetime=1)
        proxy = pki.proxy("bob", 6 * 3600)
        username = store_renewable_credential(capped, proxy, service.dn, lifetime_hours=5, proxy_lifetime_hours=4)
        before = datetime.now(UTC)
        cred = load_credential(renew(capped, service, pki, proxy.read_bytes(), username, lifetime=4 * 3600))
        assert identity_dn(cred.full_chain) == pki.users["bob"].dn
        assert cred.cert.not_valid_after_utc <= before + timedelta(hours=1) + SKEW


class TestRefusals:
    def test_renewer_not_authorized_is_refused_with_the_servers_reason(
        self, myproxy, rogue, pki, alice_proxy, alice_stored
    ):
        with pytest.raises(MyProxyRefusedError) as info:
            renew(myproxy, rogue, pki, alice_proxy.read_bytes(), alice_stored)
        assert "authorized_renewers" in str(info.value)
        assert rogue.dn in info.value.server_error
        assert info.value.code == 1216

    def test_expired_user_proxy_is_refused(self, myproxy, service, pki, alice_stored):
        # back-dated: issued two minutes ago for one minute, so it ended a minute ago
        issued = datetime.now(UTC) - timedelta(minutes=2)
        expired = make_proxy(pki.users["alice"].credential, lifetime=60, now=issued)
        assert expired.cert.not_valid_after_utc < datetime.now(UTC)
        with pytest.raises(MyProxyRefusedError, match="certificate has expired"):
            renew(myproxy, service, pki, credential_pem(expired), alice_stored)

    def test_unknown_username_is_refused(self, myproxy, service, pki, alice_proxy, alice_stored):
        with pytest.raises(MyProxyRefusedError, match="No credentials exist"):
            renew(myproxy, service, pki, alice_proxy.read_bytes(), "/C=XX/O=nobody/CN=Nobody")

    def test_proxy_of_another_user_is_refused(self, myproxy, service, pki, alice_stored):
        with pytest.raises(MyProxyRefusedError, match="does not match"):
            renew(myproxy, service, pki, pki.proxy("bob", 3600).read_bytes(), alice_stored)

    def test_refusal_messages_carry_no_key_material(self, myproxy, rogue, pki, alice_proxy, alice_stored):
        with pytest.raises(MyProxyError) as info:
            renew(myproxy, rogue, pki, alice_proxy.read_bytes(), alice_stored)
        assert "PRIVATE KEY" not in str(info.value)

    def test_username_with_a_newline_is_rejected_before_connecting(self, service, pki, alice_proxy, closed):
        with pytest.raises(MyProxyError, match="invalid MyProxy username"):
            renew_proxy("localhost", closed, host_cert=str(service.cert), host_key=str(service.key),
                         ca_dir=str(pki.ca_dir), user_proxy_pem=alice_proxy.read_bytes(),
                         username="x\nCOMMAND=3", lifetime=60, timeout=1.0)


class TestUnreachable:
    def test_closed_port_fails_on_the_refusal_not_on_the_timeout(self, service, pki, alice_proxy, closed):
        # a 10 min timeout: the error must be the refusal, never a wait for the deadline
        with pytest.raises(MyProxyUnreachableError, match=r"cannot connect to MyProxy server .*refused"):
            renew_proxy("127.0.0.1", closed, host_cert=str(service.cert), host_key=str(service.key),
                        ca_dir=str(pki.ca_dir), user_proxy_pem=alice_proxy.read_bytes(),
                        username=pki.users["alice"].dn, lifetime=60, timeout=600.0)

    @pytest.fixture
    def silent_server(self) -> Iterator[int]:
        """Accepts TCP connections (kernel backlog) but never says a word."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(8)
            yield sock.getsockname()[1]

    def test_silent_server_times_out(self, silent_server, service, pki, alice_proxy):
        start = time.monotonic()
        with pytest.raises(MyProxyUnreachableError, match="timed out"):
            renew_proxy("127.0.0.1", silent_server, host_cert=str(service.cert), host_key=str(service.key),
                        ca_dir=str(pki.ca_dir), user_proxy_pem=alice_proxy.read_bytes(),
                        username=pki.users["alice"].dn, lifetime=60, timeout=0.5)
        assert time.monotonic() - start >= 0.4  # it waited for the deadline (no upper bound: load)

    def test_server_certificate_for_another_name_is_refused(self, myproxy, service, pki, alice_proxy, alice_stored):
        with pytest.raises(MyProxyUnreachableError, match="presented a certificate"):
            renew(myproxy, service, pki, alice_proxy.read_bytes(), alice_stored, server_dn="/C=XX/O=x/CN=myproxy")

    def test_server_not_trusted_by_the_ca_directory_is_refused(
        self, myproxy, service, pki, alice_proxy, alice_stored, tmp_path
    ):
        from wmproxy.security.pki import create_ca

        other = create_ca(tmp_path / "certificates", "/C=YY/O=Elsewhere/CN=Other CA")
        with pytest.raises(MyProxyUnreachableError, match="TLS handshake"):
            renew(myproxy, service, pki, alice_proxy.read_bytes(), alice_stored, ca_dir=str(other.directory))


class FakeNetwork:
    """A resolver answering ``addresses`` for every name and sockets whose connect fails with
    ``failure`` after using the whole time they were given, on a clock of their own (no wait)."""

    def __init__(self, addresses: list[str], failure: type[OSError]) -> None:
        self.addresses, self.failure, self.now = addresses, failure, 1000.0
        self.tried: list[tuple[str, float]] = []
        network = self

        class Sock:
            def __init__(self, *args: object) -> None:
                self.timeout = 0.0

            def settimeout(self, value: float) -> None:
                self.timeout = value

            def connect(self, address: tuple[str, int]) -> None:
                network.tried.append((address[0], self.timeout))
                if network.failure is TimeoutError:
                    network.now += self.timeout
                raise network.failure(111, "Connection refused")

            def close(self) -> None:
                pass

        self.socket = SimpleNamespace(
            getaddrinfo=lambda host, port, **kw: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                                                  for a in self.addresses],
            socket=Sock, SOCK_STREAM=socket.SOCK_STREAM, AF_INET=socket.AF_INET)
        self.time = SimpleNamespace(monotonic=lambda: self.now)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(myproxy_module, "socket", self.socket)
        monkeypatch.setattr(myproxy_module, "time", self.time)

    def connect(self, *, listed: bool = True, timeout: float = 30.0) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _connect(context, "many.example.org", 7512, self.now + timeout, "many.example.org:7512", None, listed=listed)


class TestAddresses:
    """Red team: ``socket.create_connection`` gave each address of the server's name the whole
    timeout, so a name of many addresses dropping SYNs held a renewal thread for N x timeout,
    past its claim's lease; and under ``myproxy_allowed_servers = *`` a user's MyProxyServer
    reached the site's loopback and internal ports and read back which were open."""

    PUBLIC: ClassVar[list[str]] = [f"8.8.{i}.{i}" for i in range(1, 9)]

    def test_one_deadline_for_all_the_addresses(self, monkeypatch: pytest.MonkeyPatch) -> None:
        network = FakeNetwork(self.PUBLIC, TimeoutError)
        network.install(monkeypatch)
        with pytest.raises(MyProxyUnreachableError, match="timed out"):
            network.connect(timeout=30.0)
        assert network.tried == [("8.8.1.1", 30.0)]  # the first used the time; none left for the others

    def test_at_most_four_addresses_are_tried(self, monkeypatch: pytest.MonkeyPatch) -> None:
        network = FakeNetwork(self.PUBLIC, ConnectionRefusedError)
        network.install(monkeypatch)
        with pytest.raises(MyProxyUnreachableError, match="refused"):
            network.connect()
        assert [address for address, _ in network.tried] == self.PUBLIC[:MAX_ADDRESSES] and MAX_ADDRESSES == 4

    def test_a_server_allowed_by_a_wildcard_reaches_no_internal_address(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        internal = ["127.0.0.1", "0.0.0.0", "10.1.2.3",  # noqa: S104 "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
                    "224.0.0.1", "::1", "fe80::1%eth0", "::ffff:10.0.0.1", "fd00::1"]
        network = FakeNetwork([*internal, "8.8.8.8"], ConnectionRefusedError)
        network.install(monkeypatch)
        with pytest.raises(MyProxyUnreachableError):
            network.connect(listed=False)
        assert [address for address, _ in network.tried] == ["8.8.8.8"]
        network.tried.clear()
        with pytest.raises(MyProxyUnreachableError):
            network.connect(listed=True)  # a server the site names: its addresses, whatever they are
        assert [address for address, _ in network.tried] == internal[:MAX_ADDRESSES]

    def test_a_server_allowed_by_a_wildcard_fails_with_one_text_whatever_the_port(
        self, service, pki, alice_proxy, closed, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Closed, silent or not TLS, at a loopback address or not: the user reads the same text
        (the log has the reason); the listening port is never connected to."""
        with socket.socket() as listening:
            listening.bind(("127.0.0.1", 0))
            listening.listen(8)
            listening.settimeout(0)
            texts = set()
            for host, port in (("127.0.0.1", listening.getsockname()[1]), ("localhost", closed),
                               ("2130706433", listening.getsockname()[1]), ("0", closed)):
                with pytest.raises(MyProxyUnreachableError) as failed:
                    renew_proxy(host, port, host_cert=str(service.cert), host_key=str(service.key),
                                ca_dir=str(pki.ca_dir), user_proxy_pem=alice_proxy.read_bytes(),
                                username=pki.users["alice"].dn, lifetime=60, timeout=5, listed=False)
                texts.add(str(failed.value).replace(f"{host}:{port}", "<server>"))
            with pytest.raises(BlockingIOError):
                listening.accept()
        assert texts == {UNREACHABLE_TEXT.format(where="<server>")}
        assert "internal addresses only" in caplog.text


class TestReplyLimits:
    """The reply parser on one end of a socket pair, crafted bytes from a thread on the other (no
    server)."""

    @pytest.fixture
    def pair(self) -> Iterator[tuple[_Connection, Callable[[bytes], None]]]:
        ours, theirs = socket.socketpair()
        senders: list[threading.Thread] = []

        def send(data: bytes) -> None:
            def run() -> None:
                with contextlib.suppress(OSError):  # the parser stopped reading and closed its end
                    theirs.sendall(data)
            senders.append(threading.Thread(target=run, daemon=True))
            senders[-1].start()

        with theirs:
            with ours:
                yield _Connection(ours, time.monotonic() + 600, "test"), send  # type: ignore[arg-type]
            for sender in senders:
                sender.join()

    def test_at_most_twelve_certificates(self, pair, pki: Pki) -> None:
        conn, send = pair
        der = certificate_der(pki.users["alice"].credential.cert)
        send(bytes([MAX_CERTIFICATES]) + der * MAX_CERTIFICATES)
        assert len(conn.read_certificates()) == MAX_CERTIFICATES
        send(bytes([MAX_CERTIFICATES + 1]) + der * (MAX_CERTIFICATES + 1))
        with pytest.raises(MyProxyError, match="sent 13 certificates, more than 12"):
            conn.read_certificates()

    def test_at_most_64_kib_in_all_the_replys_messages(self, pair) -> None:
        conn, send = pair
        message = b"VERSION=MYPROXYv2\nRESPONSE=0\n\0"
        send(message + b"\0" * (MAX_REPLY - 2 * len(message)) + message)  # NULs are skipped
        assert conn.read_message() == [("VERSION", "MYPROXYv2"), ("RESPONSE", "0")]
        assert conn.read_message() == [("VERSION", "MYPROXYv2"), ("RESPONSE", "0")]
        send(b"\0" * 1024 + message)  # each message small, but past the total
        with pytest.raises(MyProxyError, match=f"sent more than {MAX_REPLY} bytes"):
            conn.read_message()

    def test_a_refusals_text_is_cut_and_kept_on_one_line(self) -> None:
        """Red team: a hostile server's 100 ERROR lines of 560 characters each were the refusal's
        text, stored whole for the record and each of its jobs."""
        lines = [("ERROR", f"line {i} \x1b[31m" + "x" * 560) for i in range(100)]
        with pytest.raises(MyProxyRefusedError) as refused:
            _status([("VERSION", "MYPROXYv2"), ("RESPONSE", "1"), *lines], "test")
        text = refused.value.server_error
        assert len(text) == MAX_ERROR_TEXT == 500 and text.startswith("line 0 \\x1b[31mxxx") and text.endswith("...")
        with pytest.raises(MyProxyRefusedError, match=r"renewal: bad password; try again$"):
            _status([("VERSION", "MYPROXYv2"), ("RESPONSE", "1"), ("ERROR", "bad password"), ("ERROR", "try again")],
                    "test")
