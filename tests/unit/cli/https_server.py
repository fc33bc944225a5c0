"""Real HTTPS servers for the CLI tests.

* :func:`https_server`: werkzeug's in a thread, with the test PKI's ``localhost`` certificate,
  serving any WSGI application (``server.app`` may be replaced while it runs). Clients reach
  it with :func:`wmproxy.client.session.grid_session`.
* ``service``: the service in-process (``WMProxyApplication``: SOAP port, sandbox edge) behind
  it, alice as the caller (a fixed caller instead of the TLS client certificate), a fixture of
  the conftest. :func:`registered_job` makes her a job there.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import BaseWSGIServer, make_server

from tests.conftest import Pki
from tests.support import (
    CALLER_KEY,
    build_runtime,
    caller_from_environ,
    close_runtime,
    delegate_in_process,
    principal_of,
)
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job
from wmproxy.soap.app import WMProxyApplication


@contextmanager
def https_server(pki: Pki, app: Any, *, cert: Path | None = None, key: Path | None = None,
                 ) -> Iterator[tuple[BaseWSGIServer, str]]:
    """``(server, "https://localhost:<port>")`` for the duration of the block; with the host
    certificate and key ``cert`` and ``key`` instead of the PKI's (a hostile server's)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert or pki.host_cert, key or pki.host_key)
    server = make_server("localhost", 0, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, f"https://localhost:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture
def service(pki: Pki, template_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            request: pytest.FixtureRequest) -> Iterator[Runtime]:
    """The service in-process behind a real TLS server on a free port; alice is the caller, and
    the CLI's environment points at it with her proxy. Indirect parametrization gives settings
    sections (``{"jobs": {"quota_hard_limit": 4000}}``)."""
    sections: dict[str, Any] = getattr(request, "param", {})
    with https_server(pki, None) as (server, base):
        rt = build_runtime(tmp_path / "state", pki, template_db, service={"port": int(base.rsplit(":", 1)[1])},
                           **sections)
        app = WMProxyApplication(rt, authenticate=caller_from_environ)
        alice = principal_of(pki, "alice")

        def as_alice(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            environ[CALLER_KEY] = alice
            return app(environ, start_response)

        server.app = as_alice
        monkeypatch.setenv("GLITE_WMS_WMPROXY_ENDPOINT", rt.settings.service.endpoint)
        monkeypatch.setenv("X509_USER_PROXY", str(pki.users["alice"].proxy))
        monkeypatch.setenv("X509_CERT_DIR", str(pki.ca_dir))
        try:
            yield rt
        finally:
            close_runtime(rt)


def registered_job(rt: Runtime, pki: Pki, jdl: str, state: JobState, **change: Any) -> tuple[Principal, str]:
    """(alice, the id of a job of hers registered with ``jdl``, then moved to ``state`` as the
    execution worker would, with ``change`` such as ``reason``, ``exit_code``)."""
    alice = principal_of(pki, "alice")
    job_id = register_job(rt, alice, jdl, delegate_in_process(rt, alice, pki.users["alice"].proxy, "unit")).job_id
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        uow.jobs.set_state(job, state.value, utcnow(), **change)
    return alice, job_id
