"""MyProxy protocol client (MYPROXYv2 over TLS) for renewing users' proxies.

The service renews a user's proxy the way the gLite proxy renewal daemon did with
``myproxy_get_delegation()``: it authenticates with its **host credential**, sends a GET
(COMMAND=0) with an empty passphrase for the credential stored under the user's DN, answers
the server's ``X509_certificate`` authorization challenge with a signature made with the
user's **still valid** proxy (proof of possession) plus that proxy's chain, then gets a
new proxy certified for a fresh key (the delegation step).

The server must authorize the service's DN (``authorized_renewers`` and the credential's
renewer policy, ``myproxy-init -x -R '<service DN>'``) and allows a proxy no longer than
its policy grants; an expired user proxy is refused, so renew before expiry.

Wire protocol (gridcf/gct ``myproxy/source/PROTOCOL`` and the code; ``peers.md`` §5.3):
every message is one TLS record; text messages are ``KEY=VALUE`` lines ended by a NUL.

1. client → ``"0"`` (GSI "no delegation" byte)
2. client → ``VERSION=MYPROXYv2\\nCOMMAND=0\\nUSERNAME=…\\nPASSPHRASE=\\nLIFETIME=<s>\\n\\0``
3. server → ``RESPONSE=2`` + ``AUTHORIZATION_DATA=<method>:<challenge>`` lines
   (or ``RESPONSE=0``: no further authorization; ``RESPONSE=1`` + ``ERROR=`` lines: refused)
4. client → method id (4 bytes, id in the first), signature length (4 bytes, big endian),
   PKCS#1 v1.5 signature of the challenge text, 1 byte certificate count, DER certificates
   (proxy first)
5. server → ``RESPONSE=0`` or ``RESPONSE=1`` + ``ERROR=`` lines
6. client → DER certificate request for a fresh key
7. server → 1 byte count + DER certificates (new proxy first), then ``RESPONSE=0``

A server sending more than :data:`MAX_REPLY` bytes in all, or more than
:data:`MAX_CERTIFICATES` certificates, fails the renewal (:class:`MyProxyError`).

The connection has the exchange's one deadline: the server's name is looked up under it (in a
short-lived thread, :func:`wmproxy.renewal.connect.getaddrinfo_within`: the C resolver has no
timeout of ours, and one that does not answer held a renewal thread about 30 s per attempt),
then the first :data:`MAX_ADDRESSES` addresses of the name are tried in turn, each with the
time left (``socket.create_connection`` gave each the whole timeout: a name of many addresses
dropping SYNs held a renewal thread past its claim). A server the site allows only through a
wildcard of ``myproxy_allowed_servers`` (``listed=False``) is reached at public unicast
addresses only (none loopback, private, link-local, unspecified, multicast...), and its
connection failures read the same to the user (the detail is logged): a user's MyProxyServer
does not scan the site's network.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wmproxy.domain import utcnow
from wmproxy.errors import ProxyError, WMProxyError
from wmproxy.renewal.connect import connect_within, getaddrinfo_within
from wmproxy.security.chain import identity_dn
from wmproxy.security.dn import slash_dn
from wmproxy.security.myproxy import (
    RenewalRequest,
    chain_der,
    load_der_certificate,
    names_myproxy_server,
    sign_challenge,
)
from wmproxy.security.proxy import Credential, load_credential
from wmproxy.security.renewed import check_renewed_proxy
from wmproxy.text import short_text

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger(__name__)

PROTOCOL_VERSION = "MYPROXYv2"
DEFAULT_PORT = 7512
COMMAND_GET = 0
RESPONSE_OK, RESPONSE_ERROR, RESPONSE_AUTHORIZATION = "0", "1", "2"
# authorization method ids (myproxy_authorization.h) and the hash each one signs with
_CERT_METHODS = {"X509_certificate_SHA256": (4, "sha256"), "X509_certificate": (2, "sha1")}
#: Bytes the server may send in one exchange, all its messages together: a chain of a few
#: certificates and three short text messages take a few KiB.
MAX_REPLY = 64 * 1024
#: Certificates the server may return (the new proxy, the stored proxies, the user certificate).
MAX_CERTIFICATES = 12
#: Characters of a server's ``ERROR`` text a refusal keeps (:func:`server_text`; a VOMS
#: server's refusal is cut at 500 too).
MAX_ERROR_TEXT = 500
#: Addresses of a server's name tried at most, in the resolver's order.
MAX_ADDRESSES = 4
#: What the user reads of a connection to a server allowed only through a wildcard that failed
#: (closed, silent, not TLS, another certificate...: the log says which).
UNREACHABLE_TEXT = ("cannot connect to MyProxy server {where}: not reached, or at an internal address only, which a "
                    "server allowed by a wildcard may not have (the service's log has the reason)")


class MyProxyError(WMProxyError):
    """Renewing a proxy from a MyProxy server failed (1216, PROXY_RENEWAL_FAILURE)."""

    code = 1216


class MyProxyUnreachableError(MyProxyError):
    """The MyProxy server cannot be reached: connection refused, timeout, TLS handshake or
    server identity failure."""


class MyProxyRefusedError(MyProxyError):
    """The MyProxy server answered ``RESPONSE=1``; the message holds its ``ERROR`` text."""

    def __init__(self, server_error: str) -> None:
        super().__init__(f"MyProxy server refused the renewal: {server_error}")
        self.server_error = server_error


@dataclass
class _Connection:
    """A TLS connection with a read buffer, one deadline (monotonic seconds) for all I/O and a
    bound on all the server sends (:data:`MAX_REPLY` bytes)."""

    sock: ssl.SSLSocket
    deadline: float
    where: str
    buffer: bytearray = field(default_factory=bytearray)
    received: int = 0  # bytes read from the server, at most MAX_REPLY

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise MyProxyUnreachableError(f"MyProxy server {self.where} timed out")
        self.sock.settimeout(left)

    def send(self, data: bytes) -> None:
        """Send one protocol message (one TLS record: the server reads one token per message)."""
        self._arm()
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise MyProxyUnreachableError(f"MyProxy server {self.where} timed out") from None
        except OSError as exc:
            raise MyProxyError(f"connection to MyProxy server {self.where} lost: {exc}") from None

    def _fill(self) -> None:
        self._arm()
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise MyProxyUnreachableError(f"MyProxy server {self.where} timed out") from None
        except OSError as exc:
            raise MyProxyError(f"connection to MyProxy server {self.where} lost: {exc}") from None
        if not chunk:
            raise MyProxyError(f"MyProxy server {self.where} closed the connection")
        self.received += len(chunk)
        if self.received > MAX_REPLY:
            raise MyProxyError(f"MyProxy server {self.where} sent more than {MAX_REPLY} bytes")
        self.buffer += chunk

    def read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def read_message(self) -> list[tuple[str, str]]:
        """One NUL-terminated text message as ``(key, value)`` pairs. Leading NULs (an empty
        record some servers send first under TLS 1.3) are skipped."""
        while True:
            while self.buffer[:1] == b"\0":
                del self.buffer[:1]
            end = self.buffer.find(b"\0")
            if end >= 0:
                break
            self._fill()
        text = bytes(self.buffer[:end]).decode("utf-8", "replace")
        del self.buffer[: end + 1]
        pairs: list[tuple[str, str]] = []
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                pairs.append((key.strip(), value))
        return pairs

    def read_certificates(self) -> list[x509.Certificate]:
        """1 byte count, then that many DER certificates (lengths from their DER headers); at
        most :data:`MAX_CERTIFICATES`."""
        while True:
            count = self.read_exact(1)[0]
            if count:
                break  # a lone NUL record is skipped like before a text message
        if count > MAX_CERTIFICATES:
            raise MyProxyError(f"MyProxy server {self.where} sent {count} certificates, "
                               f"more than {MAX_CERTIFICATES}")
        certs: list[x509.Certificate] = []
        for _ in range(count):
            head = self.read_exact(2)
            if head[0] != 0x30:
                raise MyProxyError(f"MyProxy server {self.where} sent a malformed certificate")
            if head[1] < 0x80:
                body = head[1]
                extra = b""
            else:
                extra = self.read_exact(head[1] & 0x7F)
                body = int.from_bytes(extra, "big")
            der = head + extra + self.read_exact(body)
            try:
                certs.append(load_der_certificate(der))
            except ProxyError:
                raise MyProxyError(f"MyProxy server {self.where} sent a malformed certificate") from None
        return certs


def renew_proxy(
    server: str,
    port: int,
    *,
    host_cert: str,
    host_key: str,
    ca_dir: str,
    user_proxy_pem: bytes,
    username: str,
    lifetime: int,
    timeout: float = 30.0,
    server_dn: str | None = None,
    key_bits: int = 2048,
    listed: bool = True,
) -> bytes:
    """Renew a user's proxy from a MyProxy server (MyProxy protocol GET with X.509 renewal).

    Args:
        server: MyProxy host name (or IP) to connect to and to check the server's certificate
            against.
        port: MyProxy TCP port (usually 7512).
        host_cert: PEM file of the service's certificate (the TLS client certificate; its DN
            must be an authorized renewer of the credential).
        host_key: PEM file of its unencrypted private key.
        ca_dir: grid CA directory (``<hash>.0`` CA certs, ``<hash>.r0`` CRLs) that the
            server's certificate must verify against.
        user_proxy_pem: the user's current, still valid proxy in the grid proxy file layout
            (cert, key, chain); its key signs the server's challenge and never leaves here.
        username: name the credential is stored under; the user's DN for ``myproxy-init -d``.
        lifetime: requested lifetime of the new proxy in seconds; the server may grant less
            (its ``max_proxy_lifetime``, the credential's ``-t`` or remaining lifetime).
        timeout: seconds for the whole exchange, connection included.
        server_dn: if given, the server certificate's slash DN must equal it (like
            ``MYPROXY_SERVER_DN``) instead of the host name check.
        key_bits: RSA size of the new proxy key, in bits.
        listed: the site names this server (a default, or ``host[:port]`` in
            ``myproxy_allowed_servers``); False: allowed through a wildcard only, which reaches
            no internal address and reports connection failures without their detail.

    The server certificate must verify against ``ca_dir`` (CRLs checked) and name
    ``server`` as MyProxy requires: a subjectAltName DNS/IP entry, or CN ``<server>``,
    ``host/<server>`` or ``myproxy/<server>``.

    Returns:
        The new proxy in the grid proxy file layout: the new proxy certificate, its new
        unencrypted private key (PEM), then the chain up to the user certificate.

    Raises:
        MyProxyUnreachableError: connection refused, timeout, TLS handshake failure or a
            server certificate not naming ``server``.
        MyProxyRefusedError: the server answered with ``ERROR`` lines (not an authorized
            renewer, expired or revoked user proxy, no such credential...).
        MyProxyError: unusable local credentials, a protocol violation, or a returned proxy
            whose key is not the request's or that
            :func:`~wmproxy.security.renewed.check_renewed_proxy` refuses against
            ``user_proxy_pem`` (not the verified path, another identity or user certificate).
    """
    if any(c in username for c in "\n\r\0") or not username:
        raise MyProxyError("invalid MyProxy username")
    if lifetime <= 0:
        raise MyProxyError(f"invalid proxy lifetime: {lifetime} s")
    try:
        user = load_credential(user_proxy_pem)
    except ProxyError as exc:
        raise MyProxyError(f"unusable user proxy: {exc}") from None
    if user.key is None:
        raise MyProxyError("the user proxy has no private key")
    try:
        user_dn = identity_dn(user.full_chain)
    except ProxyError as exc:
        raise MyProxyError(f"unusable user proxy: {exc}") from None
    where = f"{server}:{port}"
    context = _tls_context(host_cert, host_key, ca_dir)
    deadline = time.monotonic() + timeout
    conn = _connect(context, server, port, deadline, where, server_dn, listed=listed)
    try:
        log.debug("MyProxy GET for %s at %s, lifetime %d s", username, where, lifetime)
        conn.send(b"0")
        conn.send(
            f"VERSION={PROTOCOL_VERSION}\nCOMMAND={COMMAND_GET}\nUSERNAME={username}\n"
            f"PASSPHRASE=\nLIFETIME={int(lifetime)}\n".encode() + b"\0"
        )
        reply = conn.read_message()
        status = _status(reply, where)
        if status == RESPONSE_AUTHORIZATION:
            conn.send(_authorization_answer(reply, user, where))
            if _status(conn.read_message(), where) != RESPONSE_OK:
                raise MyProxyError(f"MyProxy server {where} sent an unexpected response")
        elif status != RESPONSE_OK:
            raise MyProxyError(f"MyProxy server {where} sent an unexpected response")
        request = RenewalRequest.new(key_bits)
        conn.send(request.csr_der)
        certs = conn.read_certificates()
        _status(conn.read_message(), where)
    finally:
        _close(conn.sock)
    try:
        renewed = request.credential(certs)
    except ProxyError as exc:
        raise MyProxyError(f"MyProxy server {where} returned {exc}") from None
    try:
        check_renewed_proxy(renewed, user_dn, ca_dir, utcnow(), stored_pem=user_proxy_pem)
    except ProxyError as exc:
        raise MyProxyError(f"MyProxy server {where} returned an unusable proxy: {exc}") from None
    log.info("renewed proxy of %s from %s until %s", user_dn, where, certs[0].not_valid_after_utc.isoformat())
    return renewed


def _tls_context(host_cert: str, host_key: str, ca_dir: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # MyProxy's own name rules: names_myproxy_server
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN | ssl.VERIFY_X509_STRICT
    try:
        context.load_verify_locations(capath=str(ca_dir))
        context.load_cert_chain(str(host_cert), str(host_key))
    except (OSError, ssl.SSLError) as exc:
        raise MyProxyError(f"cannot load the service credential or CA directory: {exc}") from None
    return context


def _connect(
    context: ssl.SSLContext, server: str, port: int, deadline: float, where: str, server_dn: str | None, *,
    listed: bool = True,
) -> _Connection:
    try:
        return _connect_tls(context, server, port, deadline, where, server_dn, listed)
    except MyProxyUnreachableError as exc:
        if listed:
            raise
        log.warning("MyProxy server %s (allowed by a wildcard) not reached: %s", where, exc)
        raise MyProxyUnreachableError(UNREACHABLE_TEXT.format(where=where)) from None


def _connect_tls(
    context: ssl.SSLContext, server: str, port: int, deadline: float, where: str, server_dn: str | None,
    listed: bool,
) -> _Connection:
    raw = _open_socket(server, port, deadline, where, listed)
    try:
        raw.settimeout(max(deadline - time.monotonic(), 0.001))
        sock = context.wrap_socket(raw, server_hostname=None)
    except TimeoutError:
        _close(raw)
        raise MyProxyUnreachableError(f"MyProxy server {where} timed out during the TLS handshake") from None
    except (ssl.SSLError, OSError) as exc:
        _close(raw)
        raise MyProxyUnreachableError(f"TLS handshake with MyProxy server {where} failed: {exc}") from None
    peer_der = sock.getpeercert(binary_form=True)
    if peer_der is None:
        _close(sock)
        raise MyProxyUnreachableError(f"MyProxy server {where} presented no certificate")
    peer = load_der_certificate(peer_der)
    ok = slash_dn(peer.subject) == server_dn if server_dn is not None else names_myproxy_server(peer, server)
    if not ok:
        _close(sock)
        raise MyProxyUnreachableError(
            f"MyProxy server {where} presented a certificate for {slash_dn(peer.subject)}"
        )
    return _Connection(sock, deadline, where)


def _open_socket(server: str, port: int, deadline: float, where: str, listed: bool) -> socket.socket:
    """A TCP connection to the first of the first :data:`MAX_ADDRESSES` addresses of ``server``
    that answers before ``deadline`` (monotonic), each tried with the time left, the name's
    lookup under the same deadline (:func:`~wmproxy.renewal.connect.getaddrinfo_within`);
    unless ``listed``, internal addresses are left out (:func:`_internal`)."""
    try:
        found = getaddrinfo_within(server, port, deadline, resolve=socket.getaddrinfo, clock=time.monotonic)
    except TimeoutError as exc:
        raise MyProxyUnreachableError(f"MyProxy server {where} timed out: {exc}") from None
    except OSError as exc:
        raise MyProxyUnreachableError(f"cannot connect to MyProxy server {where}: {exc.strerror or exc}") from None
    addresses = [a for a in found if listed or not _internal(str(a[4][0]))][:MAX_ADDRESSES]
    if not addresses:
        raise MyProxyUnreachableError(f"cannot connect to MyProxy server {where}: it resolves to internal "
                                      "addresses only, which a server allowed by a wildcard may not have")
    try:
        return connect_within(addresses, deadline, make_socket=socket.socket, clock=time.monotonic)
    except TimeoutError:
        raise MyProxyUnreachableError(f"MyProxy server {where} timed out") from None
    except OSError as exc:
        raise MyProxyUnreachableError(f"cannot connect to MyProxy server {where}: {exc.strerror or exc}") from None


def _internal(address: str) -> bool:
    """Whether ``address`` (an IP address as the resolver gives it) is not a public unicast
    address: loopback, private, shared (CGN), link-local, unspecified, documentation, reserved
    or multicast (``ipaddress``'s ``is_global``; an IPv4 address mapped into IPv6 judged as itself)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _status(pairs: list[tuple[str, str]], where: str) -> str:
    values = dict(pairs)
    if values.get("VERSION") != PROTOCOL_VERSION:
        raise MyProxyError(f"MyProxy server {where} speaks an unknown protocol version")
    status = values.get("RESPONSE")
    if status == RESPONSE_ERROR:
        errors = [v.strip() for k, v in pairs if k == "ERROR" and v.strip()]
        raise MyProxyRefusedError(server_text("; ".join(errors) or "no reason given"))
    if status not in (RESPONSE_OK, RESPONSE_AUTHORIZATION):
        raise MyProxyError(f"MyProxy server {where} sent an unexpected response")
    return status


def server_text(text: str) -> str:
    """A server's ``ERROR`` text as a refusal carries it: on one line (control characters
    escaped, :func:`~wmproxy.text.log_text`) and at most :data:`MAX_ERROR_TEXT` characters. It
    is stored as the record's ``last_error`` and in an event of each held job of the credential
    (red team: 58 KB of text, changing at each attempt, stored on each of 50 jobs)."""
    return short_text(text, MAX_ERROR_TEXT)


def _authorization_answer(reply: list[tuple[str, str]], user: Credential, where: str) -> bytes:
    """Proof of possession of the user's proxy for the strongest X509_certificate method offered."""
    offered: dict[str, str] = {}
    for key, value in reply:
        if key == "AUTHORIZATION_DATA":
            method, _, challenge = value.partition(":")
            offered[method] = challenge
    name = next((method for method in _CERT_METHODS if method in offered), None)  # the strongest first
    if name is None:
        raise MyProxyError(
            f"MyProxy server {where} offers no certificate authorization (renewal is not enabled there)"
        )
    method_id, hash_name = _CERT_METHODS[name]
    try:
        signature = sign_challenge(user, offered[name].encode(), hash_name)
    except ProxyError as exc:
        raise MyProxyError(str(exc)) from None
    chain = chain_der(user.full_chain)
    if len(chain) > 255:
        raise MyProxyError("the user proxy chain is too long")
    certs = bytes([len(chain)]) + b"".join(chain)
    return struct.pack("!B3x", method_id) + struct.pack("!I", len(signature)) + signature + certs


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
