"""SOAP faults and transport failures → :class:`WMProxyClientError`.

Both fault wire formats of the reference are understood (``wmproxy-behaviour.md``
§1.5.1):

* with a ``<detail>``: its first element names the fault type (``JobUnknownFault``,
  ``AuthorizationFault``, delegation ``DelegationException``...) and carries the
  unqualified ``methodName``, ``ErrorCode``, ``Description`` and ``FaultCause*``
  (delegation faults: ``msg`` in delegation-2, ``message`` in delegation-1);
* without one (gLite HEAD): only ``faultstring``; the type is then
  ``"WMProxy Server Error"``, as the gLite UI prints it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lxml import etree

if TYPE_CHECKING:
    import requests
    from zeep import exceptions as zeep_exceptions

SERVER_ERROR = "WMProxy Server Error"


class WMProxyClientError(Exception):
    """A WMProxy call failed; the one exception of :mod:`wmproxy.client`.

    Attributes:
        fault_type: WSDL fault element name (``JobUnknownFault``), ``DelegationException``,
            ``WMProxy Server Error`` for a fault without detail, or a client-side kind
            (``ConnectionError``, ``TransferError``, ``ProxyError``, ``InvalidResponse``,
            ``InvalidJSDL``).
        description: one human readable sentence.
        error_code: the gLite decimal code (``"1218"``) when the server sent one, else None.
        method: the server method name from the fault detail, else the WSDL operation called.
        causes: ``FaultCause`` lines, possibly empty.
    """

    def __init__(
        self,
        fault_type: str,
        description: str,
        error_code: str | None = None,
        method: str | None = None,
        causes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(f"{fault_type}: {description}")
        self.fault_type = fault_type
        self.description = description
        self.error_code = error_code
        self.method = method
        self.causes = causes


def _local(tag: Any) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _child_text(el: etree._Element, name: str) -> str | None:
    for child in el:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def from_fault(fault: zeep_exceptions.Fault, method: str | None = None) -> WMProxyClientError:
    """Map a zeep Fault to a :class:`WMProxyClientError`.

    Args:
        fault: raised by a zeep service call; ``fault.detail`` is the ``<detail>`` element or None.
        method: the WSDL operation that was called, used when the detail names none.
    """
    return fault_error(fault.message, fault.detail, method)


def fault_error(
    faultstring: str | None, detail: etree._Element | None, method: str | None = None
) -> WMProxyClientError:
    """A SOAP Fault (its ``faultstring`` and ``<detail>`` element, or None) as a
    :class:`WMProxyClientError`; see :func:`from_fault`."""
    faultstring = (faultstring or "").strip()
    element = None
    if detail is not None:
        element = next((c for c in detail if isinstance(c.tag, str)), None)
    if element is None:
        return WMProxyClientError(SERVER_ERROR, faultstring or "unknown error", None, method)
    fault_type = _local(element.tag)
    description = (
        _child_text(element, "Description")
        or _child_text(element, "msg")
        or _child_text(element, "message")
        or faultstring
        or fault_type
    )
    causes = tuple((c.text or "").strip() for c in element if _local(c.tag) == "FaultCause")
    return WMProxyClientError(
        fault_type,
        description,
        _child_text(element, "ErrorCode") or None,
        _child_text(element, "methodName") or method,
        causes,
    )


@contextmanager
def translated_errors(method: str) -> Iterator[None]:
    """Turn zeep/requests failures raised inside the block into :class:`WMProxyClientError`.

    Args:
        method: the WSDL operation (or transfer) being performed, for the error.
    """
    try:
        yield
    except WMProxyClientError as exc:
        if exc.method is None:  # raised below the call (a redirect refused, a reply too large)
            exc.method = method
        raise
    except etree.XMLSyntaxError as exc:
        raise WMProxyClientError("InvalidResponse", str(exc) or type(exc).__name__, None, method) from None
    except Exception as exc:
        requests = sys.modules.get("requests")  # requests and zeep are imported only when used
        if requests is not None and isinstance(exc, requests.exceptions.RequestException):
            raise connection_error(exc, method) from None
        if isinstance(exc, OSError):  # requests raises it for an unusable CA path or client cert file
            raise WMProxyClientError("ConnectionError", str(exc) or type(exc).__name__, None, method) from None
        zeep_exceptions = sys.modules.get("zeep.exceptions")
        if zeep_exceptions is None or not isinstance(exc, zeep_exceptions.Error):
            raise
        if isinstance(exc, zeep_exceptions.Fault):
            raise from_fault(exc, method) from None
        raise zeep_error(exc, method) from None


#: Why zeep refused a reply, for its errors that carry no message.
_ZEEP_REFUSALS = {
    "DTDForbidden": "the reply carries a document type declaration (DTD), refused",
    "EntitiesForbidden": "the reply declares XML entities, refused",
    "ExternalReferenceForbidden": "the reply refers to an external document, refused",
}


def zeep_error(exc: zeep_exceptions.Error, method: str | None = None) -> WMProxyClientError:
    """A zeep error other than a Fault as one sentence: ``ConnectionError`` for an HTTP status
    without a SOAP reply, ``InvalidResponse`` for a reply zeep could not read (invalid XML,
    a DTD, entities: zeep reports some as a TransportError of status 200)."""
    from zeep import exceptions as zeep_exceptions

    if isinstance(exc, zeep_exceptions.TransportError):
        if exc.status_code not in (200, 500) or exc.content is None:
            return WMProxyClientError("ConnectionError", f"HTTP {exc.status_code} from the service", None, method)
        reason = str(exc.message).split("\n", 1)[0].split("invalid XML: ", 1)[-1]
        return WMProxyClientError(
            "InvalidResponse", f"the service's reply (HTTP {exc.status_code}) is not valid XML: "
            f"{_printable(reason, 300)}", None, method)
    refusal = _ZEEP_REFUSALS.get(type(exc).__name__)
    if refusal is not None:
        return WMProxyClientError("InvalidResponse", refusal, None, method)
    return WMProxyClientError("InvalidResponse", _printable(str(exc), 300) or type(exc).__name__, None, method)


def _printable(text: str, limit: int) -> str:
    """``text`` on one line, its non-printable characters as ``?``, at most ``limit`` characters."""
    line = "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))
    return line if len(line) <= limit else line[:limit] + "..."


def redirect_error(where: str, status: int, location: str, method: str | None = None) -> WMProxyClientError:
    """A redirect answered by ``where``: never followed (it could lead a proxy or a sandbox to a
    plain-http or other peer), a ``ConnectionError`` naming where it pointed."""
    return WMProxyClientError(
        "ConnectionError",
        f"{where} answered HTTP {status} redirecting to {_printable(location, 200)}: redirects are not followed",
        None, method)


def reply_too_large(where: str, method: str | None = None) -> WMProxyClientError:
    """A reply over :data:`wmproxy.client.connection.MAX_REPLY` bytes (declared or received)."""
    from wmproxy.client.connection import MAX_REPLY

    return WMProxyClientError(
        "InvalidResponse", f"the reply of {where} is larger than {MAX_REPLY // (1024 * 1024)} MiB: not read", None,
        method)


def _where(exc: requests.exceptions.RequestException) -> str:
    """``host:port`` of the failed request, or "the service"."""
    url = getattr(exc.request, "url", None) if exc.request is not None else None
    if not url:
        return "the service"
    parts = urlsplit(str(url))
    return parts.netloc or "the service"


def connection_error(exc: requests.exceptions.RequestException, method: str | None = None) -> WMProxyClientError:
    """A requests failure as one sentence a person understands (:func:`transport_error`)."""
    import requests

    tls = isinstance(exc, requests.exceptions.SSLError)
    timeout = isinstance(exc, requests.exceptions.Timeout)
    return transport_error(_where(exc), _reason(exc), method, tls=tls, timeout=timeout,
                           closed_while_sending=closed_while_sending(exc))


def closed_while_sending(exc: BaseException) -> bool:
    """Whether ``exc`` comes of :class:`wmproxy.client.connection.ClosedWhileSending` (requests
    and urllib3 wrap it: ``args``, ``reason``, causes)."""
    from wmproxy.client.connection import ClosedWhileSending

    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        if isinstance(item, ClosedWhileSending):
            return True
        seen.add(id(item))
        pending.extend((*item.args, getattr(item, "reason", None), item.__cause__, item.__context__))
    return False


def transport_error(
    where: str, reason: str, method: str | None = None, *, tls: bool = False, timeout: bool = False,
    closed_while_sending: bool = False,
) -> WMProxyClientError:
    """A transport failure as one sentence a person understands (issue 12).

    ``ConnectionError`` for an endpoint that cannot be reached (refused, unknown host,
    timeout, closed connection: e.g. ``http://`` sent to an https-only port), ``TLSError``
    for a failed handshake (the service's certificate not trusted by ``X509_CERT_DIR`` or
    not matching the host, or the service refusing the user's proxy).

    Args:
        where: ``host:port``.
        reason: the one-line low-level reason (OpenSSL's, the socket's).
        method: the operation, for the error.
        tls: the TLS handshake failed.
        timeout: nothing came back in time.
        closed_while_sending: the service ended the connection after the handshake, while the
            request was being sent (:class:`wmproxy.client.connection.ClosedWhileSending`):
            ``ConnectionError``, not a TLS failure.
    """
    low = reason.lower()
    if closed_while_sending:
        return WMProxyClientError(
            "ConnectionError", f"{where} closed the connection while the request was being sent ({reason}): a "
            "service closes it so for a request larger than its [limits] max_request_bytes (16 MiB by default), "
            "or when it stops", None, method)
    if tls:
        if "certificate_verify_failed" in low or "certificate verify failed" in low:
            if "hostname mismatch" in low or "doesn't match" in low or "ip address mismatch" in low:
                text = f"the certificate of {where} does not match its host name ({reason})"
            else:
                text = (f"the certificate of {where} is not trusted by the CA directory (X509_CERT_DIR) or "
                        f"its CRL: {reason}")
        elif "alert" in low:
            text = f"{where} refused the TLS handshake with your proxy: {reason}"
        else:
            text = f"TLS handshake with {where} failed: {reason}"
        return WMProxyClientError("TLSError", text, None, method)
    if timeout:
        return WMProxyClientError("ConnectionError", f"no answer from {where} in time: {reason}", None, method)
    if "refused" in low:
        text = f"cannot connect to {where}: connection refused (no service listening there)"
    elif "name or service not known" in low or "failed to resolve" in low or "nodename nor servname" in low:
        text = f"cannot connect to {where}: unknown host name"
    elif "remotedisconnected" in low or "connection aborted" in low or "reset by peer" in low:
        text = (f"{where} closed the connection without an answer (is it an https:// WMProxy endpoint, "
                "and does it accept your proxy?)")
    else:
        text = f"cannot connect to {where}: {reason}"
    return WMProxyClientError("ConnectionError", text, None, method)


def _reason(exc: Exception) -> str:
    """A short one-line reason for a requests exception (urllib3 wraps the real one)."""
    arg = exc.args[0] if exc.args else None
    reason = getattr(arg, "reason", None)
    text = str(reason if reason is not None else (arg if arg is not None else exc))
    return " ".join(text.split()) or type(exc).__name__
