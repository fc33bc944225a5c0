"""The only place where domain exceptions become SOAP faults.

WMProxy port: SOAP 1.1 Fault, ``faultstring`` = description, ``<detail>`` holding one
``ns1:<Kind>Fault`` element of BaseFaultType (methodName, Timestamp, ErrorCode,
Description, FaultCause), the pre-2011 form that both gLite client APIs read
(``wmproxy-behaviour.md`` §1.5.1). The kind comes from :data:`FAULT_KINDS`, looked up
along the exception's MRO; a kind the operation does not declare in the WSDL becomes
GenericFault with the same ErrorCode, so strict clients always get a declared fault.

Delegation ports: ``<detail><DelegationException><msg|message>`` (§1.4).

Messages may quote the client (a JDL value, a DN): a character XML cannot carry (U+0001...)
is written as a ``\\xNN`` escape (:func:`wmproxy.text.xml_text`), and the log line of a fault has
its control characters escaped (:func:`wmproxy.text.log_text`).

Unexpected exceptions become GenericFault with an opaque error id; the traceback goes
to the log, never on the wire. Errors Spyne raises itself while reading a request (a value
of the wrong type, a missing part) become InvalidArgumentError first (:func:`spyne_error`),
so every fault of the service, whoever found the problem, has this one format
(``wmproxy.soap.dispatch.fault_response`` writes them all).
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import uuid

from lxml import etree
from spyne import Fault
from sqlalchemy import exc as sa_exc

from wmproxy import errors
from wmproxy.soap.contract import operations_by_namespace
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, WMPROXY
from wmproxy.store.engine import database_reason
from wmproxy.text import log_text, xml_text

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


class TypedFault(Fault):
    """A Fault this module built: its ``detail`` is the typed element the WSDL declares."""


def fault_kind(exc: Exception) -> str:
    for cls in type(exc).__mro__:
        if cls in FAULT_KINDS:
            return FAULT_KINDS[cls]
    return "GenericFault"


def _timestamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: What a request answers while its database does not (PostgreSQL down or restarting, a lock
#: held past the busy/lock timeout, SQLite's file system full): ServerOverloadedFault 1228, as
#: while the application cannot be built (``wmproxy.soap.app.unavailable``).
DATABASE_UNAVAILABLE = "Service temporarily unavailable: its database did not answer; try again later"
#: SQLAlchemy's errors of a database that cannot serve now: connection lost or pool exhausted.
_DATABASE_DOWN = (sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError)
#: sqlite3's OperationalError also stands for a statement the schema refuses ("no such table"):
#: these messages are the ones of a database that cannot serve now.
_SQLITE_DOWN = ("database is locked", "database table is locked", "database or disk is full", "disk i/o error",
                "unable to open database file")


def _database_down(exc: Exception) -> bool:
    """Whether ``exc`` says the database cannot serve now (refused or lost connection, lock,
    busy or statement timeout, deadlock broken, file system full, pool exhausted), rather than a
    statement it refuses (a bug, a schema not migrated: those stay internal errors)."""
    if isinstance(exc, _DATABASE_DOWN):
        return True
    if not isinstance(exc, sa_exc.OperationalError):
        return False
    if isinstance(exc.orig, sqlite3.OperationalError):
        return str(exc.orig).lower().startswith(_SQLITE_DOWN)
    return True  # psycopg: connection, lock timeout, statement timeout, deadlock (ProgrammingError otherwise)


def _unavailable(method: str, exc: Exception) -> errors.ServerOverloadedError | None:
    """``exc`` as the ServerOverloadedError a client may retry when it says the database cannot
    serve now (:func:`_database_down`), logged as one WARNING line with the driver's reason (no
    traceback: SQLAlchemy's rendering holds the statement's parameters); None otherwise."""
    if not isinstance(exc, sa_exc.SQLAlchemyError) or not _database_down(exc):
        return None
    log.warning("%s: the database did not answer (%s): ServerOverloadedFault, the client may retry",
                log_text(method or "request"), log_text(database_reason(exc)))
    return errors.ServerOverloadedError(DATABASE_UNAVAILABLE)


def wmproxy_fault(method: str, exc: Exception, declared: frozenset[str] | None = None) -> TypedFault:
    """The WMProxy-port Fault for ``exc`` raised by operation ``method``: its typed fault for a
    :class:`~wmproxy.errors.WMProxyError`, ServerOverloadedFault 1228 while the database cannot
    serve (:data:`DATABASE_UNAVAILABLE`; GenericFault 1228 where ``method`` declares none), else
    GenericFault 1201 with an error id, logged with its traceback.

    Args:
        declared: fault element names the WSDL declares for ``method``; ``None`` = any.
    """
    exc = _unavailable(method, exc) or exc
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
    # The message may quote the client (a JDL value, a DN): what XML cannot carry is escaped.
    method, message, causes = xml_text(method), xml_text(message), [xml_text(cause) for cause in causes]
    log.info("%s %s (%s): %s", log_text(method or "request"), kind, code, log_text(message))
    detail = etree.Element(f"{{{WMPROXY}}}{kind}", nsmap={"ns1": WMPROXY})
    for name, text in (("methodName", method), ("Timestamp", _timestamp()), ("ErrorCode", str(code)),
                       ("Description", message)):
        etree.SubElement(detail, name).text = text
    for cause in causes:
        etree.SubElement(detail, "FaultCause").text = cause
    # The reference always sends the Server faultcode; clients branch on the detail element.
    return TypedFault(faultcode="Server", faultstring=message, detail=detail)


def delegation_fault(namespace: str, method: str, exc: Exception) -> TypedFault:
    """The DelegationException Fault of the delegation-1 (``message``) or -2 (``msg``) port
    (:data:`DATABASE_UNAVAILABLE` while the database cannot serve)."""
    exc = _unavailable(method, exc) or exc
    if isinstance(exc, errors.WMProxyError):
        message = exc.message
    else:
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error %s in delegation %s", error_id, method, exc_info=exc)
        message = f"Internal server error (error id {error_id})"
    message = xml_text(message)
    log.info("%s DelegationException: %s", log_text(method or "request"), log_text(message))
    field = "message" if namespace == DELEGATION_1 else "msg"
    if namespace not in (DELEGATION_1, DELEGATION_2):
        raise ValueError(f"not a delegation namespace: {namespace}")
    detail = etree.Element(f"{{{namespace}}}DelegationException", nsmap={"ns": namespace})
    etree.SubElement(detail, field).text = message
    return TypedFault(faultcode="Server", faultstring=message, detail=detail)


def port_fault(namespace: str, method: str, exc: Exception) -> TypedFault:
    """The fault of ``method`` on the port of ``namespace`` for ``exc``: a DelegationException
    on the delegation ports, else the WMProxy fault the operation declares (GenericFault when it
    declares none that fits; any kind for a name the WSDL does not know)."""
    if namespace in (DELEGATION_1, DELEGATION_2):
        return delegation_fault(namespace, method, exc)
    return wmproxy_fault(method, exc, operations_by_namespace().get(WMPROXY, {}).get(method))


#: Characters of a Spyne fault string (which may quote the client's value) kept in a fault.
QUOTED_CHARS = 200


def spyne_error(error: BaseException) -> Exception:
    """The domain error for an error Spyne raised itself while reading a request: its
    ``Client.*`` faults (a value that is not of the part's type, ``abc`` or ``1e99`` for an
    int; a part missing or repeated) become InvalidArgumentError "Invalid Argument: ...";
    anything else is returned unchanged, to become an internal error with an error id."""
    if isinstance(error, Fault) and str(error.faultcode).startswith("Client"):
        text = " ".join(str(error.faultstring or "").split())[:QUOTED_CHARS] or "bad request"
        return errors.InvalidArgumentError(f"Invalid Argument: {text}")
    return error if isinstance(error, Exception) else RuntimeError(repr(error))
