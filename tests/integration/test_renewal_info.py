"""getProxyRenewalInfo (the project's extension operation) and ``wmproxy info -p`` show the
MyProxy renewal of a job's proxy, against a real myproxy-server (issue 4, "visible state").

One deployment per database backend (gunicorn over TLS, an execution worker and a
``wmproxy-renewal`` worker), Debian's myproxy-server on loopback, short proxies (45 s), a
30 s renewal threshold, a 1 s cycle and a 15 s MyProxy timeout (no scenario needs it to fire).
The scenarios, all set up at once by the ``world`` fixture:

* ``renew``   (server ``ok``): renewed after ~15 s → lastResult renewed, a later proxyEndTime;
* ``waiting`` (server ``ok``, a 10 min proxy): registered, not due, never tried;
* ``down``    (server stopped): the attempt fails → lastResult unreachable with the reason;
* ``none``    (no MyProxyServer, no default): registered false.

The calls go through a zeep client built from the project's WSDL (the reference one has
no such operation), with the reply XML kept for assertions; the CLI runs as a user runs it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zeep
from lxml import etree
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport

from tests.conftest import Pki
from tests.integration.isolated import standard_deployment
from tests.integration.refclient import (
    D1,
    D2,
    WMP,
    ReferenceClient,
    assert_unqualified_children,
    reference_client,
    session_for,
)
from tests.integration.renewal_support import sleeper, start_renewal_worker
from tests.integration.service import BIN, Deployment
from tests.peers.myproxy_server import (  # noqa: F401  (fixture import)
    MyProxyServer,
    myproxy_server_factory,
    store_renewable_credential,
)
from tests.support import assert_fault, delegate, wait_for
from wmproxy.client.wsdl import wsdl_path
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.dn import slash_dn

pytestmark = pytest.mark.integration

LIFETIME = 45  # seconds of the delegated proxies: renewal due ~15 s after delegation
LONG_LIFETIME = 600  # "waiting": not due during the test
THRESHOLD = 30
ASKED = 100
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
FIELDS = ["myProxyServer", "registered", "lastAttempt", "lastResult", "lastError", "renewals", "proxyEndTime"]
UNKNOWN_JOB = "https://localhost:9000/AAAAAAAAAAAAAAAAAAAAAA"


def our_client(endpoint: str, proxy: Path, ca_dir: Path) -> ReferenceClient:
    """A zeep client of the project's WSDL (it has getProxyRenewalInfo), reply XML kept."""
    history = HistoryPlugin()
    session = session_for(proxy, ca_dir)
    client = zeep.Client(str(wsdl_path()), transport=Transport(session=session), plugins=[history])
    return ReferenceClient(
        client=client, history=history,
        wmproxy=client.create_service(f"{{{WMP}}}WMProxy", endpoint),
        deleg1=client.create_service(f"{{{WMP}}}Delegation1SoapBinding", endpoint),
        deleg2=client.create_service(f"{{{WMP}}}DelegationSoapBinding", endpoint),
        session=session,
    )


@dataclass
class World:
    dep: Deployment
    alice: ReferenceClient  # the project's WSDL
    alice_ref: ReferenceClient  # the reference WSDL
    bob: ReferenceClient
    alice_proxy: Path
    servers: dict[str, MyProxyServer]
    jobs: dict[str, str] = field(default_factory=dict)  # delegation id -> job id
    delegated_end: dict[str, int] = field(default_factory=dict)  # delegation id -> epoch
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))  # before the first delegation

    def renewal(self, deleg: str) -> etree._Element:
        """getProxyRenewalInfo of the scenario's job: the ``<renewal>`` element of the reply."""
        self.alice.wmproxy.getProxyRenewalInfo(self.jobs[deleg])
        reply = self.alice.last_reply
        assert etree.QName(reply) == etree.QName(WMP, "getProxyRenewalInfoResponse")
        assert [c.tag for c in reply] == ["renewal"]
        assert_unqualified_children(reply)
        (renewal,) = reply
        assert [c.tag for c in renewal] == FIELDS
        return renewal

    def cli(self, *args: str) -> tuple[int, str, str]:
        env = dict(self.dep.env, GLITE_WMS_WMPROXY_ENDPOINT=self.dep.endpoint, X509_USER_PROXY=str(self.alice_proxy))
        done = subprocess.run([str(BIN / "wmproxy"), *args], env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        return done.returncode, done.stdout, done.stderr


def nil(el: etree._Element, name: str) -> bool:
    child = el.find(name)
    return child is not None and child.get(XSI_NIL) == "true" and not (child.text or "").strip()


@pytest.fixture(scope="module")
def world(pki: Pki, database_url: str, myproxy_server_factory, tmp_path_factory) -> Iterator[World]:  # noqa: F811
    host_dn = slash_dn(load_pem_chain(pki.host_cert.read_bytes())[0].subject)
    alice_long = pki.users["alice"].proxy
    servers = {"ok": myproxy_server_factory([host_dn]), "down": myproxy_server_factory([host_dn])}
    for server in servers.values():
        store_renewable_credential(server, alice_long, host_dn, lifetime_hours=2, proxy_lifetime_hours=1)
    servers["down"].stop()

    extra_env = {"WMPROXY_SECURITY_MIN_PROXY_LIFETIME": "10", "WMPROXY_RENEWAL_CYCLE": "1",
                     "WMPROXY_RENEWAL_THRESHOLD": str(THRESHOLD), "WMPROXY_RENEWAL_LIFETIME": str(ASKED),
                     "WMPROXY_RENEWAL_TIMEOUT": "15",
                     "WMPROXY_RENEWAL_MYPROXY_ALLOWED_SERVERS": ", ".join(f"localhost:{s.port}"
                                                                          for s in servers.values())}
    world = None
    with contextlib.ExitStack() as stack:
        dep = stack.enter_context(standard_deployment(pki, database_url, tmp_path_factory.mktemp("state"), extra_env))
        stack.callback(lambda: world is not None and cancel_all(world))
        start_renewal_worker(dep, "renewal-1")
        alice_ref = reference_client(dep.endpoint, alice_long, pki.ca_dir)
        world = World(dep, our_client(dep.endpoint, alice_long, pki.ca_dir), alice_ref,
                      reference_client(dep.endpoint, pki.users["bob"].proxy, pki.ca_dir), alice_long, servers)
        at = lambda name: f"localhost:{servers[name].port}"  # noqa: E731
        for deleg, server, lifetime in [("renew", at("ok"), LIFETIME), ("waiting", at("ok"), LONG_LIFETIME),
                                        ("down", at("down"), LIFETIME), ("none", None, LIFETIME)]:
            delegate(alice_ref, alice_long, deleg, lifetime=lifetime)
            world.delegated_end[deleg] = int(alice_ref.wmproxy.getDelegatedProxyInfo(deleg).EndTime)
            world.jobs[deleg] = alice_ref.wmproxy.jobSubmit(sleeper(120, server), deleg).id
        yield world


def cancel_all(world: World) -> None:
    for job_id in world.jobs.values():
        with contextlib.suppress(zeep.exceptions.Fault):  # already ended (aborted at expiry)
            world.alice_ref.wmproxy.jobCancel(job_id)


class TestGetProxyRenewalInfo:
    def test_registered_job_not_yet_due_was_never_tried(self, world: World) -> None:
        renewal = world.renewal("waiting")
        assert renewal.findtext("myProxyServer") == f"localhost:{world.servers['ok'].port}"
        assert renewal.findtext("registered") == "true"
        assert nil(renewal, "lastAttempt") and nil(renewal, "lastResult") and nil(renewal, "lastError")
        assert renewal.findtext("renewals") == "0"
        assert int(renewal.findtext("proxyEndTime")) == world.delegated_end["waiting"]
        rc, out, err = world.cli("info", "-p", world.jobs["waiting"])
        assert rc == 0, err
        assert f"Proxy renewal: localhost:{world.servers['ok'].port}\nLast renewal: never\n" in out

    def test_renewed_proxy_shows_the_result_and_the_later_end(self, world: World) -> None:
        job = world.jobs["renew"]
        renewal = wait_for(lambda: world.renewal("renew"), lambda r: r.findtext("renewals") != "0",
                           what="proxy renew to be renewed", interval=0.5)
        assert renewal.findtext("registered") == "true"
        assert renewal.findtext("lastResult") == "renewed"
        assert nil(renewal, "lastError")
        assert renewal.findtext("renewals") == "1"
        attempt = dt.datetime.fromisoformat(renewal.findtext("lastAttempt").replace("Z", "+00:00"))
        assert attempt.utcoffset() == dt.timedelta(0)
        # made after the fixture began delegating and before this call (whole seconds shown)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        assert world.started.replace(microsecond=0) <= attempt <= later, (world.started, attempt, later)
        end = int(renewal.findtext("proxyEndTime"))
        # myproxy-server hands out at least 5 minutes, whatever is asked: far beyond the 45 s
        assert end > world.delegated_end["renew"] + 50
        # the same end as the reference operation shows
        assert int(world.alice_ref.wmproxy.getJobProxyInfo(job).EndTime) == end

        rc, out, err = world.cli("info", "-p", job)
        assert rc == 0, err
        assert f"Proxy renewal: localhost:{world.servers['ok'].port}\n" in out
        stamp = attempt.strftime("%Y-%m-%d %H:%M:%S")
        assert f"Last renewal: {stamp} UTC (renewed)\n" in out, out
        assert re.search(r"^Timeleft    : .+\n\nProxy renewal: ", out, re.M), out
        assert "Renewal error" not in out
        rc, out, err = world.cli("info", "-p", "--json", job)
        assert rc == 0, err
        data = json.loads(out)
        assert data["proxy"]["end_time"] == end
        assert data["renewal"] == {
            "myproxy_server": f"localhost:{world.servers['ok'].port}", "registered": True,
            "last_attempt": int(attempt.timestamp()), "last_result": "renewed", "last_error": None, "renewals": 1,
            "proxy_end_time": end,
        }

    def test_unreachable_server_shows_the_failure(self, world: World) -> None:
        renewal = wait_for(lambda: world.renewal("down"), lambda r: not nil(r, "lastAttempt"),
                           what="a renewal attempt of proxy down", interval=0.5)
        assert renewal.findtext("lastResult") == "unreachable"
        assert "cannot connect" in renewal.findtext("lastError")
        assert renewal.findtext("renewals") == "0"
        assert int(renewal.findtext("proxyEndTime")) == world.delegated_end["down"]
        rc, out, err = world.cli("info", "-p", world.jobs["down"])
        assert rc == 0, err
        assert re.search(r"^Last renewal: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(unreachable\)\n"
                         r"Renewal error: .*cannot connect", out, re.M), out

    def test_job_without_myproxy_server_is_not_registered(self, world: World) -> None:
        renewal = world.renewal("none")
        assert renewal.findtext("registered") == "false"
        assert nil(renewal, "myProxyServer") and nil(renewal, "lastAttempt") and nil(renewal, "lastResult")
        assert renewal.findtext("renewals") == "0"
        assert int(renewal.findtext("proxyEndTime")) == world.delegated_end["none"]
        rc, out, err = world.cli("info", "-p", world.jobs["none"])
        assert rc == 0, err
        assert "Proxy renewal: not registered\n" in out and "Last renewal" not in out
        rc, out, err = world.cli("info", "-p", "--json", world.jobs["none"])
        assert json.loads(out)["renewal"]["registered"] is False

    def test_faults_are_those_of_get_job_proxy_info(self, world: World, pki: Pki) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            world.alice.wmproxy.getProxyRenewalInfo(UNKNOWN_JOB)
        assert_fault(err, "JobUnknownFault", "getProxyRenewalInfo", "1218")
        with pytest.raises(zeep.exceptions.Fault) as err:
            world.alice.wmproxy.getProxyRenewalInfo("")
        assert_fault(err, "InvalidArgumentFault", "getProxyRenewalInfo", "1225", "Provided Job Id not valid")
        bob = our_client(world.dep.endpoint, pki.users["bob"].proxy, pki.ca_dir)
        with pytest.raises(zeep.exceptions.Fault) as err:
            bob.wmproxy.getProxyRenewalInfo(world.jobs["renew"])
        assert_fault(err, "AuthorizationFault", "getProxyRenewalInfo")
        # the CLI: the unknown job fails on getJobProxyInfo first, in one line
        rc, _, err_text = world.cli("info", "-p", UNKNOWN_JOB)
        assert rc == 1 and err_text.startswith("Error - ") and len(err_text.splitlines()) == 1

    def test_the_operation_is_served_in_the_wmproxy_namespace_only(self, world: World) -> None:
        for ns in (D1, D2):
            envelope = (f'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>'
                        f'<n:getProxyRenewalInfo xmlns:n="{ns}"><jobId>{world.jobs["renew"]}</jobId>'
                        "</n:getProxyRenewalInfo></e:Body></e:Envelope>")
            reply = world.alice.session.post(world.dep.endpoint, data=envelope.encode(),
                                             headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=30)
            assert reply.status_code == 500 and b"getProxyRenewalInfoResponse" not in reply.content
