"""Health, Prometheus metrics and the access log of a real deployment (gunicorn over TLS, a
worker, and ``wmproxy-metrics`` on a loopback plain-HTTP port, all as the service user).

The monitoring system needs no grid certificate: the scrapes below are plain HTTP without
any credential, while the service port still refuses a client without a certificate.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
import zeep
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Pki
from tests.integration.metrics_support import answers, http_get, start_metrics, token_file
from tests.integration.refclient import ReferenceClient, reference_client
from tests.integration.service import Deployment, tls_client_context
from tests.port_support import on_free_port
from tests.support import ECHO_JDL, WAIT_TIMEOUT, delegate, wait_for, wait_for_final

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def metrics_url(deployment: Deployment) -> str:
    """The listener's base URL; the deployment stops it with its other processes."""
    port = start_metrics(deployment, WMPROXY_METRICS_SANDBOX_SCAN_INTERVAL="0")
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def alice(deployment: Deployment, pki: Pki) -> ReferenceClient:
    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegate(ref, pki.users["alice"].proxy, "metrics")
    return ref


def scrape(metrics_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = http_get(f"{metrics_url}/metrics")
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_health_answers_without_a_certificate(metrics_url: str, deployment: Deployment, pki: Pki) -> None:
    assert http_get(f"{metrics_url}/healthz") == (200, "ok\n")
    status, text = http_get(f"{metrics_url}/readyz")
    assert status == 200, text
    assert [line.split()[:2] for line in text.splitlines()] == [["database", "ok"], ["schema", "ok"], ["ca", "ok"],
                                                                     ["crls", "ok"], ["ca_policy", "ok"],
                                                                     ["host_cert", "ok"], ["host_key", "ok"],
                                                                     ["ce_catalogue", "ok"], ["service", "ok"]]
    # ... while the service port itself refuses a client without a certificate
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        urllib.request.urlopen(f"https://localhost:{deployment.port}/monitor/", timeout=30,
                               context=tls_client_context(pki.ca_dir, None)).read()


def test_readiness_fails_on_a_database_without_the_schema(deployment: Deployment) -> None:
    token = "schema-" + "t" * 32
    port = start_metrics(deployment, WMPROXY_DATABASE_URL=f"sqlite:///{deployment.state}/empty-{secrets.token_hex(8)}.db",
                         WMPROXY_METRICS_TOKEN_FILE=str(token_file(deployment, token)))
    status, text = http_get(f"http://127.0.0.1:{port}/readyz", token)
    assert status == 503
    assert re.search(r"^schema FAIL .*wmproxy-admin migrate$", text, re.M), text


def test_a_token_keeps_metrics_and_readiness_details_to_its_holders(deployment: Deployment) -> None:
    """A grid job of the local backend can connect to the loopback port: with ``[metrics]
    token_file`` set it gets 401 from /metrics and /readyz; /healthz stays open. Without a
    token, /readyz names its checks but not their details (file paths)."""
    open_port = start_metrics(deployment)
    token = "scrape-" + "s" * 32
    port = start_metrics(deployment, WMPROXY_METRICS_TOKEN_FILE=str(token_file(deployment, token)))
    status, text = http_get(f"http://127.0.0.1:{open_port}/readyz")
    assert status == 200 and text.splitlines()[2] == "ca ok", text  # no detail: "ca ok <directory>" before
    assert str(deployment.state) not in text and "/" not in text
    assert http_get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
    for path in ("/metrics", "/readyz"):
        assert http_get(f"http://127.0.0.1:{port}{path}")[0] == 401
        assert http_get(f"http://127.0.0.1:{port}{path}", "wrong")[0] == 401
    status, text = http_get(f"http://127.0.0.1:{port}/metrics", token)
    assert status == 200 and "wmproxy_jobs" in text
    status, text = http_get(f"http://127.0.0.1:{port}/readyz", token)
    assert status == 200 and re.search(r"^ca ok \S+", text, re.M), text


def test_idle_connections_cannot_keep_the_scrapes_out(deployment: Deployment) -> None:
    """A local process (a grid job) holding more idle connections than the process may open
    files: each connection served at most ``max_connections`` at once, the idle one waiting
    longest closed for a newcomer. Before, 1,100 idle connections took every file descriptor
    and /healthz and /metrics timed out while they were held."""
    port = start_metrics(deployment, ("prlimit", "--nofile=64:64", "--"), WMPROXY_METRICS_MAX_CONNECTIONS="4")
    held = []
    try:
        for _ in range(200):
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        assert len(held) > 64, len(held)  # more than the process could hold
        wait_for(lambda: answers(f"http://127.0.0.1:{port}/healthz"), what="/healthz beside 200 idle connections")
        assert http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200
    finally:
        for conn in held:
            conn.close()


def test_an_idle_connection_is_closed_after_the_timeout(deployment: Deployment) -> None:
    port = start_metrics(deployment, WMPROXY_METRICS_TIMEOUT="1")
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_TIMEOUT) as conn:
        conn.sendall(b"GET /healthz HTTP/1.0\r\n")  # and never the end of its head
        assert conn.recv(100) == b""  # closed by the server (before: held for ever)


def test_requests_jobs_and_faults_are_counted(metrics_url: str, alice: ReferenceClient, pki: Pki,
                                              deployment: Deployment) -> None:
    before = scrape(metrics_url)
    job = alice.wmproxy.jobSubmit(ECHO_JDL, "metrics")
    wait_for_final(alice, job.id)
    bob = reference_client(deployment.endpoint, pki.users["bob"].proxy, pki.ca_dir)
    with pytest.raises(zeep.exceptions.Fault):
        bob.wmproxy.jobCancel(job.id)
    after = scrape(metrics_url)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("wmproxy_requests_total", operation="jobSubmit", outcome="ok") == 1
    assert grew("wmproxy_requests_total", operation="jobCancel", outcome="AuthorizationFault") == 1
    assert grew("wmproxy_request_duration_seconds_count", operation="jobSubmit") == 1
    assert after[("wmproxy_jobs", (("state", "Done"),))] >= 1
    assert ("wmproxy_execution_queue_depth", ()) in after
    assert ("wmproxy_proxy_renewals_total", (("result", "ok"),)) in after
    assert ("wmproxy_purges_total", ()) in after
    assert after[("wmproxy_sandbox_bytes", ())] > 0
    text = http_get(f"{metrics_url}/metrics")[1]
    assert pki.users["alice"].dn not in text and job.id not in text  # nothing that names a user or a job
    # the access log of the service: one line per operation, with the DN, the job and the outcome
    log = (deployment.state / "gunicorn.log").read_text()
    assert re.search(rf'op=jobCancel dn="{re.escape(pki.users["bob"].dn)}" job={re.escape(job.id)} '
                     r"outcome=AuthorizationFault duration=\d+\.\d{4}", log), log[-3000:]
    assert re.search(rf"op=jobSubmit dn=\S+ job={re.escape(job.id)} outcome=ok", log)
    assert "BEGIN" not in log  # no PEM block (key, proxy, certificate) in the service's log


def test_sandbox_bytes_count_what_was_moved_not_what_was_claimed(metrics_url: str, alice: ReferenceClient,
                                                                  pki: Pki, deployment: Deployment) -> None:
    # Refused uploads (bob in alice's area) are read and thrown away: their bytes were never
    # stored, and neither are the error answers of refused downloads sandbox data.
    job = alice.wmproxy.jobRegister(ECHO_JDL, "metrics")
    uri = alice.wmproxy.getSandboxDestURI(job.id, "https")[0]
    bob = reference_client(deployment.endpoint, pki.users["bob"].proxy, pki.ca_dir)
    before = scrape(metrics_url)
    assert alice.session.put(f"{uri}/data.bin", data=b"x" * 5000).status_code == 201
    for _ in range(3):
        assert bob.session.put(f"{uri}/data.bin", data=b"y" * 100_000).status_code == 403
        assert bob.session.get(f"{uri}/data.bin").status_code == 403
    assert alice.session.get(f"{uri}/data.bin").content == b"x" * 5000
    after = scrape(metrics_url)

    def grew(direction: str) -> float:
        key = ("wmproxy_sandbox_transfer_bytes_total", (("direction", direction),))
        return after.get(key, 0) - before.get(key, 0)

    assert (grew("in"), grew("out")) == (5000, 5000)
    assert after[("wmproxy_requests_total", (("operation", "sandbox_PUT"), ("outcome", "http_403")))] >= 3


def test_a_request_writes_one_access_line(alice: ReferenceClient, deployment: Deployment) -> None:
    """``wmproxy.access`` alone: gunicorn's access line (``"POST /... HTTP/1.1" 200``) is off by
    default. Two calls on one connection: gunicorn writes a request's line before it reads the
    next request, so once the second's wmproxy.access line is there, the first's are all written."""
    log = deployment.state / "gunicorn.log"
    start = log.stat().st_size
    alice.wmproxy.getVersion()
    alice.wmproxy.getVersion()

    def written() -> list[str]:
        with log.open("rb") as file:
            file.seek(start)
            return file.read().decode(errors="replace").splitlines()

    lines = wait_for(written, lambda got: sum("op=getVersion " in line for line in got) >= 2,
                     what="the two access lines of getVersion")
    assert [line for line in lines if "HTTP/1." in line or "op=getVersion " in line] == [
        line for line in lines if "op=getVersion " in line], lines
    assert sum("op=getVersion " in line for line in lines) == 2, lines


def test_access_logfile_brings_gunicorn_line_back(deployment: Deployment, pki: Pki) -> None:
    """A site that wants gunicorn's access line runs ``wmproxy-server --access-logfile -``."""
    server = deployment.python_command("wmproxy.serve", deployment.bin_dir / "wmproxy-server")

    def on(port: int) -> tuple[int, subprocess.Popen[bytes]]:
        return port, deployment.start_listening([*deployment.service_prefix, *server, "--bind", f"127.0.0.1:{port}",
                                                 "--workers", "1", "--access-logfile", "-"], f"gunicorn-{port}.log",
                                                port, "wmproxy-server")

    port, proc = on_free_port(on)
    try:
        context = tls_client_context(pki.ca_dir, pki.users["alice"].proxy)
        urllib.request.urlopen(f"https://localhost:{port}/glite_wms_wmproxy_server?wsdl", timeout=30,
                               context=context).read()
        log = deployment.state / f"gunicorn-{port}.log"
        text = wait_for(log.read_text, lambda got: '"GET /glite_wms_wmproxy_server?wsdl HTTP/1.1" 200' in got,
                        what="gunicorn's access line")
        assert re.search(r"INFO gunicorn\.access: \S+ \"GET /glite_wms_wmproxy_server\?wsdl HTTP/1\.1\" 200", text)
        assert "INFO wmproxy.access: op=wsdl " in text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
