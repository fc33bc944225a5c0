"""A real HTTPS server in a thread for the CLI's downloads: werkzeug's, with the test PKI's
``localhost`` certificate, serving any WSGI application (``server.app`` may be replaced while
it runs). Clients reach it with :func:`wmproxy.client.session.grid_session`."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from tests.conftest import Pki


@contextmanager
def https_server(pki: Pki, app: Any) -> Iterator[tuple[BaseWSGIServer, str]]:
    """``(server, "https://localhost:<port>")`` for the duration of the block."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.host_cert, pki.host_key)
    server = make_server("localhost", 0, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, f"https://localhost:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
