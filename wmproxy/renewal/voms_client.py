"""VOMS client for the refresh after a MyProxy renewal (the edge of
:mod:`wmproxy.services.renewal.voms`).

As the gLite proxy renewal daemon (``voms.c``), the service asks a VOMS server for a new
attribute certificate with the user's *renewed* proxy as its TLS client certificate, then
makes a proxy signed by the renewed one that carries the AC (one level deeper, a fresh key).

Wire protocol: the legacy VOMS protocol, which libvomsapi and the renewal daemon spoke and
which every VOMS server answers (``docs/voms.md``; the REST ``GET /generate-ac`` of VOMS 2.1
is not answered by Debian's 2.1.0~rc3 build). One request, in one TLS write::

    <?xml version="1.0" encoding="US-ASCII"?><voms><command>B/atlas:production</command>
    <command>G/atlas</command><base64>1</base64><version>4</version><lifetime>43200</lifetime></voms>

one command per delegated FQAN in the delegated order (``G<group>`` for a group,
``B<group>:<role>`` for a role in a group), so the AC lists them in that order; the server
answers ``<vomsans>`` with ``<error><item><number>N</number><message>…</message></item>…</error>``
(N ≥ 1000 refuses) and ``<ac>`` (base64 DER), then closes.

The server must present a certificate that verifies against the CA directory (and its CRLs)
and has the subject the vomses line, or the old AC's issuer, names. A server answering more
than :data:`MAX_REPLY` bytes, or not in time, fails the refresh.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from xml.sax.saxutils import escape

from lxml import etree

from wmproxy.errors import ProxyError, WMProxyError
from wmproxy.renewal.connect import connect_within, getaddrinfo_within
from wmproxy.security.dn import slash_dn
from wmproxy.security.myproxy import load_der_certificate
from wmproxy.security.proxy import credential_pem, load_credential, make_proxy
from wmproxy.security.voms import voms_extension
from wmproxy.security.vomses import VomsServer
from wmproxy.services.renewal.voms import VomsRequest

log = logging.getLogger(__name__)

#: Bytes a VOMS server may answer (an AC with its server's certificate takes a few KiB).
MAX_REPLY = 64 * 1024
#: Addresses of a server's name tried at most, in the resolver's order (as for MyProxy).
MAX_ADDRESSES = 4
#: Seconds of life asked for the refreshed proxy (its issuer's end bounds it).
PROXY_LIFETIME = 10 * 365 * 24 * 3600
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)


class VomsError(WMProxyError):
    """A VOMS server did not grant an AC (unreachable, refused, or an unusable answer)."""

    code = 1216


class VomsUnreachableError(VomsError):
    """The VOMS server could not be reached or answered nothing in time."""


#: Checks one answered AC (DER) for a request: None when usable, else why not
#: (:func:`wmproxy.services.renewal.voms.ac_problem`).
AcCheck = Callable[[VomsRequest, bytes], "str | None"]


class DownServers:
    """VOMS servers found unreachable, passed over for ``hold`` seconds (a renewal cycle): a
    server that accepts connections and never answers would otherwise cost the whole timeout
    for every credential of its VO in every pass. Shared by the worker's threads."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self._until: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def down(self, server: VomsServer) -> bool:
        with self._lock:
            return self._until.get((server.host.lower(), server.port), 0.0) > time.monotonic()

    def failed(self, server: VomsServer) -> None:
        with self._lock:
            self._until[(server.host.lower(), server.port)] = time.monotonic() + self.hold


def refresh_voms(
    renewed_pem: bytes, requests: Sequence[VomsRequest], *, ca_dir: str, lifetime: int, timeout: float,
    key_bits: int = 2048, check: AcCheck | None = None, down: DownServers | None = None,
) -> tuple[bytes | None, str | None]:
    """New VOMS ACs for the renewed proxy ``renewed_pem`` (grid file layout): each of
    ``requests`` (one per VO) asked of its servers in order until one answers an AC for
    ``lifetime`` seconds that ``check`` finds usable; each exchange may take ``timeout``
    seconds. A server ``down`` holds is not asked; one that cannot be reached is added to it.

    Returns ``(refreshed proxy, None)``: a proxy signed by the renewed one, of a fresh RSA key
    of ``key_bits``, ending with it, carrying the ACs in the order of ``requests``; or
    ``(None, why)`` when a VO got no AC (each server's failure named). Never raises for a
    server's failure.
    """
    try:
        user = load_credential(renewed_pem)
    except ProxyError as exc:
        return None, f"the renewed proxy cannot be read: {exc}"
    acs: list[bytes] = []
    for request in requests:
        failures: list[str] = []
        for server in request.servers:
            where = f"{server.host}:{server.port}"
            if down is not None and down.down(server):
                failures.append(f"{where}: not asked (unreachable a moment ago)")
                continue
            try:
                der = request_ac(server, renewed_pem, request.fqans, ca_dir=ca_dir, lifetime=lifetime,
                                 timeout=timeout)
                problem = check(request, der) if check is not None else None
            except VomsUnreachableError as exc:
                if down is not None:
                    down.failed(server)
                problem = str(exc)
            except VomsError as exc:
                problem = str(exc)
            if problem is None:
                acs.append(der)
                break
            log.warning("VOMS server %s of %s: %s", where, request.vo, problem)
            failures.append(f"{where}: {problem}")
        else:
            if not request.servers:
                return None, (f"no VOMS server of {request.vo} is known (none named in the old attributes, "
                              "none in [renewal] vomses)")
            return None, f"no VOMS server of {request.vo} granted {' '.join(request.requested)}: " + "; ".join(failures)
    try:
        refreshed = make_proxy(user, lifetime=PROXY_LIFETIME, key_bits=key_bits, extensions=[voms_extension(acs)])
    except ProxyError as exc:
        return None, f"the refreshed proxy cannot be made: {exc}"
    return credential_pem(refreshed), None


def request_ac(server: VomsServer, client_pem: bytes, fqans: Sequence[str], *, ca_dir: str, lifetime: int,
               timeout: float) -> bytes:
    """One AC (DER) for ``fqans`` (primary first, short or long form) from ``server``, asked
    for ``lifetime`` seconds with the proxy ``client_pem`` (grid file layout: certificate, key,
    chain) as client certificate.

    Raises:
        VomsError: the server cannot be reached in ``timeout`` seconds, presents another
            subject than ``server.dn`` or a certificate that does not verify, refuses (its
            error numbers and messages), or answers something that is not an AC.
    """
    deadline = time.monotonic() + timeout
    context = _tls_context(client_pem, ca_dir)
    try:  # the name's lookup and each address under the one deadline (wmproxy.renewal.connect)
        raw = connect_within(getaddrinfo_within(server.host, server.port, deadline)[:MAX_ADDRESSES], deadline)
    except TimeoutError as exc:
        raise VomsUnreachableError(f"cannot connect in {timeout:g} s: {exc}") from None
    except OSError as exc:
        raise VomsUnreachableError(f"cannot connect: {exc.strerror or exc}") from None
    try:
        try:
            tls = context.wrap_socket(raw, server_hostname=None)
        except TimeoutError:
            raise VomsUnreachableError("timed out during the TLS handshake") from None
        except (ssl.SSLError, OSError) as exc:
            raise VomsError(f"TLS handshake failed: {exc}") from None
        raw = tls
        peer_der = tls.getpeercert(binary_form=True)
        subject = slash_dn(load_der_certificate(peer_der).subject) if peer_der else ""
        if subject != server.dn:
            raise VomsError(f"the server presented a certificate for {subject or 'nobody'}, not {server.dn}")
        try:
            tls.sendall(legacy_request(fqans, lifetime))
            answer = _read_all(tls, deadline)
        except TimeoutError:
            raise VomsUnreachableError(f"no answer in {timeout:g} s") from None
        except OSError as exc:
            raise VomsError(f"no answer: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            raw.close()
    return _ac_of(answer)


def legacy_request(fqans: Sequence[str], lifetime: int) -> bytes:
    """The legacy protocol's request for ``fqans`` (in that order) for ``lifetime`` seconds, as
    libvomsapi writes it (``XML_Req_Encode``): ``G/atlas/uk`` for a group,
    ``B/atlas:production`` for a role in a group. The lifetime is always sent: a server given
    none issues an AC valid for 0 s."""
    commands = []
    for fqan in fqans:
        parts = [p for p in fqan.split("/") if p]
        group = "/" + "/".join(p for p in parts if "=" not in p)
        role = next((p[5:] for p in parts if p.startswith("Role=")), "NULL")
        commands.append(f"G{group}" if role == "NULL" else f"B{group}:{role}")
    body = "".join(f"<command>{escape(c)}</command>" for c in commands)
    return (f'<?xml version="1.0" encoding="US-ASCII"?><voms>{body}<base64>1</base64><version>4</version>'
            f"<lifetime>{int(lifetime)}</lifetime></voms>").encode("ascii", "xmlcharrefreplace")


def _tls_context(client_pem: bytes, ca_dir: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # the subject is checked against the vomses line or the AC's issuer
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN | ssl.VERIFY_X509_STRICT
    try:
        context.load_verify_locations(capath=str(ca_dir))
        with _memory_file(client_pem) as path:
            context.load_cert_chain(path)
    except (OSError, ssl.SSLError) as exc:
        raise VomsError(f"cannot load the renewed proxy or the CA directory: {exc}") from None
    return context


@contextlib.contextmanager
def _memory_file(data: bytes) -> Iterator[str]:
    """A path to ``data`` that is never on a disk (a memfd, readable by this process only):
    OpenSSL loads a client chain from a path, and the renewed proxy's key is not written out."""
    fd = os.memfd_create("voms-client", os.MFD_CLOEXEC)
    try:
        os.write(fd, data)
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _read_all(tls: ssl.SSLSocket, deadline: float) -> bytes:
    """What the server sends until it closes, at most :data:`MAX_REPLY` bytes, by ``deadline``."""
    answer = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        tls.settimeout(left)
        try:
            chunk = tls.recv(65536)
        except ssl.SSLZeroReturnError:
            return bytes(answer)
        if not chunk:
            return bytes(answer)
        answer += chunk
        if len(answer) > MAX_REPLY:
            raise VomsError(f"the server answered more than {MAX_REPLY} bytes")


def _ac_of(answer: bytes) -> bytes:
    """The DER AC of a ``<vomsans>``; its errors (numbers of 1000 and more) refuse."""
    if not answer:
        raise VomsUnreachableError("the server closed the connection without an answer")
    try:
        root = etree.fromstring(answer, _PARSER)
    except etree.XMLSyntaxError:
        raise VomsError("the server's answer is not a VOMS answer") from None
    if root.tag != "vomsans":
        raise VomsError("the server's answer is not a VOMS answer")
    errors = []
    for item in root.iterfind("error/item"):
        number = (item.findtext("number") or "").strip()
        number = number if number.isascii() and number.isdigit() else "?"  # no line breaks into notes
        message = " ".join((item.findtext("message") or "").split())
        if number == "?" or int(number) >= 1000:
            errors.append(f"{number} {message}".strip())
        else:
            log.info("VOMS server warning %s: %s", number, message)
    if errors:
        raise VomsError(("refused: " + "; ".join(errors))[:500])
    text = root.findtext("ac")
    if not text:
        raise VomsError("the server's answer holds no AC")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise VomsError("the server's AC is not base64") from None
