"""One endpoint, three ports: pick the port by the namespace of the SOAP Body's first child.

``wmproxy-behaviour.md`` §1.1: dispatch on (namespace, local name) of the operation
element, any prefix, SOAPAction ignored. Each port is its own Spyne application (Spyne
keys methods by one target namespace per application). Requests that are not SOAP, or
name an unknown namespace or operation, get a typed fault here without reaching Spyne.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from typing import Any

from lxml import etree
from spyne import Application
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

from wmproxy.errors import InvalidArgumentError, WMProxyError
from wmproxy.services.authz import check_caller
from wmproxy.soap.calls import PRINCIPAL_KEY, RUNTIME_KEY
from wmproxy.soap.contract import operations_by_namespace
from wmproxy.soap.delegation_ports import Delegation1Port, Delegation2Port
from wmproxy.soap.faults import delegation_fault, wmproxy_fault
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, SOAP_ENV, WMPROXY
from wmproxy.soap.wmproxy_port import WMProxyPort

log = logging.getLogger(__name__)

# Spyne logs a traceback for every Fault a method raises; our faults are expected
# answers, logged in one line by wmproxy.soap.faults. Spyne's own internal errors are
# still logged (CRITICAL, on spyne.application.server).
logging.getLogger("spyne.application").setLevel(logging.CRITICAL)

#: Largest SOAP request accepted, bytes (JDLs of big collections stay far below).
MAX_REQUEST_BYTES = 16 * 1024 * 1024

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True)


def _port(service: type, namespace: str) -> WsgiApplication:
    app = Application(
        [service],
        tns=namespace,
        name=service.__name__,
        in_protocol=Soap11(validator="soft"),
        out_protocol=Soap11(),
    )
    return WsgiApplication(app)


class SoapDispatcher:
    """WSGI app for POSTs to the endpoint; ``environ`` must already carry principal and runtime."""

    def __init__(self) -> None:
        self.ports: dict[str, WsgiApplication] = {
            WMPROXY: _port(WMProxyPort, WMPROXY),
            DELEGATION_1: _port(Delegation1Port, DELEGATION_1),
            DELEGATION_2: _port(Delegation2Port, DELEGATION_2),
        }
        self.operations = {
            ns: {key.partition("}")[2] for key in port.app.interface.service_method_map}
            for ns, port in self.ports.items()
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            body = _read_body(environ)
            namespace, operation = _operation_of(body)
        except WMProxyError as exc:
            return fault_response(start_response, wmproxy_fault("", exc))
        if namespace not in self.ports or operation not in self.operations[namespace]:
            return self._refuse(start_response, namespace, operation,
                                InvalidArgumentError(f"Unknown operation {{{namespace}}}{operation}"))
        try:
            check_caller(environ[RUNTIME_KEY].settings, environ[PRINCIPAL_KEY], operation)
        except WMProxyError as exc:
            return self._refuse(start_response, namespace, operation, exc)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["REQUEST_METHOD"] = "POST"
        environ["QUERY_STRING"] = ""
        return self.ports[namespace](environ, start_response)


    @staticmethod
    def _refuse(start_response: Callable[..., Any], namespace: str, operation: str, exc: WMProxyError) -> list[bytes]:
        if namespace in (DELEGATION_1, DELEGATION_2):
            return fault_response(start_response, delegation_fault(namespace, operation, exc))
        declared = operations_by_namespace().get(WMPROXY, {}).get(operation)
        return fault_response(start_response, wmproxy_fault(operation, exc, declared))


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_REQUEST_BYTES:
        raise InvalidArgumentError(f"SOAP request larger than {MAX_REQUEST_BYTES} bytes")
    stream = environ["wsgi.input"]
    body = stream.read(length) if length else stream.read(MAX_REQUEST_BYTES + 1)
    if len(body) > MAX_REQUEST_BYTES:
        raise InvalidArgumentError(f"SOAP request larger than {MAX_REQUEST_BYTES} bytes")
    return body


def _operation_of(body: bytes) -> tuple[str, str]:
    """(namespace, local name) of the first element in the SOAP 1.1 Body."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise InvalidArgumentError(f"Malformed SOAP request: {exc}") from None
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise InvalidArgumentError("Malformed SOAP request: not a SOAP 1.1 Envelope")
    soap_body = root.find(f"{{{SOAP_ENV}}}Body")
    if soap_body is None or len(soap_body) == 0:
        raise InvalidArgumentError("Malformed SOAP request: empty Body")
    qname = etree.QName(soap_body[0])
    return qname.namespace or "", qname.localname


def fault_response(start_response: Callable[..., Any], fault: Any) -> list[bytes]:
    """Serialise a Spyne ``Fault`` (faultcode, faultstring, lxml detail) as a SOAP 1.1 Fault, HTTP 500."""
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"SOAP-ENV": SOAP_ENV})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    element = etree.SubElement(body, f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(element, "faultcode").text = f"SOAP-ENV:{fault.faultcode}"
    etree.SubElement(element, "faultstring").text = fault.faultstring
    detail = etree.SubElement(element, "detail")
    detail.append(fault.detail)
    payload = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    start_response(
        "500 Internal Server Error",
        [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(payload)))],
    )
    return [payload]
