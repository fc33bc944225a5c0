"""The ``wmproxy.access`` line of SOAP operations and sandbox requests, and its format."""

from __future__ import annotations

import io
import logging
import re
from urllib.parse import quote as quote_url

import pytest

from tests.support import CALLER_KEY, ECHO_JDL
from tests.unit.web.conftest import request
from wmproxy.domain import Principal
from wmproxy.monitoring.access import quote, record
from wmproxy.services.inspection import AGENT_PATH
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job
from wmproxy.soap import app as app_module
from wmproxy.soap.app import WMProxyApplication, _LazyApplication

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WMP = "http://glite.org/wms/wmproxy"
LINE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def envelope(operation: str, inner: str = "") -> bytes:
    return (f'<e:Envelope xmlns:e="{SOAP}"><e:Body><w:{operation} xmlns:w="{WMP}">{inner}</w:{operation}>'
            "</e:Body></e:Envelope>").encode()


def parse(line: str) -> dict[str, str]:
    return {k: (v[1:-1].replace('\\"', '"').replace("\\\\", "\\") if v.startswith('"') else v)
            for k, v in LINE.findall(line)}


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, str]]:
    return [parse(r.getMessage()) for r in caplog.records if r.name == "wmproxy.access"]


class TestFormat:
    @pytest.mark.parametrize(("value", "written"), [
        ("jobStart", "jobStart"), ("", '""'), ("/C=XX/CN=Jane Doe", '"/C=XX/CN=Jane Doe"'),
        ('a"b\\c', '"a\\"b\\\\c"'), ("x\ny=1", '"x\\ny=1"'), ("bell\x07", '"bell\\x07"')])
    def test_values_are_quoted_when_needed(self, value: str, written: str) -> None:
        assert quote(value) == written

    def test_a_hostile_value_cannot_forge_a_field(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, "wmproxy.access")
        dn, job = '/CN=x" outcome=ok job=evil', "https://h:9000/j\nop=forged"
        record("jobStart", dn, job, "AuthorizationFault", 0.25, 7)
        record("jobStart", dn, None, "ok", 0.5)  # the DN's quoted form again, from the cache
        assert access_lines(caplog) == [
            {"op": "jobStart", "dn": dn, "job": "https://h:9000/j\\nop=forged", "outcome": "AuthorizationFault",
             "duration": "0.2500", "bytes": "7"},
            {"op": "jobStart", "dn": dn, "job": "-", "outcome": "ok", "duration": "0.5000"}]


class TestSoapLines:
    def test_success_names_dn_operation_job_and_duration(self, app: WMProxyApplication, rt: Runtime,
                                                         alice: Principal, delegated: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        caplog.set_level(logging.INFO, "wmproxy.access")
        status, _, _ = request(app, alice, "/glite_wms_wmproxy_server", method="POST",
                               body=envelope("getJobStatus", f"<jobId>{job_id}</jobId>"))
        assert status == "200 OK"
        (line,) = access_lines(caplog)
        assert {k: line[k] for k in ("op", "dn", "job", "outcome")} == {
            "op": "getJobStatus", "dn": alice.dn, "job": job_id, "outcome": "ok"}
        assert float(line["duration"]) >= 0

    def test_a_fault_names_its_type_and_never_the_jdl(self, app: WMProxyApplication, rt: Runtime,
                                                      alice: Principal, bob: Principal, delegated: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        caplog.set_level(logging.INFO, "wmproxy.access")
        request(app, bob, "/glite_wms_wmproxy_server", method="POST",
                body=envelope("jobStart", f"<jobId>{job_id}</jobId>"))
        request(app, alice, "/glite_wms_wmproxy_server", method="POST",
                body=envelope("jobRegister", "<jdl>[ Executable = &quot;/bin/secret-thing&quot; ]</jdl>"
                                             f"<delegationId>{delegated}</delegationId>"))
        refused, registered = access_lines(caplog)
        assert (refused["op"], refused["dn"], refused["job"], refused["outcome"]) == (
            "jobStart", bob.dn, job_id, "AuthorizationFault")
        assert registered["op"] == "jobRegister" and registered["outcome"] in ("ok", "InvalidArgumentFault")
        assert all("secret-thing" not in r.getMessage() for r in caplog.records if r.name == "wmproxy.access")

    def test_registration_names_the_new_job(self, app: WMProxyApplication, alice: Principal, delegated: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, "wmproxy.access")
        jdl = ECHO_JDL.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
        inner = f"<jdl>{jdl}</jdl><delegationId>{delegated}</delegationId>"
        status, _, body = request(app, alice, "/glite_wms_wmproxy_server", method="POST",
                                  body=envelope("jobRegister", inner))
        assert status == "200 OK", body
        (line,) = access_lines(caplog)
        assert line["outcome"] == "ok" and line["job"].startswith("https://") and line["job"].encode() in body

    def test_an_unknown_operation_is_logged_as_unknown(self, app: WMProxyApplication, alice: Principal,
                                                       caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, "wmproxy.access")
        request(app, alice, "/glite_wms_wmproxy_server", method="POST", body=envelope("noSuchOperation"))
        (line,) = access_lines(caplog)
        assert (line["op"], line["outcome"]) == ("unknown", "InvalidArgumentFault")


def test_sandbox_requests_are_logged(app: WMProxyApplication, rt: Runtime, alice: Principal, bob: Principal,
                                     delegated: str, caplog: pytest.LogCaptureFixture) -> None:
    registered = register_job(rt, alice, ECHO_JDL, delegated)
    path = "/" + rt.storage.job_rel_dir(registered.job_id) + "/input/data.txt"
    caplog.set_level(logging.INFO, "wmproxy.access")
    status, _, _ = request(app, alice, path, method="PUT", body=b"12345")
    assert status.startswith("20")
    request(app, bob, path)
    put, get = access_lines(caplog)
    assert (put["op"], put["dn"], put["job"], put["outcome"], put["bytes"]) == (
        "sandbox_PUT", alice.dn, registered.job_id, "ok", "5")
    assert (get["op"], get["dn"], get["outcome"]) == ("sandbox_GET", bob.dn, "http_403")


class _Cut(BaseException):
    """What the request thread's socket raises when the client stalls past ``[load] io_timeout``
    (``wmproxy.soap.tls_worker.PeerStalledError``, a BaseException)."""


class _StallingBody:
    def __init__(self, head: bytes) -> None:
        self.head = head

    def read(self, size: int = -1) -> bytes:
        if self.head:
            data, self.head = self.head, b""
            return data
        raise _Cut


def test_an_upload_cut_without_an_answer_is_logged_as_such_not_as_a_500(
        app: WMProxyApplication, rt: Runtime, alice: Principal, delegated: str,
        caplog: pytest.LogCaptureFixture) -> None:
    registered = register_job(rt, alice, ECHO_JDL, delegated)
    path = "/" + rt.storage.job_rel_dir(registered.job_id) + "/input/data.txt"
    caplog.set_level(logging.INFO, "wmproxy.access")
    environ: dict[str, object] = {
        "REQUEST_METHOD": "PUT", "PATH_INFO": path, "QUERY_STRING": "", "CONTENT_LENGTH": "500000",
        "wsgi.input": _StallingBody(b"x" * 1000), "wsgi.url_scheme": "https", "SERVER_NAME": "localhost",
        "SERVER_PORT": "7443", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.errors": io.BytesIO(), CALLER_KEY: alice,
    }
    with pytest.raises(_Cut):
        app(environ, lambda status, headers, exc_info=None: None)
    (line,) = access_lines(caplog)
    assert (line["op"], line["job"], line["outcome"]) == ("sandbox_PUT", registered.job_id, "no_answer")
    assert not (rt.storage.job_area(registered.job_id).input_dir / "data.txt").exists()


def test_monitor_views_are_logged(app: WMProxyApplication, rt: Runtime, alice: Principal, bob: Principal,
                                  delegated: str, caplog: pytest.LogCaptureFixture) -> None:
    """L7: a view of a job's page (its JDL, its files) names the caller and the job, as getJDL does."""
    job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
    caplog.set_level(logging.INFO, "wmproxy.access")
    named = "id=" + quote_url(job_id, safe="")
    answers = [request(app, alice, "/monitor/job", named)[0], request(app, bob, "/monitor/job", named)[0],
               request(app, alice, "/monitor/")[0],
               request(app, alice, "/monitor/dag.svg", named)[0], request(app, alice, "/monitor/nope")[0],
               request(app, alice, "/monitor/job", "id=x%0Aop%3Dforged")[0]]
    assert answers == [
        "200 OK", "403 Forbidden", "200 OK", "404 Not Found", "404 Not Found", "400 Bad Request"]
    lines = [{k: line[k] for k in ("op", "dn", "job", "outcome")} for line in access_lines(caplog)]
    assert lines == [
        {"op": "monitor_job", "dn": alice.dn, "job": job_id, "outcome": "ok"},
        {"op": "monitor_job", "dn": bob.dn, "job": job_id, "outcome": "http_403"},
        {"op": "monitor_jobs", "dn": alice.dn, "job": "-", "outcome": "ok"},
        {"op": "monitor_dag", "dn": alice.dn, "job": job_id, "outcome": "http_404"},
        {"op": "monitor_other", "dn": alice.dn, "job": "-", "outcome": "http_404"},
        {"op": "monitor_job", "dn": alice.dn, "job": "x\\nop=forged", "outcome": "http_400"},  # escaped
    ]
    assert all(float(line["duration"]) >= 0 for line in access_lines(caplog))


def test_every_other_answer_of_the_application_is_logged_once(app: WMProxyApplication, alice: Principal,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """gunicorn's access line is off: the WSDL, the monitor's redirect, a GET of the endpoint, an
    unknown path (``/healthz`` on the service port) and a job inspection agent's request each
    write one ``wmproxy.access`` line."""
    caplog.set_level(logging.INFO, "wmproxy.access")
    answers = [request(app, alice, "/glite_wms_wmproxy_server", "wsdl")[0], request(app, alice, "/monitor")[0],
               request(app, alice, "/glite_wms_wmproxy_server")[0], request(app, alice, "/healthz")[0],
               request(app, alice, f"{AGENT_PATH}/next", "job=https%3A%2F%2Fh%3A9000%2Fx")[0],
               request(app, alice, f"{AGENT_PATH}/nope")[0]]
    assert answers == ["200 OK", "301 Moved Permanently", "405 Method Not Allowed", "404 Not Found",
                       "403 Forbidden", "404 Not Found"]
    assert [(line["op"], line["dn"], line["job"], line["outcome"]) for line in access_lines(caplog)] == [
        ("wsdl", "-", "-", "ok"), ("monitor_other", "-", "-", "ok"), ("other", "-", "-", "http_405"),
        ("other", "-", "-", "http_404"), ("agent_next", alice.dn, "https://h:9000/x", "http_403"),
        ("agent_other", alice.dn, "-", "http_404")]


def test_an_answer_while_the_application_cannot_be_built_is_logged(monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    def create_app() -> WMProxyApplication:
        raise RuntimeError("database down")

    monkeypatch.setattr(app_module, "create_app", create_app)
    caplog.set_level(logging.INFO, "wmproxy.access")
    lazy = _LazyApplication()
    seen: list[str] = []
    body = envelope("jobStart")
    for environ in ({"REQUEST_METHOD": "GET", "PATH_INFO": "/"},
                    {"REQUEST_METHOD": "POST", "PATH_INFO": "/glite_wms_wmproxy_server",
                     "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}):
        b"".join(lazy(environ, lambda status, headers, exc_info=None: seen.append(status)))
    assert [status[:3] for status in seen] == ["503", "500"]
    assert [(line["op"], line["outcome"]) for line in access_lines(caplog)] == [
        ("unavailable", "http_503"), ("unavailable", "ServerOverloadedFault")]
