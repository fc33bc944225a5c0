"""The only place where domain exceptions become SOAP faults.

WMProxy port: SOAP 1.1 Fault, ``faultstring`` = description, ``<detail>`` holding one
``ns1:<Kind>Fault`` element of BaseFaultType (methodName, Timestamp, ErrorCode,
Description, FaultCause), the pre-2011 form that both gLite client APIs read
(``wmproxy-behaviour.md`` §1.5.1). The kind comes from :data:`FAULT_KINDS`, looked up
along the exception's MRO; a kind the operation does not declare in the WSDL becomes
GenericFault with the same ErrorCode, so strict clients always get a declared fault.

Delegation ports: ``<detail><DelegationException><msg|message>`` (§1.4).

Unexpected exceptions become GenericFault with an opaque error id; the traceback goes
to the log, never on the wire.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from lxml import etree
from spyne import Fault

from wmproxy import errors
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, WMPROXY

log = logging.getLogger(__name__)

FAULT_KINDS: dict[type[Exception], str] = {
    errors.AuthenticationError: "AuthenticationFault",
    errors.AuthorizationError: "AuthorizationFault",
    errors.ProxyError: "AuthorizationFault",
    errors.DelegationError: "AuthorizationFault",
    errors.JobNotFoundError: "JobUnknownFault",
    errors.OperationNotAllowedError: "OperationNotAllowedFault",
    errors.InvalidArgumentError: "InvalidArgumentFault",
    errors.JdlError: "InvalidArgumentFault",
    errors.ServerOverloadedError: "ServerOverloadedFault",
    errors.QuotaExceededError: "GetQuotaManagementFault",
    errors.WMProxyError: "GenericFault",
}


def fault_kind(exc: Exception) -> str:
    for cls in type(exc).__mro__:
        if cls in FAULT_KINDS:
            return FAULT_KINDS[cls]
    return "GenericFault"


def _timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wmproxy_fault(method: str, exc: Exception, declared: frozenset[str] | None = None) -> Fault:
    """The WMProxy-port Fault for ``exc`` raised by operation ``method``.

    Args:
        declared: fault element names the WSDL declares for ``method``; ``None`` = any.
    """
    if isinstance(exc, errors.WMProxyError):
        kind, code, message, causes = fault_kind(exc), exc.code, exc.message, exc.causes
    else:
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error %s in %s", error_id, method, exc_info=exc)
        kind, code = "GenericFault", 1201
        message = f"Internal server error (error id {error_id}); please contact the service administrator"
        causes = [message]
    if declared is not None and kind not in declared:
        kind = "GenericFault"
    log.info("%s %s (%s): %s", method or "request", kind, code, message)
    detail = etree.Element(f"{{{WMPROXY}}}{kind}", nsmap={"ns1": WMPROXY})
    for name, text in (("methodName", method), ("Timestamp", _timestamp()), ("ErrorCode", str(code)),
                       ("Description", message)):
        etree.SubElement(detail, name).text = text
    for cause in causes:
        etree.SubElement(detail, "FaultCause").text = cause
    # The reference always sends SOAP-ENV:Server; clients branch on the detail element.
    return Fault(faultcode="Server", faultstring=message, detail=detail)


def delegation_fault(namespace: str, method: str, exc: Exception) -> Fault:
    """The DelegationException Fault of the delegation-1 (``message``) or -2 (``msg``) port."""
    if isinstance(exc, errors.WMProxyError):
        message = exc.message
    else:
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error %s in delegation %s", error_id, method, exc_info=exc)
        message = f"Internal server error (error id {error_id})"
    log.info("%s DelegationException: %s", method or "request", message)
    field = "message" if namespace == DELEGATION_1 else "msg"
    if namespace not in (DELEGATION_1, DELEGATION_2):
        raise ValueError(f"not a delegation namespace: {namespace}")
    detail = etree.Element(f"{{{namespace}}}DelegationException", nsmap={"ns": namespace})
    etree.SubElement(detail, field).text = message
    return Fault(faultcode="Server", faultstring=message, detail=detail)
