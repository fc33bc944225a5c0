"""A graceful stop of the real service (SIGTERM to the gunicorn master) while a request is held
open to wait: a user's ``getInspectionResult`` of a request the job's agent never takes, or the
job agent's long-poll for work (``GET .../next``), each held for up to 30 s; gunicorn kills a
worker whose requests outlast ``[service] graceful_timeout``, here 15 s. The held request must
be answered when the stop begins (the inspection request's current state; no work for the
agent, which asks again) and the service exit cleanly; without the worker's stop hook
(``HandshakeWorker.handle_exit`` → ``Runtime.stopping``) the worker is killed and the client
gets no answer. Both databases. Every wait is for a condition; the margins are the 15 s a
stopping worker has to answer and the 15 s between the grace's end and the hold's."""

from __future__ import annotations

import http.client
import signal
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from lxml import etree

from tests.conftest import Pki
from tests.integration.isolated import standard_deployment
from tests.integration.refclient import reference_client
from tests.integration.service import Deployment, tls_client_context
from tests.support import FINAL_STATES, WAIT_TIMEOUT, delegate, wait_for, wait_for_job_state
from wmproxy.client.inspection import INSPECTION_NS, InspectionClient
from wmproxy.config import load_settings
from wmproxy.inspection_http import BUSY_RETRY_AFTER
from wmproxy.services.inspection import AGENT_PATH, agent_token

pytestmark = pytest.mark.integration

SETTINGS = {
    "WMPROXY_INSPECTION_MODE": "allow-list",
    "WMPROXY_INSPECTION_ALLOWED_COMMANDS": "ps",
    # The job's agent never starts, so an inspection request stays pending (and the result wait holds).
    "WMPROXY_INSPECTION_AGENT_DELAY": "3600",
    "WMPROXY_INSPECTION_PICKUP_TIMEOUT": "3600",
    # Below the hold (30 s): a held request not answered when the stop begins is cut off.
    "WMPROXY_SERVICE_GRACEFUL_TIMEOUT": "15",
}
HOLD = 30  # seconds a held call asks for (the service's longest)


def result_request(request_id: str, timeout: int) -> bytes:
    return (f'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>'
            f'<i:getInspectionResult xmlns:i="{INSPECTION_NS}"><requestId>{request_id}</requestId>'
            f"<timeout>{timeout}</timeout></i:getInspectionResult></e:Body></e:Envelope>").encode()


def inspection_state(reply: bytes) -> tuple[str, str]:
    """(requestId, state) of a getInspectionResult reply."""
    root = etree.fromstring(reply)
    return root.findtext(".//requestId") or "", root.findtext(".//state") or ""


def queues(local_port: int, remote_port: int) -> tuple[int, int] | None:
    """(tx_queue, rx_queue) of the established TCP connection from ``local_port`` to
    ``remote_port`` on this host (/proc/net/tcp and tcp6), None if there is none."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, tx_rx = fields[1], fields[2], fields[3], fields[4]
            if (state == "01" and int(local.rsplit(":", 1)[1], 16) == local_port
                    and int(remote.rsplit(":", 1)[1], 16) == remote_port):
                tx, rx = tx_rx.split(":")
                return int(tx, 16), int(rx, 16)
    return None


def read_by_the_service(server_port: int, client_port: int) -> bool:
    """Every byte the client sent was taken by the service process: the service's kernel
    acknowledged them all (the client's send queue is empty) and holds none unread (the
    service's receive queue is empty)."""
    client, server = queues(client_port, server_port), queues(server_port, client_port)
    return client is not None and server is not None and client[0] == 0 and server[1] == 0


@pytest.fixture(scope="module")
def deployment(pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The module's own deployment (on its fresh database): each test stops its service, and
    starts it again at its end."""
    with standard_deployment(pki, database_url, tmp_path_factory.mktemp("state"), extra_env=SETTINGS) as dep:
        yield dep


def service_master(deployment: Deployment) -> subprocess.Popen[bytes] | None:
    """The running gunicorn master of ``deployment``, None once it has exited."""
    return next((p for p in deployment.processes if p.poll() is None
                 and any("wmproxy-server" in str(a) or "wmproxy.serve" in str(a) for a in p.args)), None)


@pytest.mark.parametrize("held", ["result-wait", "agent-poll"])
def test_a_held_call_is_answered_when_the_service_stops(deployment: Deployment, pki: Pki, tmp_path: Path,
                                                        held: str) -> None:
    proxy = pki.users["alice"].proxy
    ref = reference_client(deployment.endpoint, proxy, pki.ca_dir)
    delegate(ref, proxy, "stop")
    release = deployment.scratch(tmp_path) / "go"
    job_id = ref.wmproxy.jobSubmit(
        f'[ Executable = "/bin/sh"; Arguments = "-c \'while [ ! -e {release} ]; do sleep 0.2; done\'"; ]',
        "stop").id
    settings = load_settings(deployment.config)
    engine = sa.create_engine(settings.database.url)
    conn = http.client.HTTPSConnection("localhost", deployment.port, context=tls_client_context(pki.ca_dir, proxy),
                                       timeout=WAIT_TIMEOUT)
    stopped: subprocess.Popen[bytes] | None = None
    try:
        wait_for_job_state(lambda: ref.wmproxy.getJobStatus(job_id).status, ("Running",), job=job_id)
        request_id = ""
        if held == "result-wait":
            inspection = InspectionClient(deployment.endpoint, str(proxy), str(pki.ca_dir))
            request_id = inspection.inspect_job(job_id, ["ps"])
            assert inspection.get_result(request_id, wait=0).state == "pending"
            conn.request("POST", "/glite_wms_wmproxy_server", result_request(request_id, HOLD),
                         {"Content-Type": "text/xml; charset=utf-8"})
        else:  # the job's agent, with the job's secret and its owner's proxy; nothing is asked of it
            conn.request("GET", f"{AGENT_PATH}/next?job={urllib.parse.quote(job_id, safe='')}&wait={HOLD}",
                         headers={"X-WMProxy-Inspection-Token": agent_token(settings, job_id, attempt=0)})
        client_port = conn.sock.getsockname()[1]
        # Taken by a request thread (the handshake reads its own records only): a stop now lets it finish.
        wait_for(lambda: read_by_the_service(deployment.port, client_port),
                 what="the service to read the held request", interval=0.05)
        master = stopped = service_master(deployment)
        assert master is not None
        master.send_signal(signal.SIGTERM)
        reply = conn.getresponse()  # without the stop hook: RemoteDisconnected when the worker is killed
        body = reply.read()
        if held == "result-wait":
            assert reply.status == 200
            assert inspection_state(body) == (request_id, "pending")
        else:
            # No work: the agent asks again after a pause (of the restarted service).
            assert (reply.status, body, reply.getheader("Retry-After")) == (204, b"", str(BUSY_RETRY_AFTER))
        assert master.wait(timeout=WAIT_TIMEOUT) == 0
    finally:
        conn.close()
        release.write_text("")

        def state() -> str:
            with engine.connect() as db:
                return str(db.execute(sa.text("select state from jobs where id = :j"), {"j": job_id}).scalar_one())

        wait_for(state, lambda s: s in FINAL_STATES, what=f"{job_id} to end")  # nothing is left running
        engine.dispose()
        if stopped is not None:  # the service again, for the module's next test
            stopped.wait(timeout=WAIT_TIMEOUT)
            deployment.start_gunicorn()
