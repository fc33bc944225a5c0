"""One endpoint, three ports: pick the port by the namespace of the SOAP Body's first child.

``wmproxy-behaviour.md`` §1.1: dispatch on (namespace, local name) of the operation
element, any prefix, SOAPAction ignored. Each port is its own Spyne application (Spyne
keys methods by one target namespace per application).

A request goes through, in order: authentication and the caller's admission
(:func:`wmproxy.services.authz.check_admitted`, before the body is read: a caller the site
refuses must not hold a request thread at its pace, ``docs/load.md``),
:func:`wmproxy.soap.request.read_body` and :func:`~wmproxy.soap.request.check_request` (size,
DTD, processing instructions, depth, element and attribute counts, encoding: before Spyne sees
a byte), the operation lookup, the refusal of a caller not authenticated or not admitted (the
fault of the operation), :func:`wmproxy.services.authz.check_operation` and the load limiter
(:func:`wmproxy.services.load.check_load`), then the Spyne port. Every
refusal on the way, every fault a method raises and every error Spyne raises itself (a value
of the wrong type, a missing part, an internal error) is written by :func:`fault_response`
in one format: a SOAP 1.1 Fault with the typed detail the operation declares
(``wmproxy.soap.faults``). No request gets an HTML page or a traceback.
"""

from __future__ import annotations

import io
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from inspect import isgenerator
from typing import Any

from lxml import etree
from spyne import Application, Fault
from spyne import const as spyne_const
from spyne.application import get_fault_string_from_exception
from spyne.const.http import HTTP_200
from spyne.evmgr import EventManager
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication, WsgiMethodContext, _gen_http_headers

from wmproxy.config import LimitsSettings
from wmproxy.domain import Principal
from wmproxy.errors import AuthenticationError, InvalidArgumentError
from wmproxy.monitoring import access
from wmproxy.services.authz import check_admitted, check_operation
from wmproxy.services.load import check_load
from wmproxy.soap import direct, direct_delegation
from wmproxy.soap.calls import PRINCIPAL_KEY, RUNTIME_KEY
from wmproxy.soap.delegation_ports import Delegation1Port, Delegation2Port
from wmproxy.soap.faults import TypedFault, port_fault, spyne_error
from wmproxy.soap.inspection_port import InspectionPort
from wmproxy.soap.jobs_port import JobsPort
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, INSPECTION, JOBS_1, SOAP_ENV, WMPROXY
from wmproxy.soap.request import (
    MalformedRequestError,
    check_media_type,
    check_request,
    operation_of,
    read_body,
    read_prefix,
)
from wmproxy.soap.tls_worker import close_connection, read_deadline
from wmproxy.soap.wmproxy_port import WMProxyPort

log = logging.getLogger(__name__)

# Spyne logs a traceback for every Fault a method raises and for every request it cannot
# read (spyne.server._base); our faults are expected answers, logged in one line by
# wmproxy.soap.faults, and an unexpected error is logged there with its traceback and error
# id. Spyne's own CRITICAL messages are still logged.
logging.getLogger("spyne.application").setLevel(logging.CRITICAL)
logging.getLogger("spyne.server").setLevel(logging.CRITICAL)

#: Namespaces whose operations name no job: the access line's job is not searched for.
_NO_JOB_NAMESPACES = frozenset({DELEGATION_1, DELEGATION_2})

#: What Spyne may receive, as a multiple of ``[limits] max_request_bytes`` (it is handed the
#: checked request itself, at most ``max_request_bytes``; the factor is a margin).
SPYNE_SIZE_FACTOR = 8

#: Seconds the body of a caller refused before it is read (not authenticated, not admitted) may
#: take to arrive, at most :data:`~wmproxy.soap.request.PREFIX_BYTES` of it: a whole small request
#: gets the fault of its operation as before; what has not come by then is not waited for.
REFUSED_READ_SECONDS = 2.0
#: Request threads of a process that may read a refused caller's body at once: the others answer
#: such a caller from no body at all (its fault of the WMProxy port) and close its connection. A
#: peer the site does not admit reconnecting at once after each 2 s could otherwise keep every
#: thread reading (review: 8 connections a second held 16 threads; alice timed out).
REFUSED_READERS = 1
_refused_readers = threading.BoundedSemaphore(REFUSED_READERS)

def read_refused_prefix(environ: dict[str, Any], max_bytes: int) -> tuple[bytes, bool]:
    """What a refused request's body gives within :data:`REFUSED_READ_SECONDS` and
    :data:`~wmproxy.soap.request.PREFIX_BYTES`, read by at most :data:`REFUSED_READERS` threads
    of the process at once (the others read nothing): the bytes read, and whether they are the
    whole body (``max_bytes``: the largest body the service takes).

    Raises:
        MalformedRequestError: an unusable ``Content-Length`` (nothing read).
    """
    if not _refused_readers.acquire(blocking=False):  # another thread reads a refused body
        return b"", False
    try:
        with read_deadline(environ, REFUSED_READ_SECONDS):
            return read_prefix(environ, max_bytes)
    finally:
        _refused_readers.release()


#: environ key of the request's envelope as parsed and checked by
#: :func:`wmproxy.soap.request.check_request`: the port's protocol takes it from there.
CHECKED_ENVELOPE_KEY = "wmproxy.envelope"
#: The elements with an ``id`` attribute, what ``lxml.etree.XMLID`` returns next to the root
#: (Spyne resolves SOAP-encoding ``href`` references with it).
_FIND_IDS = etree.XPath("//*[string(@id)]")


class _CheckedSoap11(Soap11):
    """SOAP 1.1 whose incoming document is the envelope the dispatcher already parsed and
    checked (``environ[CHECKED_ENVELOPE_KEY]``): the request is parsed once, not twice."""

    def create_in_document(self, ctx: Any, charset: str | None = None) -> None:
        environ = getattr(ctx.transport, "req_env", None) or {}
        root = environ.get(CHECKED_ENVELOPE_KEY)
        if root is None:
            super().create_in_document(ctx, charset)
            return
        ctx.in_document = (root, {element.get("id"): element for element in _FIND_IDS(root)})

Authenticate = Callable[[dict[str, Any]], Principal]


class _EventManager(EventManager):
    """Spyne's EventManager without the empty ordered set it builds for every event that has
    no listener (each request fires about 17 events, twice each; this service listens to none)."""

    def fire_event(self, event_name: Any, ctx: Any, *args: Any, **kwargs: Any) -> None:
        handlers = self.handlers.get(event_name)
        if handlers:
            for handler in handlers:
                handler(ctx, *args, **kwargs)


def _quiet(manager: EventManager) -> None:
    """Give ``manager`` the cheaper :meth:`_EventManager.fire_event` (same listeners, same order)."""
    if type(manager) is EventManager:
        manager.__class__ = _EventManager


#: The events of Spyne's WSGI server that the lean loop (:meth:`_Port.serve`) does not fire.
_WSGI_EVENTS = ("wsgi_call", "wsgi_return", "wsgi_close", "wsgi_exception")


class _Port(WsgiApplication):
    """A Spyne WSGI port whose errors are written by :func:`fault_response` like all others."""

    def __init__(self, service: type, namespace: str, max_bytes: int) -> None:
        app = Application(
            [service],
            tns=namespace,
            name=service.__name__,
            in_protocol=_CheckedSoap11(validator="soft", huge_tree=True),  # the limits were applied before
            out_protocol=Soap11(),
        )
        super().__init__(app, max_content_length=max_bytes)
        self.namespace = namespace
        for manager in (app.event_manager, self.event_manager, *(
                m for d in app.interface.service_method_map.values() for x in d for m in x.event_managers)):
            _quiet(manager)
        # Spyne runs a full gc.collect() at the end of a request when the last one is more than
        # MIN_GC_INTERVAL seconds old (for its file attachments, which this service has none of):
        # a 50-220 ms pause about once a second per worker. Python's own generational GC stays.
        spyne_const.MIN_GC_INTERVAL = math.inf
        #: Whether :meth:`serve` may take the lean loop: nothing listens to the WSGI events it
        #: does not fire, and no method sends MTOM attachments.
        self.lean = not any(self.event_manager.handlers.get(name) for name in _WSGI_EVENTS) and not any(
            descriptor.mtom for group in app.interface.service_method_map.values() for descriptor in group)

    def serve(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """The lean request loop: Spyne's ``handle_rpc`` without its WSGI edge.

        The same Spyne objects in the same order (method context, the checked envelope as the
        in-document, decompose, deserialise, call, serialise with this port's protocols), without
        what the dispatcher has done already or what this service never uses: the URL
        reconstruction and WSDL test, the re-read of ``wsgi.input`` and the HTTP charset,
        chunking and the lazily chained body. Errors go to :meth:`handle_error`, as on the full
        path, so faults are byte for byte the same. A port whose methods use anything this loop
        does not handle (MTOM, auxiliary methods, a generator) is served by
        :class:`WsgiApplication` itself (``self.lean`` is False, or per request below).

        Returns:
            the body in one chunk, after ``start_response`` (status, Spyne's headers with
            ``Content-Length``).
        """
        if not self.lean:
            return list(WsgiApplication.__call__(self, environ, start_response))
        p_ctx = WsgiMethodContext(self, environ, self.app.out_protocol.mime_type)
        contexts = self.generate_contexts(p_ctx, None)
        p_ctx, others = contexts[0], contexts[1:]
        if others:  # auxiliary contexts: never made by this service's ports
            raise RuntimeError("auxiliary method contexts are not served")
        p_ctx.active = True
        if p_ctx.in_error:
            return self.handle_error(p_ctx, others, p_ctx.in_error, start_response)
        self.get_in_object(p_ctx)
        if p_ctx.in_error:
            return self.handle_error(p_ctx, others, p_ctx.in_error, start_response)
        self.get_out_object(p_ctx)
        if p_ctx.out_error:
            return self.handle_error(p_ctx, others, p_ctx.out_error, start_response)
        out = p_ctx.out_object
        if not out or (len(out) == 1 and isgenerator(next(iter(out)))):
            raise RuntimeError("a generator or no result from a Spyne method")
        if p_ctx.transport.resp_code is None:
            p_ctx.transport.resp_code = HTTP_200
        try:
            self.get_out_string(p_ctx)
        except Exception as exc:  # noqa: BLE001 - as Spyne: a serialisation error is a Server fault
            p_ctx.out_error = Fault("Server", get_fault_string_from_exception(exc))
            return self.handle_error(p_ctx, others, p_ctx.out_error, start_response)
        body = b"".join(p_ctx.out_string)
        headers = p_ctx.transport.resp_headers
        headers["Content-Length"] = str(len(body))
        start_response(p_ctx.transport.resp_code, _gen_http_headers(headers))
        p_ctx.close()
        return [body]

    def handle_error(self, p_ctx: Any, others: Any, error: Any, start_response: Callable[..., Any]) -> list[bytes]:
        if isinstance(error, TypedFault):
            fault = error
        else:
            method = (getattr(p_ctx, "method_request_string", None) or "").rpartition("}")[2]
            fault = port_fault(self.namespace, method, spyne_error(error))
        p_ctx.close()
        return fault_response(start_response, fault)


class SoapDispatcher:
    """WSGI app for POSTs to the endpoint.

    Args:
        limits: what a request may hold (default: the built-in ``[limits]``).
        authenticate: turns the environ into the caller's Principal; without it, the
            Principal must already be in ``environ[PRINCIPAL_KEY]``. ``environ[RUNTIME_KEY]``
            must hold the Runtime.
    """

    def __init__(self, limits: LimitsSettings | None = None, authenticate: Authenticate | None = None) -> None:
        self.limits = limits or LimitsSettings()
        self.authenticate = authenticate
        spyne_bytes = SPYNE_SIZE_FACTOR * self.limits.max_request_bytes
        self.ports: dict[str, WsgiApplication] = {
            WMPROXY: _Port(WMProxyPort, WMPROXY, spyne_bytes),
            DELEGATION_1: _Port(Delegation1Port, DELEGATION_1, spyne_bytes),
            DELEGATION_2: _Port(Delegation2Port, DELEGATION_2, spyne_bytes),
            JOBS_1: _Port(JobsPort, JOBS_1, spyne_bytes),
            INSPECTION: _Port(InspectionPort, INSPECTION, spyne_bytes),
        }
        #: Serve through :meth:`_Port.serve` and :data:`CONSTANT_REPLIES` (False: every request
        #: through Spyne's ``WsgiApplication``, the reference the lean loop is tested against).
        self.lean = True
        #: (namespace, operation) of :data:`CONSTANT_REPLIES` -> (runtime, status, headers, body, the
        #: job id the body names for the access line: :func:`response_job_id`)
        self._memo: dict[tuple[str, str], tuple[Any, str, tuple[tuple[str, str], ...], bytes, str | None]] = {}
        self.operations = {
            ns: {key.partition("}")[2] for key in port.app.interface.service_method_map}
            for ns, port in self.ports.items()
        }
        #: Operations served without Spyne's per-call machinery when the request has the plain
        #: shape (``wmproxy.soap.direct``), with ``lean`` only, while their port may take its lean loop.
        wmproxy_port = self.ports[WMPROXY]
        self.direct: dict[tuple[str, str], direct.Handler] = {
            (WMPROXY, operation): handler for operation, handler in direct.handlers(wmproxy_port.app).items()
        } if getattr(wmproxy_port, "lean", False) else {}
        self.direct.update(direct_delegation.handlers(self.ports))  # getProxyReq, putProxy

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Serve one request and write its ``wmproxy.access`` line (:mod:`wmproxy.monitoring.access`)."""
        started = time.monotonic()
        seen: dict[str, Any] = {}
        body = self._dispatch(environ, access.observing(start_response, seen), seen)
        self._log(seen, body, time.monotonic() - started)
        return body

    def _log(self, seen: dict[str, Any], body: list[bytes], duration: float) -> None:
        operation = seen.get("operation", "")
        if operation not in self.operations.get(seen.get("namespace", ""), ()):
            operation = "unknown"  # bounded: a metric label, and nothing a client chose
        payload = body[0] if len(body) == 1 else b""
        ok = str(seen.get("status", "")).startswith("2")
        outcome = "ok" if ok else fault_type(payload)
        # the delegation ports' answers have no id element (issue 14: the search of a CSR was
        # about 16,000 instructions of each getProxyReq)
        searched = ok and seen.get("namespace") not in _NO_JOB_NAMESPACES
        job = seen.get("job")
        if not job and searched:
            # a kept constant answer was searched once, when it was kept (issue 14)
            job = seen["answer_job"] if "answer_job" in seen else response_job_id(payload)
        access.record(operation, seen.get("dn"), job, outcome, duration)

    def _dispatch(self, environ: dict[str, Any], start_response: Callable[..., Any],
                  seen: dict[str, Any]) -> list[bytes]:
        # The caller is authenticated and admitted before its body is read: a caller the site
        # refuses outright must not hold a request thread at its pace (docs/load.md).
        refusal: Exception | None = None
        try:
            principal = self._principal(environ)
            seen["dn"] = principal.dn
            runtime = environ[RUNTIME_KEY]
            check_admitted(runtime.settings, principal)
        except Exception as exc:  # noqa: BLE001 - the refusal, answered once the operation is known
            refusal = exc
        try:
            if refusal is None:
                body = read_body(environ, self.limits.max_request_bytes)
            else:
                body, whole = read_refused_prefix(environ, self.limits.max_request_bytes)
                if not whole:
                    return self._refuse_unread(environ, start_response, seen, body, refusal)
            request = check_request(body, self.limits)
            check_media_type(environ.get("CONTENT_TYPE"), request)
        except MalformedRequestError as exc:
            seen.update(namespace=exc.namespace, operation=exc.operation)
            return fault_response(start_response, port_fault(exc.namespace, exc.operation, exc))
        namespace, operation = request.namespace, request.operation
        # the delegation ports name no job (issue 14: the search was a fiftieth of a delegation)
        seen.update(namespace=namespace, operation=operation,
                    job=None if namespace in _NO_JOB_NAMESPACES else request.job_id())
        if namespace not in self.ports or operation not in self.operations[namespace]:
            return self._refuse(start_response, namespace, operation,
                                InvalidArgumentError(f"Unknown operation {{{namespace}}}{operation}"[:300]))
        if refusal is not None:
            return self._refuse(start_response, namespace, operation, refusal)
        try:
            check_operation(runtime.settings, principal, operation)
            check_load(runtime, principal, operation)
        except Exception as exc:  # noqa: BLE001 - a refusal (WMProxyError) is its typed fault; anything else,
            # such as a store error in the load check (a locked or restarting database), an
            # internal-error fault with an error id, logged with its traceback (as in _serve)
            return self._refuse(start_response, namespace, operation, exc)
        environ[PRINCIPAL_KEY] = principal
        environ[CHECKED_ENVELOPE_KEY] = request.root
        constant = self.lean and (namespace, operation) in CONSTANT_REPLIES and _bare(request.root)
        kept = self._memo.get((namespace, operation)) if constant else None
        if kept is not None and kept[0] is runtime:
            seen["answer_job"] = kept[4]
            start_response(kept[1], list(kept[2]))
            return [kept[3]]
        handler = self.direct.get((namespace, operation)) if self.lean else None
        if handler is not None:
            try:
                answer = handler(request.root, runtime, principal)
            except Exception as exc:  # noqa: BLE001 - a handler maps its errors itself; whatever escapes
                # (a bug) is still a typed fault with an error id, never the server's HTML 500
                return self._refuse(start_response, namespace, operation, exc)
            if isinstance(answer, bytes):
                start_response(direct.STATUS, [("Content-Type", direct.CONTENT_TYPE),
                                               ("Content-Length", str(len(answer)))])
                return [answer]
            if answer is not None:
                return fault_response(start_response, answer)
        environ["wsgi.input"] = io.BytesIO(request.body)
        environ["CONTENT_LENGTH"] = str(len(request.body))
        environ["CONTENT_TYPE"] = "text/xml; charset=utf-8"
        environ["REQUEST_METHOD"] = "POST"
        environ["QUERY_STRING"] = ""
        if constant:
            return self._constant(namespace, operation, runtime, environ, start_response)
        return self._serve(namespace, operation, environ, start_response)

    def _refuse_unread(self, environ: dict[str, Any], start_response: Callable[..., Any], seen: dict[str, Any],
                       prefix: bytes, refusal: Exception) -> list[bytes]:
        """The refusal of a caller whose request body did not come whole within
        :data:`REFUSED_READ_SECONDS` and :data:`~wmproxy.soap.request.PREFIX_BYTES`: the fault of the
        operation its first bytes name (of the WMProxy port when they name none), and the
        connection closed without reading the rest."""
        namespace, operation = operation_of(prefix, self.limits)
        if namespace not in self.ports:
            namespace = WMPROXY
        seen.update(namespace=namespace, operation=operation)
        close_connection(environ)
        return self._refuse(start_response, namespace, operation, refusal)

    def _principal(self, environ: dict[str, Any]) -> Principal:
        if self.authenticate is not None:
            return self.authenticate(environ)
        principal = environ.get(PRINCIPAL_KEY)
        if not isinstance(principal, Principal):
            raise AuthenticationError("Unable to get a valid user DN: no TLS client certificate")
        return principal

    def _constant(self, namespace: str, operation: str, runtime: Any, environ: dict[str, Any],
                  start_response: Callable[..., Any]) -> list[bytes]:
        """An operation of :data:`CONSTANT_REPLIES` not answered yet for this runtime: served, and
        its answer kept when it is a success (:meth:`_dispatch` sends it again, once the caller
        is authenticated, authorised and load-checked)."""
        seen: dict[str, Any] = {}
        body = self._serve(namespace, operation, environ, access.observing(start_response, seen))
        if str(seen.get("status", "")).startswith("200") and len(body) == 1:
            self._memo[(namespace, operation)] = (runtime, seen["status"], tuple(seen["headers"]), body[0],
                                                  response_job_id(body[0]))
        return body

    def _serve(self, namespace: str, operation: str, environ: dict[str, Any],
               start_response: Callable[..., Any]) -> list[bytes]:
        """Run the Spyne port to completion (its body may be produced lazily), so that an
        error anywhere still becomes a typed fault before anything is sent: the lean loop
        (:meth:`_Port.serve`), or with ``lean`` False Spyne's own ``WsgiApplication``."""
        seen: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            seen["status"], seen["headers"] = status, headers
            return _no_write

        port = self.ports[namespace]
        try:
            if self.lean:
                chunks = port.serve(environ, capture)
            else:
                chunks = [bytes(chunk) for chunk in WsgiApplication.__call__(port, environ, capture)]
        except Exception as exc:  # noqa: BLE001 - whatever broke, the client gets a typed fault
            return self._refuse(start_response, namespace, operation, exc)
        if "status" not in seen:
            return self._refuse(start_response, namespace, operation, RuntimeError("the port sent no status"))
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        headers = [(k, v) for k, v in seen["headers"] if k.lower() != "content-length"]
        start_response(seen["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    @staticmethod
    def _refuse(start_response: Callable[..., Any], namespace: str, operation: str, exc: Exception) -> list[bytes]:
        return fault_response(start_response, port_fault(namespace, operation, exc))


#: Operations whose answer depends on nothing but the service's settings (not on the caller,
#: the time, the store or any part): once one has been answered for a runtime, a request
#: naming it with an empty operation element gets the same bytes again, without Spyne.
CONSTANT_REPLIES = frozenset({
    (WMPROXY, "getVersion"), (WMPROXY, "getMaxInputSandboxSize"), (WMPROXY, "getTransferProtocols"),
    (DELEGATION_1, "getVersion"), (DELEGATION_2, "getVersion"),
    (DELEGATION_1, "getInterfaceVersion"), (DELEGATION_2, "getInterfaceVersion"),
})


def _bare(root: etree._Element) -> bool:
    """True for ``<Envelope><Body><op/></Body></Envelope>``: no Header, no attribute on the
    Body or the operation, an operation element without children or text."""
    if len(root) != 1 or root.attrib:
        return False
    body = root[0]
    if len(body) != 1 or body.attrib or (body.text or "").strip() or (body[0].tail or "").strip():
        return False
    operation = body[0]
    return not len(operation) and not operation.attrib and not (operation.text or "").strip()


#: The ``id`` of a JobIdStructType in an answer (jobRegister, jobSubmit): what the access log
#: names as the job the request created.
_RESPONSE_JOB_ID = re.compile(rb"<(?:[\w.-]+:)?id(?:\s[^>]*)?>\s*(https?://[^<\s]{1,512})")
#: The detail element of a fault: its local name is the fault type.
_FAULT_TYPE = re.compile(rb"<detail>\s*<(?:[\w.-]+:)?([A-Za-z]{1,64})[\s>/]")


#: Bytes of an answer searched for the job id (a JobIdStructType starts with its ``id``) or
#: the fault type; the bound keeps the search cheap whatever the answer holds.
JOB_ID_SEARCH_BYTES = 16 * 1024


def response_job_id(body: bytes) -> str | None:
    """The job id an answer created (the first ``id`` element holding a URL), or None."""
    match = _RESPONSE_JOB_ID.search(body, 0, JOB_ID_SEARCH_BYTES)
    return match.group(1).decode("utf-8", "replace") if match else None


def fault_type(body: bytes) -> str:
    """The type of the fault in ``body`` (``JobUnknownFault``, ``DelegationException``...),
    ``Fault`` when it names none."""
    match = _FAULT_TYPE.search(body, 0, JOB_ID_SEARCH_BYTES)
    return match.group(1).decode("ascii") if match else "Fault"


def _no_write(data: bytes) -> None:
    raise RuntimeError("the port used the WSGI write() callable")


#: Prefix of the SOAP envelope namespace in every reply, faults and successes alike (Spyne writes
#: the successes with it). Not ``SOAP-ENV``: gSOAP clients match a literal ``SOAP-ENV:Server``
#: faultcode and then report SOAP_SVR_FAULT instead of SOAP_FAULT, which the strict gSOAP probe
#: of the tests (tests/gsoap/wmpclient.cpp) does not read as a fault; the faultcode's value,
#: the envelope namespace's Server code, is the reference's either way.
ENVELOPE_PREFIX = "soap11env"


def fault_response(start_response: Callable[..., Any], fault: Any) -> list[bytes]:
    """Serialise a Spyne ``Fault`` (faultcode, faultstring, lxml detail) as a SOAP 1.1 Fault, HTTP 500:
    ``faultcode``, ``faultstring``, ``detail`` (no ``faultactor``), the one fault format of the service."""
    envelope = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={ENVELOPE_PREFIX: SOAP_ENV})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV}}}Body")
    element = etree.SubElement(body, f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(element, "faultcode").text = f"{ENVELOPE_PREFIX}:{fault.faultcode}"
    etree.SubElement(element, "faultstring").text = fault.faultstring
    detail = etree.SubElement(element, "detail")
    detail.append(fault.detail)
    payload = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    start_response(
        "500 Internal Server Error",
        [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(payload)))],
    )
    return [payload]
