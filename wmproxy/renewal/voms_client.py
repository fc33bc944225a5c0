"""VOMS client for the refresh after a MyProxy renewal (the edge of
:mod:`wmproxy.services.renewal.voms`).

As the gLite proxy renewal daemon (``voms.c``), the service asks a VOMS server for a new
attribute certificate with the user's *renewed* proxy as its TLS client certificate, then
makes a proxy signed by the renewed one that carries the AC (one level deeper, a fresh key).

Wire protocol: the VOMS REST interface of VOMS 2.x servers, the one ``voms-proxy-init`` 2.1
tries first::

    GET /generate-ac?fqans=/atlas/Role=production,/atlas&lifetime=43200 HTTP/1.1

over TLS, answered by ``<voms><ac>base64 DER AC</ac></voms>`` or, refused,
``<voms><error><code>…</code><message>…</message></error></voms>`` (``docs/voms.md``).

The server must present a certificate that verifies against the CA directory (and its CRLs)
and has the subject the vomses line, or the old AC's issuer, names. A server answering more
than :data:`MAX_REPLY` bytes, or not in time, fails the refresh.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import logging
import os
import ssl
import time
from collections.abc import Iterator, Sequence
from urllib.parse import quote

from lxml import etree

from wmproxy.errors import ProxyError, WMProxyError
from wmproxy.security.dn import slash_dn
from wmproxy.security.myproxy import load_der_certificate
from wmproxy.security.proxy import credential_pem, load_credential, make_proxy
from wmproxy.security.voms import voms_extension
from wmproxy.security.vomses import VomsServer
from wmproxy.services.renewal.voms import VomsRequest

log = logging.getLogger(__name__)

#: Bytes a VOMS server may answer (an AC with its server's certificate takes a few KiB).
MAX_REPLY = 64 * 1024
#: Seconds of life asked for the refreshed proxy (its issuer's end bounds it).
PROXY_LIFETIME = 10 * 365 * 24 * 3600
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)


class VomsError(WMProxyError):
    """A VOMS server did not grant an AC (unreachable, refused, or an unusable answer)."""

    code = 1216


def refresh_voms(
    renewed_pem: bytes, requests: Sequence[VomsRequest], *, ca_dir: str, lifetime: int, timeout: float,
    key_bits: int = 2048,
) -> tuple[bytes | None, str | None]:
    """New VOMS ACs for the renewed proxy ``renewed_pem`` (grid file layout): each of
    ``requests`` (one per VO) asked of its servers in order until one grants an AC for
    ``lifetime`` seconds; each exchange may take ``timeout`` seconds.

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
            try:
                acs.append(request_ac(server, renewed_pem, request.requested, ca_dir=ca_dir, lifetime=lifetime,
                                      timeout=timeout))
                break
            except VomsError as exc:
                log.warning("VOMS server %s:%d of %s: %s", server.host, server.port, request.vo, exc)
                failures.append(f"{server.host}:{server.port}: {exc}")
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
    """One AC (DER) for ``fqans`` (short forms, primary first) from ``server``, asked with the
    proxy ``client_pem`` (grid file layout: certificate, key, chain) as client certificate.

    Raises:
        VomsError: the server cannot be reached in ``timeout`` seconds, presents another
            subject than ``server.dn`` or a certificate that does not verify, refuses (its
            error code and message), or answers something that is not an AC.
    """
    deadline = time.monotonic() + timeout
    context = _tls_context(client_pem, ca_dir)
    conn = http.client.HTTPSConnection(server.host, server.port, timeout=timeout, context=context)
    try:
        try:
            conn.connect()
        except (TimeoutError, ssl.SSLError, OSError) as exc:
            raise VomsError(f"cannot connect: {exc}") from None
        sock = conn.sock
        peer_der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
        subject = slash_dn(load_der_certificate(peer_der).subject) if peer_der else ""
        if subject != server.dn:
            raise VomsError(f"the server presented a certificate for {subject or 'nobody'}, not {server.dn}")
        query = f"fqans={','.join(quote(f, safe='/=') for f in fqans)}&lifetime={int(lifetime)}"
        try:
            conn.request("GET", f"/generate-ac?{query}", headers={"Accept": "*/*"})
            response = conn.getresponse()
            body = _read(response, deadline)
        except (TimeoutError, ssl.SSLError, OSError, http.client.HTTPException) as exc:
            raise VomsError(f"no answer: {exc}") from None
    finally:
        conn.close()
    return _ac_of(body, response.status)


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


def _read(response: http.client.HTTPResponse, deadline: float) -> bytes:
    body = bytearray()
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        chunk = response.read1(65536)
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > MAX_REPLY:
            raise VomsError(f"the server answered more than {MAX_REPLY} bytes")


def _ac_of(body: bytes, status: int) -> bytes:
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        raise VomsError(f"the server answered HTTP {status} without a VOMS reply") from None
    code = (root.findtext("error/code") or "").strip()
    message = (root.findtext("error/message") or "").strip()
    if code or message:
        raise VomsError(f"refused ({code or 'no code'}): {message or 'no message'}"[:500])
    text = root.findtext("ac")
    if root.tag != "voms" or not text:
        raise VomsError(f"the server answered HTTP {status} without an AC")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise VomsError("the server's AC is not base64") from None
