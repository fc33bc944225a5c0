"""The WSGI application gunicorn serves: SOAP endpoint, its WSDL, and the sandboxes.

``GET <endpoint>?wsdl`` returns ``wsdl/wmproxy.wsdl`` with the service addresses set
to this deployment's endpoint; ``POST <endpoint>`` is dispatched to one of the three
ports (``wmproxy.soap.dispatch``: its caller authenticated by the TLS client chain and
admitted before the body is read, the request checked against ``[limits]``, every refusal the
fault of the operation); ``/<SandboxDir>/...`` is the HTTPS sandbox edge, where the caller is
authenticated before any file is looked at; ``/monitor/...`` is the read-only web job
monitor (``wmproxy.web``), behind the same client-certificate authentication. Every SOAP
operation and sandbox request writes one ``wmproxy.access`` line and is counted in the
Prometheus request metrics (``wmproxy.monitoring``).

gunicorn entry point: ``wmproxy.soap.app:application`` (settings from ``WMPROXY_CONFIG``
and ``WMPROXY_*`` variables, read once per worker process). :func:`check_start` runs when
gunicorn reads ``deploy/gunicorn.conf.py`` (before it listens) and again in
:func:`create_app`: the service refuses to start on a store key or SQLite file that
group/others can read, and warns when jobs are not mapped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from lxml import etree

from wmproxy.config import LimitsSettings, Settings, load_settings
from wmproxy.domain import Principal
from wmproxy.errors import ServerOverloadedError
from wmproxy.inspection_http import InspectionAgentApp
from wmproxy.monitoring import access
from wmproxy.monitoring.metrics import enable_request_metrics, metrics_dir
from wmproxy.sandbox.http import STORED_BYTES, SandboxApp
from wmproxy.security.filemodes import check_private_files, unmapped_exposure
from wmproxy.security.voms import service_host_names
from wmproxy.security.writable import check_writable_dir
from wmproxy.services import delegation_keys, sandboxes
from wmproxy.services.authz import check_caller
from wmproxy.services.inspection import AGENT_PATH
from wmproxy.services.runtime import Runtime
from wmproxy.services.storekey import check_store
from wmproxy.soap.auth import tls_principal
from wmproxy.soap.calls import PRINCIPAL_KEY, RUNTIME_KEY
from wmproxy.soap.contract import WSDL_FILE
from wmproxy.soap.dispatch import SoapDispatcher, fault_response, fault_type, read_refused_prefix
from wmproxy.soap.faults import port_fault
from wmproxy.soap.memory import limit_arenas, release_after
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, WMPROXY
from wmproxy.soap.request import MalformedRequestError, operation_of
from wmproxy.soap.tls_worker import close_connection
from wmproxy.web.app import MonitorApp
from wmproxy.web.unread import close_unread

log = logging.getLogger(__name__)

_WSDL_SOAP = "http://schemas.xmlsoap.org/wsdl/soap/"

Authenticate = Callable[[dict[str, Any]], Principal]


def published_wsdl(endpoint: str, wsdl_file: Path = WSDL_FILE) -> bytes:
    """The project's WSDL with every ``soap:address`` set to ``endpoint``."""
    tree = etree.parse(str(wsdl_file))
    for address in tree.iter(f"{{{_WSDL_SOAP}}}address"):
        address.set("location", endpoint)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


class WMProxyApplication:
    """Routes requests; ``authenticate`` turns the environ into a Principal (TLS by default)."""

    def __init__(self, runtime: Runtime, authenticate: Authenticate | None = None) -> None:
        self.runtime = runtime
        limits = runtime.settings.limits
        self.authenticate = authenticate or self._tls_principal
        self.endpoint_path = runtime.settings.service.endpoint_path
        self.sandbox_prefix = f"/{runtime.settings.sandbox.dir_name}/"
        self.soap = SoapDispatcher(limits, authenticate=self.authenticate)
        self.sandbox = SandboxApp(
            runtime.storage,
            authorize=self._authorize_sandbox,
            admit=self._admit_sandbox,
            input_limit=lambda rel_dir: sandboxes.input_room(runtime, rel_dir),
            check_new_file=lambda rel_dir: sandboxes.check_new_input_file(runtime, rel_dir),
            max_name_bytes=limits.max_sandbox_name_bytes,
            record_bytes=lambda rel_dir, delta, apply: sandboxes.change_area_bytes(runtime, rel_dir, delta, apply),
        )
        self.inspection = InspectionAgentApp(runtime, self.authenticate)
        self.monitor_prefix = MONITOR_PREFIX
        self.monitor = MonitorApp(runtime, self.authenticate, MONITOR_PREFIX)

    def _tls_principal(self, environ: dict[str, Any]) -> Principal:
        """The caller of a TLS request (:func:`~wmproxy.soap.auth.tls_principal`), its VOMS ACs
        verified for this service's names (``[service] host`` and the host certificate's)."""
        settings = self.runtime.settings
        sec = settings.security
        return tls_principal(
            environ, vomsdir=sec.vomsdir, ca_dir=sec.ca_dir, max_chain_depth=settings.limits.max_proxy_chain_depth,
            host_names=service_host_names(sec.host_cert, settings.service.host))

    @cached_property
    def wsdl(self) -> bytes:
        return published_wsdl(self.runtime.settings.service.endpoint)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """:meth:`route`; an answer that leaves part of the request body unread closes the
        connection (:func:`~wmproxy.web.unread.close_unread`: gunicorn would drain it at the
        client's pace on a request thread)."""
        return close_unread(self.route, environ, start_response)

    def route(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == self.endpoint_path and method == "GET" and environ.get("QUERY_STRING", "").lower() == "wsdl":
            return self._answer("wsdl", start_response, "200 OK", self.wsdl, "text/xml; charset=utf-8")
        if path == self.endpoint_path and method == "POST":
            environ[RUNTIME_KEY] = self.runtime
            return release_after(environ, self.soap(environ, start_response))
        if path.startswith(self.sandbox_prefix):
            return self._sandbox(environ, start_response)
        if path.startswith(AGENT_PATH + "/"):
            return self._agent(environ, start_response)
        if path.startswith(self.monitor_prefix):
            return self.monitor(environ, start_response)
        if path == self.monitor_prefix.rstrip("/"):
            return self._answer("monitor_other", start_response, "301 Moved Permanently", b"",
                                location=self.monitor_prefix)
        if path == self.endpoint_path:
            return self._answer("other", start_response, "405 Method Not Allowed", b"use POST (SOAP) or GET ?wsdl\n")
        return self._answer("other", start_response, "404 Not Found", b"not found\n")

    def _answer(self, op: str, start_response: Callable[..., Any], status: str, body: bytes,
                ctype: str = "text/plain", location: str | None = None) -> list[bytes]:
        """:meth:`_send`, with the answer's ``wmproxy.access`` line (no caller: none is authenticated)."""
        answer = self._send(start_response, status, body, ctype, location)
        access.record(op, None, None, _outcome(status), 0.0)
        return answer

    def _agent(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """A job inspection agent's request, with its ``wmproxy.access`` line (``op=agent_next``,
        ``agent_result`` or ``agent_other``; ``job``: the job its query names)."""
        started = time.monotonic()
        seen: dict[str, Any] = {}
        try:
            return self.inspection(environ, access.observing(start_response, seen))
        finally:
            op = AGENT_OPERATIONS.get(environ.get("PATH_INFO", "")[len(AGENT_PATH):], "agent_other")
            principal = environ.get(PRINCIPAL_KEY)
            job = parse_qs(environ.get("QUERY_STRING", "")).get("job", [None])[0]
            access.record(op, principal.dn if isinstance(principal, Principal) else None, job,
                          _outcome(str(seen.get("status", "500"))), time.monotonic() - started)

    def _sandbox(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The sandbox edge, with its ``wmproxy.access`` line (``op=sandbox_<METHOD>``, ``bytes``:
        of a 2xx answer, the bytes an upload stored, the answer's Content-Length for downloads;
        else 0)."""
        started = time.monotonic()
        seen: dict[str, Any] = {}
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        try:
            return self.sandbox(environ, access.observing(start_response, seen))
        except Exception:
            raise  # gunicorn answers 500
        except BaseException:
            # the request was cut without an answer (a client stalled past [load] io_timeout:
            # PeerStalledError; gunicorn's abort of a worker): nothing was sent, not a 500
            seen.setdefault("outcome", "no_answer")
            raise
        finally:
            status = str(seen.get("status", "500"))
            if not status.startswith("2"):
                size = 0  # what moved, not what a request claims: a refused PUT stored nothing
            elif method == "GET":
                size = _content_length(seen.get("headers", []))
            else:
                size = int(environ.get(STORED_BYTES, 0))
            principal = environ.get(PRINCIPAL_KEY)
            access.record(f"sandbox_{method}" if method in SANDBOX_METHODS else "sandbox_other",
                          principal.dn if isinstance(principal, Principal) else None,
                          environ.get(JOB_KEY),
                          seen.get("outcome") or ("ok" if status.startswith("2") else f"http_{status[:3]}"),
                          time.monotonic() - started, size)

    def _admit_sandbox(self, environ: dict[str, Any], method: str) -> Principal:
        """The caller of a sandbox request, authenticated and admitted by the site (first: a caller
        the site refuses has its connection closed without its body being read)."""
        principal = self.authenticate(environ)
        environ[PRINCIPAL_KEY] = principal
        check_caller(self.runtime.settings, principal, f"sandbox {method}")
        return principal

    def _authorize_sandbox(self, environ: dict[str, Any], job_rel_dir: str, method: str) -> None:
        principal = environ.get(PRINCIPAL_KEY)
        if not isinstance(principal, Principal):  # admitted by _admit_sandbox already, normally
            principal = self._admit_sandbox(environ, method)
        environ[JOB_KEY] = sandboxes.authorize_area(self.runtime, principal, job_rel_dir, method)

    @staticmethod
    def _send(start_response: Callable[..., Any], status: str, body: bytes, ctype: str = "text/plain",
              location: str | None = None) -> list[bytes]:
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        if location is not None:
            headers.append(("Location", location))
        start_response(status, headers)
        return [body]


#: Where the web job monitor is served.
MONITOR_PREFIX = "/monitor/"
#: Sandbox methods named in the access log and metrics (anything else is ``sandbox_other``).
SANDBOX_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "MOVE", "MKCOL", "OPTIONS", "PROPFIND"})
#: environ key of the job whose area a sandbox request touches (set once authorised).
JOB_KEY = "wmproxy.job_id"


#: The operation of a job inspection agent's request in the access log and metrics, by path under ``AGENT_PATH``.
AGENT_OPERATIONS = {"/next": "agent_next", "/result": "agent_result"}


def _outcome(status: str) -> str:
    """The access line's outcome of an HTTP answer: ``ok`` (2xx, 3xx) or ``http_<status>``."""
    return "ok" if status[:1] in ("2", "3") else f"http_{status[:3]}"


def _content_length(headers: list[tuple[str, str]]) -> int:
    for key, value in headers:
        if key.lower() == "content-length" and value.strip().isdigit():
            return int(value)
    return 0


#: Warnings this process has logged already (logged once per process, not per app built).
_warned: set[str] = set()


def check_start(settings: Settings) -> None:
    """The start checks of the service process: private file modes, schema and store key
    (``services.storekey.check_store``), the sandbox root writable
    (``security.writable.check_writable_dir``), then (once per process) the WARNING of
    ``[mapping] mode = none``.

    Raises:
        wmproxy.security.filemodes.FileModeError: the store key or the SQLite file is
            readable by group/others (the message names the file and the fix).
        wmproxy.services.storekey.StoreStateError: older schema or another store key.
        wmproxy.security.writable.UnwritableDirectoryError: ``[sandbox] root`` cannot be
            written (a unit's ``ReadWritePaths=`` without it).
    """
    check_private_files(settings)
    check_store(settings)
    check_writable_dir(settings.sandbox.root, "[sandbox] root", "wmproxy.service")
    warning = unmapped_exposure(settings)
    if warning is not None and warning not in _warned:
        _warned.add(warning)
        log.warning("%s", warning)


def create_app(settings: Settings | None = None, authenticate: Authenticate | None = None) -> WMProxyApplication:
    """Build the application from ``settings`` (default: :func:`wmproxy.config.load_settings`)
    after :func:`check_start`.

    Raises:
        wmproxy.config.ConfigError: bad settings, or (FileModeError) private files readable
            by group/others.
    """
    settings = settings or load_settings()
    check_start(settings)
    enable_request_metrics(metrics_dir(settings))
    limit_arenas()  # before this worker's request threads allocate
    runtime = Runtime.from_settings(settings)
    delegation_keys.ensure_filler(runtime)  # this worker tops up the pool of getProxyReq keys
    return WMProxyApplication(runtime, authenticate)


#: Seconds a client is asked to wait (``Retry-After``) while the application cannot be built.
UNAVAILABLE_RETRY_AFTER = 5
#: The fault description while the application cannot be built.
UNAVAILABLE = "Service temporarily unavailable: it could not start (see the service log); try again later"


def unavailable(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The answer while the application cannot be built (its settings, store or database
    failed): a POST naming a SOAP operation gets that operation's fault for ServerOverloadedError
    (ServerOverloadedFault 1228 where the operation declares it, else GenericFault 1228; a
    DelegationException on the delegation ports), the way the load limiter refuses
    (docs/load.md); any other request ``503 Service Unavailable``. Both with ``Retry-After``.

    The body is read as a refused caller's is (``dispatch.read_refused_prefix``: at most 64 KiB
    within 2 s, one thread of the process at a time): the operation's name is in its first bytes,
    and while the service is down a client sending slowly must not hold a request thread. A
    body not read whole has its connection closed after the answer."""
    retry = ("Retry-After", str(UNAVAILABLE_RETRY_AFTER))
    if environ.get("REQUEST_METHOD") == "POST":
        limits = LimitsSettings()  # the built-in limits: the configured ones may be what failed
        try:
            prefix, whole = read_refused_prefix(environ, limits.max_request_bytes)
        except MalformedRequestError:
            prefix, whole = b"", False  # its Content-Length: the HTTP answer below
        if not whole:
            close_connection(environ)
        namespace, operation = operation_of(prefix, limits)
        if operation and namespace in (WMPROXY, DELEGATION_1, DELEGATION_2):
            fault = port_fault(namespace, operation, ServerOverloadedError(UNAVAILABLE))
            return fault_response(lambda status, headers: start_response(status, [*headers, retry]), fault)
    body = b"service temporarily unavailable; try again later\n"
    start_response("503 Service Unavailable", [("Content-Type", "text/plain"), ("Content-Length", str(len(body))),
                                               retry])
    return [body]


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


class _LazyApplication:
    """Builds the app on the first request, inside the gunicorn worker (not the master), once
    (request threads race for it). While the build fails (a database unreachable, a store key
    refused), each request tries it again: the failure is logged (one line per attempt) and
    the request answered by :func:`unavailable`, not by gunicorn's HTML 500."""

    def __init__(self) -> None:
        self._app: WMProxyApplication | None = None
        self._building = threading.Lock()
        self._stopping = False
        self._settings: Settings | None = None

    def use_settings(self, settings: Settings) -> None:
        """Build the app from ``settings`` (the gunicorn master's, checked at its start and at each
        reload) rather than from the configuration file read again (:func:`create_app`'s default)."""
        self._settings = settings

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        app = self._app
        if app is None:
            try:
                app = self._build()
            except Exception as exc:  # noqa: BLE001 - whatever failed, the client gets an answer
                log.error("the application could not be built (the next request tries again): %s", _one_line(exc))
                seen: dict[str, Any] = {}
                body = unavailable(environ, access.observing(start_response, seen))
                status = str(seen.get("status", "503"))
                access.record("unavailable", None, None, fault_type(body[0]) if status.startswith("500") else
                              _outcome(status), 0.0)
                return body
        return app(environ, start_response)

    def _build(self) -> WMProxyApplication:
        with self._building:
            if self._app is None:
                built = create_app(self._settings)
                if self._stopping:  # stopped while it was built
                    built.runtime.stopping.set()
                self._app = built
            return self._app

    def stop(self) -> None:
        """The worker begins to stop (its SIGTERM): requests held open to wait are answered
        at once (``Runtime.stopping``), also those of an app built after this; safe to call
        from a signal handler (no lock taken)."""
        self._stopping = True
        app = self._app
        if app is not None:
            app.runtime.stopping.set()


application = _LazyApplication()
