"""``wmproxy-metrics``: health and Prometheus metrics over plain HTTP, for monitoring systems
that hold no grid certificate (the service's own port requires one).

Listens on ``[metrics] bind`` (default ``127.0.0.1:9464``: loopback; expose it only to the
monitoring network). GET only:

* ``/healthz`` — liveness: 200 ``ok`` while the process answers;
* ``/readyz`` — readiness: 200 when the database is reachable, its schema at the Alembic
  head, the CA directory holds a CA certificate, no CRL of it expired, the host certificate
  reads and has not expired, the policy file (if set) reads and the service port answers,
  else 503; one ``name ok|FAIL detail`` line per check
  (:func:`wmproxy.monitoring.health.readiness`);
* ``/metrics`` — Prometheus text format: the request metrics of every service process
  (``[metrics] dir``) and the database and sandbox gauges computed at scrape time.

Run it as the service user (it reads the database, the CA directory and the metrics
directory); it writes nothing but its answers.
"""

from __future__ import annotations

import logging
import signal
import socketserver
import sys
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from wmproxy.config import DEFAULT_METRICS_PORT, ConfigError, Settings, load_settings, parse_host_port
from wmproxy.monitoring.health import readiness
from wmproxy.monitoring.metrics import metrics_dir, scrape_registry
from wmproxy.services.runtime import Runtime

log = logging.getLogger(__name__)


class MetricsApp:
    """The WSGI application of ``wmproxy-metrics``."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.registry = scrape_registry(runtime, metrics_dir(runtime.settings))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _send(start_response, "405 Method Not Allowed", b"GET only\n")
        if path == "/healthz":
            return _send(start_response, "200 OK", b"ok\n")
        if path == "/readyz":
            engine = self.runtime.session_factory.kw["bind"]
            checks = readiness(self.runtime.settings, engine)
            body = "".join(f"{c.name} {'ok' if c.ok else 'FAIL'} {c.detail}\n" for c in checks).encode()
            return _send(start_response, "200 OK" if all(c.ok for c in checks) else "503 Service Unavailable", body)
        if path == "/metrics":
            try:
                body = generate_latest(self.registry)
            except Exception:  # a scrape that fails says so, the process lives on
                log.exception("metrics scrape failed")
                return _send(start_response, "503 Service Unavailable", b"scrape failed; see the log\n")
            return _send(start_response, "200 OK", body, CONTENT_TYPE_LATEST)
        return _send(start_response, "404 Not Found", b"/metrics, /healthz or /readyz\n")


def _send(start_response: Callable[..., Any], status: str, body: bytes,
          ctype: str = "text/plain; charset=utf-8") -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [body]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)


def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT."""
    host, port = parse_host_port(settings.metrics.bind, DEFAULT_METRICS_PORT)
    app = MetricsApp(Runtime.from_settings(settings))
    server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("wmproxy-metrics listening on http://%s:%d/ (/metrics, /healthz, /readyz)", host, port)
    server.serve_forever()
    server.server_close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        settings = load_settings()  # [metrics] bind included
    except ConfigError as exc:
        sys.exit(f"wmproxy-metrics: {exc}")
    serve(settings)


if __name__ == "__main__":
    main()
