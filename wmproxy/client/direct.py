"""One HTTPS POST with the standard library (``ssl`` + ``http.client``), for the light SOAP
calls of :mod:`.envelope`: the CLI's ``status`` then needs neither requests nor zeep
(issue 14). The TLS settings are those of :func:`.session.grid_session`: the user's proxy as
client credential, only ``X509_CERT_DIR`` trusted, host name checked, no proxy variables.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from urllib.parse import urlsplit

from wmproxy.client.faults import WMProxyClientError, transport_error


def post(
    url: str, body: bytes, headers: dict[str, str], *, proxy_file: str, ca_dir: str, timeout: float | None,
    method: str | None = None,
) -> tuple[int, bytes]:
    """POST ``body`` to ``url`` on a new connection; ``(HTTP status, body)``.

    Raises:
        WMProxyClientError: ``ConnectionError``/``TLSError`` as
            :func:`~wmproxy.client.faults.transport_error` words them, ``ProxyError`` when the
            proxy file cannot be used as the client credential.
    """
    parts = urlsplit(url)
    where = parts.netloc or url
    try:
        context = ssl.create_default_context(capath=ca_dir)
        context.load_cert_chain(proxy_file)
    except (ssl.SSLError, OSError) as exc:
        raise WMProxyClientError("ProxyError", f"cannot use {proxy_file} or {ca_dir} for TLS: {exc}", None,
                                 method) from None
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port or 443, context=context, timeout=timeout)
    try:
        conn.request("POST", target or "/", body, headers)
        response = conn.getresponse()
        return response.status, response.read()
    except ssl.SSLError as exc:  # SSLCertVerificationError included
        reason = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = f"certificate verify failed: {reason}"
        raise transport_error(where, " ".join(str(reason).split()), method, tls=True) from None
    except TimeoutError as exc:
        raise transport_error(where, str(exc) or "timed out", method, timeout=True) from None
    except socket.gaierror as exc:
        raise transport_error(where, f"Name or service not known ({exc})", method) from None
    except (http.client.HTTPException, OSError) as exc:
        raise transport_error(where, f"{type(exc).__name__}: {exc}", method) from None
    finally:
        conn.close()
