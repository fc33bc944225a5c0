"""The application gunicorn loads (``wmproxy.soap.app:application``) is built by the first
request, once, and a stop (the worker's SIGTERM) reaches its runtime's held waits even when the
app is built after it (``Runtime.stopping``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Pki
from tests.support import build_runtime, caller_from_environ, close_runtime, principal_of
from tests.unit.web.conftest import request
from wmproxy.services.runtime import Runtime
from wmproxy.soap import app as app_module
from wmproxy.soap.app import WMProxyApplication, _LazyApplication


@pytest.fixture
def built(tmp_path: Path, pki: Pki, template_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Runtime]]:
    """``create_app`` builds an app on a runtime of its own at each call (slowly, as a real
    one imports and connects); the list holds the runtimes built."""
    runtimes: list[Runtime] = []

    def create_app() -> WMProxyApplication:
        time.sleep(0.2)  # the window in which a second request thread arrives
        rt = build_runtime(tmp_path / f"rt{len(runtimes)}", pki, template_db)
        runtimes.append(rt)
        return WMProxyApplication(rt, authenticate=caller_from_environ)

    monkeypatch.setattr(app_module, "create_app", create_app)
    yield runtimes
    for rt in runtimes:
        close_runtime(rt)


def test_a_stop_before_the_first_request_reaches_the_app_built_after_it(built: list[Runtime], pki: Pki) -> None:
    lazy = _LazyApplication()
    lazy.stop()  # SIGTERM while the worker still loads, or before any request came
    status, _headers, _body = request(lazy, principal_of(pki, "alice"), "/no-such-path")  # type: ignore[arg-type]
    assert status.startswith("404") and len(built) == 1 and built[0].stopping.is_set()


def test_a_stop_reaches_the_built_app(built: list[Runtime], pki: Pki) -> None:
    lazy = _LazyApplication()
    request(lazy, principal_of(pki, "alice"), "/no-such-path")  # type: ignore[arg-type]
    assert not built[0].stopping.is_set()
    lazy.stop()
    assert built[0].stopping.is_set()


def test_request_threads_racing_for_the_first_request_build_one_app(built: list[Runtime], pki: Pki) -> None:
    lazy = _LazyApplication()
    start = threading.Barrier(4)
    statuses: list[str] = []

    def first_request() -> None:
        start.wait()
        statuses.append(request(lazy, principal_of(pki, "alice"), "/no-such-path")[0])  # type: ignore[arg-type]

    threads = [threading.Thread(target=first_request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 4 and len(built) == 1


class TestWorkerSigterm:
    """``HandshakeWorker.handle_exit``, gunicorn's SIGTERM handler in a worker."""

    @pytest.fixture
    def worker(self) -> Iterator[Any]:
        """A worker as its ``init_process`` leaves it when the signal handlers are installed
        (its wake-up queue open), before the app is loaded."""
        import logging
        import os

        from gunicorn.config import Config

        from wmproxy.soap.tls_worker import HandshakeWorker

        made = HandshakeWorker(0, os.getpid(), [], None, 30, Config(), logging.getLogger("test"))
        made.method_queue.init()
        yield made
        made.method_queue.close()
        made.tmp.close()  # the heartbeat file every gunicorn worker opens

    def test_before_the_app_is_loaded_it_only_begins_the_stop(self, worker: Any) -> None:
        assert not hasattr(worker, "wsgi")  # SIGTERM while init_process still loads the app
        worker.handle_exit(15, None)
        assert worker.alive is False

    def test_once_loaded_it_stops_the_app(self, worker: Any, built: list[Runtime], pki: Pki) -> None:
        lazy = _LazyApplication()
        request(lazy, principal_of(pki, "alice"), "/no-such-path")  # type: ignore[arg-type]
        worker.wsgi = lazy
        worker.handle_exit(15, None)
        assert worker.alive is False and built[0].stopping.is_set()
