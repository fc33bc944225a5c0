"""One HTTPS POST with the standard library (``ssl`` + ``http.client``), for the light SOAP
calls of :mod:`.envelope`: the CLI's ``status`` then needs neither requests nor zeep
(issue 14). The TLS settings are those of :func:`.session.grid_session`
(:func:`.connection.tls_context`: only ``X509_CERT_DIR`` and its CRLs trusted, host name
checked against subjectAltName, the user's proxy as client credential, no proxy variables);
the call ends within its timeout and its reply is read up to :data:`.connection.MAX_REPLY`
bytes; a redirect is an error, never followed.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from urllib.parse import urlsplit

from wmproxy.client.connection import MAX_REPLY, ClosedWhileSending, call_deadline, tls_context
from wmproxy.client.faults import WMProxyClientError, redirect_error, reply_too_large, transport_error

_CHUNK = 64 * 1024


def post(
    url: str, body: bytes, headers: dict[str, str], *, proxy_file: str, ca_dir: str, timeout: float | None,
    method: str | None = None,
) -> tuple[int, bytes]:
    """POST ``body`` to ``url`` on a new connection; ``(HTTP status, body)``.

    The whole exchange (connect, handshake, request, reply) ends within ``timeout`` seconds.

    Raises:
        WMProxyClientError: ``ConnectionError``/``TLSError`` as
            :func:`~wmproxy.client.faults.transport_error` words them (a redirect too: see
            :func:`~wmproxy.client.faults.redirect_error`), ``InvalidResponse`` for a reply over
            :data:`~wmproxy.client.connection.MAX_REPLY` bytes, ``ProxyError`` when the proxy file
            cannot be used as the client credential.
    """
    parts = urlsplit(url)
    where = parts.netloc or url
    try:
        context = tls_context(proxy_file, ca_dir)
    except (ssl.SSLError, OSError) as exc:
        raise WMProxyClientError("ProxyError", f"cannot use {proxy_file} or {ca_dir} for TLS: {exc}", None,
                                 method) from None
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port or 443, context=context, timeout=timeout)
    try:
        with call_deadline(timeout):
            conn.request("POST", target or "/", body, headers)
            with conn.getresponse() as response:
                return _reply(response, where, method)
    except ssl.SSLError as exc:  # SSLCertVerificationError included
        reason = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = f"certificate verify failed: {reason}"
        raise transport_error(where, " ".join(str(reason).split()), method, tls=True,
                              closed_while_sending=isinstance(exc, ClosedWhileSending)) from None
    except TimeoutError as exc:
        raise transport_error(where, str(exc) or "timed out", method, timeout=True) from None
    except socket.gaierror as exc:
        raise transport_error(where, f"Name or service not known ({exc})", method) from None
    except (http.client.HTTPException, OSError) as exc:
        raise transport_error(where, f"{type(exc).__name__}: {exc}", method) from None
    finally:
        conn.close()


def _reply(response: http.client.HTTPResponse, where: str, method: str | None) -> tuple[int, bytes]:
    """``(status, body)``; a redirect refused, a body past :data:`MAX_REPLY` bytes (declared or
    received) too."""
    location = response.getheader("Location")
    if 300 <= response.status < 400 and location is not None:
        raise redirect_error(where, response.status, location, method)
    if response.length is not None:  # a Content-Length: read at once, if not too large
        if response.length > MAX_REPLY:
            raise reply_too_large(where, method)
        return response.status, response.read()
    chunks: list[bytes] = []
    size = 0
    while chunk := response.read(_CHUNK):
        size += len(chunk)
        if size > MAX_REPLY:
            raise reply_too_large(where, method)
        chunks.append(chunk)
    return response.status, b"".join(chunks)
