"""``wmproxy-metrics``: health and Prometheus metrics over plain HTTP, for monitoring systems
that hold no grid certificate (the service's own port requires one).

Listens on ``[metrics] bind`` (default ``127.0.0.1:9464``: loopback; expose it only to the
monitoring network). GET only:

* ``/healthz`` — liveness: 200 ``ok`` while the process answers;
* ``/readyz`` — readiness: 200 when the database is reachable, its schema at the Alembic
  head, the CA directory holds a CA certificate, no CRL of it expired, the host certificate
  reads and has not expired, the policy file (if set) reads and the service port answers,
  else 503; one ``name ok|FAIL`` line per check, with its detail (file paths among them) only
  for a caller that gave the bearer token (:func:`wmproxy.monitoring.health.readiness`); the
  details of failing checks are logged when they change;
* ``/metrics`` — Prometheus text format: the request metrics of every service process
  (``[metrics] dir``) and the database and sandbox gauges computed at scrape time; while the
  database cannot be read, ``wmproxy_database_up 0`` and the rest (logged once, as ``/readyz``
  logs its checks; :class:`wmproxy.monitoring.metrics.SiteCollector`).

With ``[metrics] token_file`` set, ``/metrics`` and ``/readyz`` answer only a request with
``Authorization: Bearer <the file's token>`` (else 401); ``/healthz`` needs none. A token file
group or others can read is refused (:class:`TokenFileModeError`, exit status 3). Any local
process can reach a loopback port, a grid job of the local backend included.

Connections are served by a pool of ``[metrics] max_connections`` threads, no more at once
(:class:`BoundedServer`): when all are taken the connection still waiting for its request
longest is closed to make room, and when none waits a new connection is closed at once; each
read and write of a connection has ``[metrics] timeout`` seconds. Idle connections of any local
process (a job's 1,100 took every file descriptor and every scrape timed out) cost at most that.

Run it as the service user (it reads the database, the CA directory and the metrics
directory); it writes nothing but its answers. ``wmproxy-metrics [-c FILE]``: like every
process it refuses to start, with one line and the status of
:func:`wmproxy.services.startup.exit_status`, on a configuration error, a store key or SQLite
file others can read, a store key missing, unreadable or not the database's
(:func:`check_start`); a ``[metrics] bind`` it cannot listen on (a port in use) exits 1.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import click

from wmproxy.config import DEFAULT_METRICS_PORT, ConfigError, Settings, load_settings, parse_host_port
from wmproxy.monitoring.health import readiness
from wmproxy.monitoring.metrics import metrics_dir, scrape_registry
from wmproxy.security.filemodes import FileModeError, check_private_file, check_private_files
from wmproxy.services.hangup import ignore_hangup
from wmproxy.services.runtime import Runtime
from wmproxy.services.startup import refuse
from wmproxy.services.storekey import StoreStateError, check_schema, check_store_key, check_store_key_file

log = logging.getLogger(__name__)


class MetricsApp:
    """The WSGI application of ``wmproxy-metrics``.

    Args:
        runtime: the process runtime.
        token: the bearer token ``/metrics`` and ``/readyz`` ask for; None = none asked (and
            ``/readyz`` shows no check's detail).
    """

    def __init__(self, runtime: Runtime, token: str | None = None) -> None:
        self.runtime = runtime
        self.registry = scrape_registry(runtime, metrics_dir(runtime.settings))
        self.token = token.encode() if token else None
        self._failing: list[tuple[str, str, str]] = []  # the failing (and warning) checks last logged
        self._scrape_error: str | None = None  # the failure of /metrics last logged

    def _authenticated(self, environ: dict[str, Any]) -> bool:
        if self.token is None:
            return False
        scheme, _sep, given = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _send(start_response, "405 Method Not Allowed", b"GET only\n")
        if path == "/healthz":
            return _send(start_response, "200 OK", b"ok\n")
        if path not in ("/readyz", "/metrics"):
            return _send(start_response, "404 Not Found", b"/metrics, /healthz or /readyz\n")
        authenticated = self._authenticated(environ)
        if self.token is not None and not authenticated:
            return _send(start_response, "401 Unauthorized", b"a bearer token is required ([metrics] token_file)\n",
                         extra=[("WWW-Authenticate", 'Bearer realm="wmproxy-metrics"')])
        if path == "/readyz":
            engine = self.runtime.session_factory.kw["bind"]
            checks = readiness(self.runtime.settings, engine)
            self._log_failing([(c.name, c.state, c.detail) for c in checks if c.state != "ok"])
            body = "".join(f"{c.name} {c.state}{' ' + c.detail if authenticated else ''}\n"
                           for c in checks).encode()
            return _send(start_response, "200 OK" if all(c.ok for c in checks) else "503 Service Unavailable", body)
        try:
            body = generate_latest(self.registry)
        except Exception as exc:  # a scrape that fails says so, the process lives on
            error = " ".join(f"{type(exc).__name__}: {exc}".split())
            if error != self._scrape_error:  # logged once (with its traceback) while it repeats
                self._scrape_error = error
                log.exception("metrics scrape failed (logged again when the error changes)")
            return _send(start_response, "503 Service Unavailable", b"scrape failed; see the log\n")
        if self._scrape_error is not None:
            self._scrape_error = None
            log.info("metrics scrapes succeed again")
        return _send(start_response, "200 OK", body, CONTENT_TYPE_LATEST)

    def _log_failing(self, failing: list[tuple[str, str, str]]) -> None:
        """Log the failing (and warning) checks, (name, ``FAIL`` or ``WARN``, detail), when they
        differ from the last ones logged (a probe every few seconds logs a failure once)."""
        if failing == self._failing:
            return
        self._failing = failing
        if failing:
            log.warning("readiness: %s", "; ".join(f"{name} {state} {detail}" for name, state, detail in failing))
        else:
            log.info("readiness: every check passes again")


def _send(start_response: Callable[..., Any], status: str, body: bytes,
          ctype: str = "text/plain; charset=utf-8", extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), *(extra or [])])
    return [body]


class BoundedServer(WSGIServer):
    """A WSGI server that serves at most ``max_connections`` connections at once, each in a
    thread of a pool of that size, each read and write bounded by ``timeout`` seconds.

    A connection is *waiting* until its request's head (request line and headers) has been
    read. When every slot is taken, a new connection takes the slot of the connection waiting
    longest, which is shut down; with none waiting (all being answered, which takes no longer
    than a scrape) the new connection is closed at once. A scraper sends its request as soon as
    it is connected, so idle or slow connections of other local processes do not keep it out.
    """

    #: connections the kernel completes before they are accepted (socketserver's default, 5,
    #: dropped a burst's handshakes for a second each)
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[WSGIRequestHandler], *,
                 max_connections: int, timeout: float) -> None:
        self.max_connections = max_connections
        self.connection_timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=max_connections, thread_name_prefix="wmproxy-metrics")
        self._lock = threading.Lock()
        #: the connections admitted, oldest first: True once their request's head is read
        self._admitted: dict[socket.socket, bool] = {}
        self._accept_failed_at = 0.0
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if len(self._admitted) >= self.max_connections:
                waiting = next((conn for conn, answering in self._admitted.items() if not answering), None)
                if waiting is None:
                    log.debug("connection from %s closed: %d being answered", client_address, self.max_connections)
                    self.shutdown_request(request)
                    return
                del self._admitted[waiting]
                _shut(waiting)  # its thread sees the end of the stream and frees its slot
            self._admitted[request] = False
        request.settimeout(self.connection_timeout)
        self._pool.submit(self._serve, request, client_address)

    def answering(self, request: socket.socket) -> None:
        """``request``'s head is read: its slot is no longer taken from it for a newcomer."""
        with self._lock:
            if request in self._admitted:
                self._admitted[request] = True

    def _serve(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a connection's failure (timeout, reset) ends that connection only
            self.handle_error(request, client_address)
        finally:
            with self._lock:
                self._admitted.pop(request, None)
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s: %s", client_address, sys.exc_info()[1] or "closed")

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                now = time.monotonic()
                if now - self._accept_failed_at > 60:
                    log.warning("cannot accept a connection: %s", exc)
                self._accept_failed_at = now
                time.sleep(0.1)  # the listener stays readable: accepting again at once would spin
            raise

    def server_close(self) -> None:
        super().server_close()
        with self._lock:
            for conn in self._admitted:
                _shut(conn)
        self._pool.shutdown(wait=False, cancel_futures=True)


def _shut(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_RDWR)


class _QuietHandler(WSGIRequestHandler):
    server: BoundedServer

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the headers too
        if parsed:
            self.server.answering(self.connection)
        return parsed

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)


class TokenFileModeError(ConfigError):
    """``[metrics] token_file`` is accessible to group or others: any local process, a grid job of
    the local backend among them, could read the bearer token (refused as the store key is:
    :func:`wmproxy.security.filemodes.check_private_file`)."""

    def __init__(self, path: str, mode: int) -> None:
        super().__init__(f"[metrics] token_file: {path} is accessible to group/others (mode {mode:04o}): any local "
                         f"process, a job among them, could read the bearer token; it must be readable by the service "
                         f"user only. Fix: chmod 600 {path}")


def read_token(settings: Settings) -> str | None:
    """The bearer token of ``[metrics] token_file`` (its first line, stripped); None when unset.

    Raises:
        TokenFileModeError: the file is accessible to group or others.
        ConfigError: the file cannot be read or holds no token.
    """
    name = settings.metrics.token_file
    if not name:
        return None
    try:
        check_private_file(Path(name))
    except FileModeError as exc:
        raise TokenFileModeError(name, exc.mode) from None
    except OSError:
        pass  # reported by the read below
    try:
        lines = Path(name).read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"[metrics] token_file: cannot read {name}: {exc}") from exc
    token = lines[0].strip() if lines else ""
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(f"[metrics] token_file: {name} holds no token (one line of printable characters)")
    return token


def check_start(settings: Settings) -> None:
    """The start checks of every process (file modes, the store key readable and the database's),
    except that a database this process cannot use yet (unreachable, missing, an older schema)
    does not stop it: ``/readyz`` reports that, and the key's fingerprint is then not compared
    (a warning says so).

    Raises:
        ConfigError: FileModeError or StoreStateError, naming the file and the fix.
    """
    check_private_files(settings)
    try:
        check_schema(settings)
    except StoreStateError as exc:
        check_store_key_file(settings)
        log.warning("the store key was not compared with the database's, which is not ready (%s); /readyz "
                    "reports it", exc)
        return
    check_store_key(settings)


class ListenError(Exception):
    """``[metrics] bind`` cannot be listened on (the port in use, an address not of this host)."""


def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT (SIGHUP is logged and ignored).

    Raises:
        ConfigError: an unreadable ``[metrics] token_file``.
        ListenError: ``[metrics] bind`` cannot be listened on.
    """
    host, port = parse_host_port(settings.metrics.bind, DEFAULT_METRICS_PORT)
    token = read_token(settings)
    try:
        server = BoundedServer((host, port), _QuietHandler, max_connections=settings.metrics.max_connections,
                               timeout=settings.metrics.timeout)
    except OSError as exc:
        raise ListenError(f"[metrics] bind = {settings.metrics.bind}: cannot listen on {host}:{port}: "
                          f"{exc.strerror or exc}") from None
    server.set_app(MetricsApp(Runtime.from_settings(settings), token))

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    ignore_hangup("wmproxy-metrics")
    log.info("wmproxy-metrics listening on http://%s:%d/ (/metrics, /healthz, /readyz; %s; at most %d connections "
             "at once)", host, port, "bearer token required" if token else "no token", settings.metrics.max_connections)
    server.serve_forever()
    server.server_close()


@click.command()
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="configuration file")
def main(config_file: str | None) -> None:
    """Serve liveness, readiness and Prometheus metrics over plain HTTP on [metrics] bind."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = load_settings(config_file)  # [metrics] bind included
        check_start(settings)
        serve(settings)
    except ConfigError as exc:
        refuse(exc)
    except ListenError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":
    main()
