"""The application gunicorn loads (``wmproxy.soap.app:application``) is built by the first
request, once, and a stop (the worker's SIGTERM) reaches its runtime's held waits even when the
app is built after it (``Runtime.stopping``)."""

from __future__ import annotations

import logging
import os
import shutil
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

    def create_app(settings: object = None) -> WMProxyApplication:  # the real one takes the settings
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


class TestBuildFailure:
    """``create_app`` fails at the first request (here: the configured SQLite database is not
    there yet, as a database that cannot be reached): every request is answered by the
    service, each attempt logged, and a later request builds the app once the cause is gone."""

    @pytest.fixture
    def config(self, tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Path:
        """``WMPROXY_CONFIG`` names a service under ``tmp_path`` whose database does not exist
        yet; the process's request metrics, which a build turns on, are put back after."""
        from prometheus_client import values

        from wmproxy.monitoring import metrics

        monkeypatch.setattr(metrics, "_current", None)
        monkeypatch.setattr(values, "ValueClass", values.ValueClass)
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
        for name in [name for name in os.environ if name.startswith("WMPROXY_")]:
            monkeypatch.delenv(name)
        path = tmp_path / "wmproxy.conf"
        path.write_text(
            f"[database]\nurl = sqlite:///{tmp_path}/db/wmproxy.db\n"
            f"[security]\nca_dir = {pki.ca_dir}\nvomsdir = {tmp_path}/vomsdir\nhost_cert = {pki.host_cert}\n"
            f"host_key = {pki.host_key}\nstore_key_file = {tmp_path}/keys/store.key\ndelegation_key_pool = 0\n"
            f"[sandbox]\nroot = {tmp_path}/sandbox\n[execution]\nwork_dir = {tmp_path}/work\n"
            f"[metrics]\ndir = {tmp_path}/metrics\n[mapping]\nmode = gridmap\n")
        monkeypatch.setenv("WMPROXY_CONFIG", str(path))
        return path

    def test_requests_are_answered_until_a_later_one_builds_the_app(
            self, config: Path, template_db: Path, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
        from lxml import etree

        from wmproxy.admin import initialise
        from wmproxy.config import load_settings
        from wmproxy.soap.namespaces import SOAP_ENV, WMPROXY

        lazy = _LazyApplication()
        alice = principal_of(pki, "alice")
        caplog.set_level(logging.INFO)
        submit = (f'<e:Envelope xmlns:e="{SOAP_ENV}"><e:Body><w:jobSubmit xmlns:w="{WMPROXY}"><jdl>[]</jdl>'
                  "<delegationId>d</delegationId></w:jobSubmit></e:Body></e:Envelope>").encode()
        status, headers, body = request(lazy, alice, "/glite_wms_wmproxy_server",  # type: ignore[arg-type]
                                        method="POST", body=submit)
        assert status.startswith("500") and headers["Retry-After"] == "5", body
        fault = etree.fromstring(body).find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
        assert fault is not None, body
        (detail,) = fault.find("detail")
        assert etree.QName(detail) == etree.QName(WMPROXY, "ServerOverloadedFault"), body
        assert [detail.findtext(name) for name in ("methodName", "ErrorCode")] == ["jobSubmit", "1228"]
        assert (detail.findtext("Description") or "").startswith("Service temporarily unavailable")

        status, headers, body = request(lazy, alice, "/monitor/")  # type: ignore[arg-type]
        assert (status, headers["Retry-After"]) == ("503 Service Unavailable", "5"), body
        attempts = [r.getMessage() for r in caplog.records
                    if r.name == "wmproxy.soap.app" and r.levelno == logging.ERROR]
        assert len(attempts) == 2, attempts
        assert all("could not be built" in line and "there is no database at" in line for line in attempts), attempts

        settings = load_settings()  # the cause goes away: the database is made
        Path(settings.database.url.removeprefix("sqlite:///")).parent.mkdir()
        shutil.copyfile(template_db, settings.database.url.removeprefix("sqlite:///"))
        initialise(settings)
        caplog.clear()
        try:
            status, _headers, body = request(lazy, alice, "/glite_wms_wmproxy_server", "wsdl")  # type: ignore[arg-type]
            assert status == "200 OK" and b"wsdl:definitions" in body
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        finally:
            built = lazy._app
            lazy.stop()
            if built is not None:
                close_runtime(built.runtime)


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


class TestUnavailableReadsLittle:
    """While the app cannot be built, a request's body is read as a refused caller's is: the
    operation's name is in its first 64 KiB (``PREFIX_BYTES``), and a client sending slowly
    must not hold a request thread while the service is down. The whole body was read before
    (up to the 16 MB the service takes)."""

    @staticmethod
    def answer(body: bytes) -> tuple[str, dict[str, str], bytes, int]:
        import io

        stream = io.BytesIO(body)
        environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)), "wsgi.input": stream,
                   "CONTENT_TYPE": "text/xml; charset=utf-8"}
        seen: list[Any] = []
        reply = b"".join(app_module.unavailable(environ, lambda status, headers: seen.extend([status, headers])))
        return seen[0], dict(seen[1]), reply, stream.tell()

    def test_a_large_request_gets_its_operations_fault_from_its_first_bytes(self) -> None:
        from lxml import etree

        from wmproxy.soap.namespaces import SOAP_ENV, WMPROXY
        from wmproxy.soap.request import PREFIX_BYTES

        jdl = "[ Executable = \"/bin/true\"; Arguments = \"" + "x" * 1_000_000 + "\"; ]"
        body = (f'<e:Envelope xmlns:e="{SOAP_ENV}"><e:Body><w:jobSubmit xmlns:w="{WMPROXY}"><jdl>{jdl}</jdl>'
                "<delegationId>d</delegationId></w:jobSubmit></e:Body></e:Envelope>").encode()
        status, headers, reply, read = self.answer(body)
        assert read <= PREFIX_BYTES < len(body)
        assert status.startswith("500") and headers["Retry-After"] == "5", reply[:300]
        detail = etree.fromstring(reply).find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault/detail")
        assert detail is not None, reply[:300]
        (fault,) = detail
        assert etree.QName(fault) == etree.QName(WMPROXY, "ServerOverloadedFault")
        assert [fault.findtext(name) for name in ("methodName", "ErrorCode")] == ["jobSubmit", "1228"]

    def test_a_delegation_request_gets_its_ports_fault(self) -> None:
        from wmproxy.soap.namespaces import DELEGATION_2, SOAP_ENV

        body = (f'<e:Envelope xmlns:e="{SOAP_ENV}"><e:Body><d:getProxyReq xmlns:d="{DELEGATION_2}">'
                "<delegationID>x</delegationID></d:getProxyReq></e:Body></e:Envelope>").encode()
        status, _headers, reply, _read = self.answer(body)
        assert status.startswith("500") and b"DelegationException" in reply, reply[:300]

    def test_what_names_no_operation_is_503(self) -> None:
        status, headers, reply, read = self.answer(b"x" * 200_000)
        assert status == "503 Service Unavailable" and headers["Retry-After"] == "5", reply
        assert read <= 64 * 1024
