"""A light SOAP path for the calls every CLI start makes (getVersion, getJobStatus): the
rpc/literal request of ``wsdl/wmproxy.wsdl`` written directly and the reply read with lxml,
so that ``wmproxy status`` needs neither zeep's import nor a parse of the WSDL (issue 14).

The request is what zeep sends for these operations (wrapper element in the port namespace,
unqualified parts); the reply's part becomes the plain values :mod:`.models` converts
(text, or a dict of child names, repeated children as lists). Faults are read as zeep's
are read (:func:`wmproxy.client.faults.fault_error`). Only operations whose parts are
strings (or lists of strings) use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lxml import etree

from wmproxy.client.faults import WMProxyClientError, fault_error, translated_errors

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=True)


def _escape(text: str) -> str:
    """XML character data (``xml.sax.saxutils.escape`` imports urllib.request: slow)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


#: A part: a string, or a sequence of ``(child name, string)`` (a list type such as
#: ``EventKindList``: one unqualified child element each).
PartValue = str | Sequence[tuple[str, str]]


def _element(name: str, value: PartValue) -> str:
    if isinstance(value, str):
        return f"<{name}>{_escape(value)}</{name}>"
    return f"<{name}>" + "".join(_element(child, text) for child, text in value) + f"</{name}>"


def request_body(namespace: str, operation: str, parts: Sequence[tuple[str, PartValue]]) -> bytes:
    """The SOAP 1.1 envelope of an rpc/literal call with ``parts`` ``[(name, value)]``."""
    inner = "".join(_element(name, value) for name, value in parts)
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<soap-env:Envelope xmlns:soap-env="{SOAP_ENV}"><soap-env:Body>'
        f'<ns0:{operation} xmlns:ns0="{namespace}">{inner}</ns0:{operation}></soap-env:Body></soap-env:Envelope>'
    ).encode()


def _value(element: etree._Element) -> Any:
    """Text of a leaf; else ``{child name: value}`` with repeated children as lists."""
    children = [c for c in element if isinstance(c.tag, str)]
    if not children:
        return element.text or ""
    out: dict[str, Any] = {}
    for child in children:
        name = etree.QName(child).localname
        value = _value(child)
        if name in out:
            previous = out[name]
            out[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[name] = value
    return out


#: ``post(body, headers) -> (HTTP status, reply body)``
Post = Callable[[bytes, dict[str, str]], tuple[int, bytes]]


def call(post: Post, namespace: str, operation: str, parts: Sequence[tuple[str, PartValue]]) -> Any:
    """POST one call and return its single result part (see :func:`_value`), None when empty.

    Args:
        post: sends the request (:func:`wmproxy.client.direct.post`, or a requests session's).
        namespace: the port namespace.
        operation: the WSDL operation.
        parts: ``[(part name, value)]`` in WSDL order (see :data:`PartValue`); an optional
            part left out is omitted.

    Raises:
        WMProxyClientError: the SOAP fault, a transport/TLS failure (``ConnectionError``,
            ``TLSError``) or a reply that is not a SOAP envelope (``InvalidResponse``).
    """
    with translated_errors(operation):
        status, content = post(request_body(namespace, operation, parts),
                               {"SOAPAction": '""', "Content-Type": "text/xml; charset=utf-8"})
        if status not in (200, 500) or not content:
            raise WMProxyClientError("ConnectionError", f"HTTP {status} from the service", None, operation)
        root = etree.fromstring(content, _PARSER)
        body = root.find(f"{{{SOAP_ENV}}}Body")
        first = next((c for c in body if isinstance(c.tag, str)), None) if body is not None else None
        if first is None:
            raise WMProxyClientError("InvalidResponse", "no SOAP Body in the reply", None, operation)
        if first.tag == f"{{{SOAP_ENV}}}Fault":
            faultstring = first.findtext("faultstring")
            detail = first.find("detail")
            raise fault_error(faultstring, detail, operation)
        if status != 200:
            raise WMProxyClientError("ConnectionError", f"HTTP {status} from the service", None, operation)
        part = next((c for c in first if isinstance(c.tag, str)), None)
        return None if part is None else _value(part)
