"""VOMS refresh after a MyProxy renewal (anchors.md §2.2, row 10) against the real peers: Debian's
``myproxy-server`` holds alice's renewable credential (no VOMS attributes, as ``myproxy-init``
stores it), Debian's ``voms`` serves VO atlas (alice: ``/atlas``, ``/atlas/uk``,
``/atlas/Role=production``). Alice delegated a 20-minute VOMS proxy made by the real
``voms-proxy-init`` (due: less than the 35 min threshold left) that a running job uses; one pass
of the renewal worker renews it from MyProxy and asks the VOMS server, with the renewed proxy,
for the delegated FQANs again.

Before, the renewed proxy carried no AC: a job's storage access by VOMS role failed after its
first renewal.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import astuple
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import Pki
from tests.peers.myproxy_server import (  # noqa: F401  (fixture import)
    MyProxyServer,
    myproxy_server_factory,
    store_renewable_credential,
)
from tests.peers.voms_server import (  # noqa: F401  (fixture import)
    VomsServer,
    exchange,
    legacy_request,
    parse_legacy_answer,
    voms_proxy_init,
    voms_server_factory,
)
from tests.support import build_runtime, close_runtime
from tests.unit.renewal.pass_support import PassResult, after_pass, alices_myproxy, renew_running_job, stage_running_job
from wmproxy.renewal.worker import RenewalWorker
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.voms import VOMS_AC_OID, verified_fqans, voms_attributes
from wmproxy.services import renewal as renewal_service
from wmproxy.services.runtime import Runtime

pytestmark = pytest.mark.integration

FQANS = ("/atlas/Role=production/Capability=NULL", "/atlas/Role=NULL/Capability=NULL",
         "/atlas/uk/Role=NULL/Capability=NULL")


@pytest.fixture(scope="module")
def myproxy(myproxy_server_factory, pki: Pki) -> MyProxyServer:  # noqa: F811
    """A myproxy-server holding alice's plain credential, renewable by the service's host credential."""
    return alices_myproxy(myproxy_server_factory, pki)


@pytest.fixture(scope="module")
def voms(voms_server_factory, pki: Pki) -> VomsServer:  # noqa: F811
    server = voms_server_factory()
    server.add_user(pki.users["alice"].dn, pki.ca.dn, groups=["/atlas/uk"], roles=[("/atlas", "production")])
    return server


@pytest.fixture
def runtime(tmp_path: Path, pki: Pki, voms: VomsServer, myproxy: MyProxyServer) -> Iterator[Runtime]:
    """A runtime trusting the VOMS server (its vomsdir), the MyProxy server (named: a wildcard
    reaches no loopback address), and a site vomses file at ``tmp_path / "vomses"`` (absent
    unless a test writes it)."""
    rt = build_runtime(tmp_path / "rt", pki, security={"vomsdir": str(voms.vomsdir)},
                       renewal={"myproxy_allowed_servers": f"{myproxy.host}:{myproxy.port}",
                                "vomses": str(tmp_path / "vomses")})
    yield rt
    close_runtime(rt)


def voms_proxy(pki: Pki, voms: VomsServer, out: Path) -> bytes:
    """Alice's 20-minute VOMS proxy for /atlas/Role=production, by the real voms-proxy-init."""
    home = pki.root / pki.users["alice"].name
    done = voms_proxy_init(voms, out, fqan="/atlas/Role=production", cert=home / "usercert.pem",
                           key=home / "userkey.pem", lifetime="0:20")
    assert done.returncode == 0, done.stdout + done.stderr
    return out.read_bytes()


def renew_once(rt: Runtime, pki: Pki, myproxy: MyProxyServer, delegated: bytes, vomsdir: Path) -> PassResult:
    """Store ``delegated`` as alice's credential (with its verified FQANs), used by a running job
    registered with the primary one; one worker pass."""
    fqans = verified_fqans(load_pem_chain(delegated), vomsdir=vomsdir, ca_dir=pki.ca_dir)
    assert fqans == FQANS
    return renew_running_job(rt, pki.users["alice"].dn, delegated, f"{myproxy.host}:{myproxy.port}", fqans=fqans,
                             jdl_registered=f'[ VOMS_FQAN = "{FQANS[0]}"; ]')


def test_the_renewed_proxy_carries_new_acs_of_the_delegated_fqans(
        runtime: Runtime, pki: Pki, myproxy: MyProxyServer, voms: VomsServer, tmp_path: Path) -> None:
    delegated = voms_proxy(pki, voms, tmp_path / "x509up")
    (old_ac,) = voms_attributes(load_pem_chain(delegated))
    stored, copy, notes = astuple(renew_once(runtime, pki, myproxy, delegated, voms.vomsdir))
    chain = load_pem_chain(stored)
    assert verified_fqans(chain, vomsdir=voms.vomsdir, ca_dir=pki.ca_dir) == FQANS
    (new_ac,) = voms_attributes(chain)
    assert new_ac.uri == voms.uri and new_ac.issuer_dn == voms.dn
    # a new AC of about 12 h (the old one ended with the 20-minute proxy)
    assert new_ac.not_after - new_ac.not_before == dt.timedelta(hours=12)
    assert new_ac.not_after > old_ac.not_after + dt.timedelta(hours=6)
    assert chain[0].not_valid_after_utc > old_ac.not_after  # MyProxy's renewed end, not the AC's
    assert copy == stored
    assert "VOMS" not in notes


def test_a_role_the_vo_took_back_leaves_the_proxy_from_myproxy_with_the_reason(
        runtime: Runtime, pki: Pki, myproxy: MyProxyServer, voms: VomsServer, tmp_path: Path,
        voms_server_factory: Callable[..., VomsServer]) -> None:  # noqa: F811
    # every server of these tests has the same DN and CA, so voms.vomsdir's .lsc trusts them all;
    # the server named in the AC is down: the site's vomses one is asked, and refuses the role
    gone, delegated = gone_server(pki, voms_server_factory, tmp_path / "x509up")
    other = voms_server_factory()
    other.add_user(pki.users["alice"].dn, pki.ca.dn, groups=["/atlas/uk"])  # no production role
    (tmp_path / "vomses").write_text(f'"atlas" "localhost" "{other.port}" "{other.dn}" "atlas"\n')
    stored, copy, notes = astuple(renew_once(runtime, pki, myproxy, delegated, voms.vomsdir))
    assert verified_fqans(load_pem_chain(stored), vomsdir=voms.vomsdir, ca_dir=pki.ca_dir) == ()
    assert voms_attributes(load_pem_chain(stored)) == []
    assert copy == stored
    assert f"localhost:{gone.port}: cannot connect" in notes
    assert f"localhost:{other.port}: refused: 1001 atlas: Unable to satisfy B/atlas:production request!" in notes
    assert "VOMS attributes not refreshed: no VOMS server of atlas granted" in notes


class HostileVoms:
    """A TLS server with the real server's credential (so the expected subject) that answers
    every request with ``answer`` (a VOMS answer, or nothing: it holds the connection open
    until stopped). ``connections``: how many clients it accepted."""

    def __init__(self, voms: VomsServer, answer: bytes | None) -> None:
        self.answer, self.connections, self.stopped = answer, 0, threading.Event()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(voms.cert, voms.key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.line = f'"atlas" "127.0.0.1" "{self.port}" "{voms.dn}" "atlas"\n'
        threading.Thread(target=self._serve, args=(context,), daemon=True).start()

    def _serve(self, context: ssl.SSLContext) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(context, conn), daemon=True).start()

    def _one(self, context: ssl.SSLContext, conn: socket.socket) -> None:
        with conn:
            try:
                tls = context.wrap_socket(conn, server_side=True)
                tls.recv(16384)
                if self.answer is None:
                    self.stopped.wait()
                else:
                    tls.sendall(self.answer)
                tls.close()
            except OSError:
                pass

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


def vomsans(ac: bytes) -> bytes:
    return (b'<?xml version="1.0" encoding = "US-ASCII"?><vomsans><version>3</version><ac>'
            + base64.encodebytes(ac) + b"</ac></vomsans>")


def bobs_ac(pki: Pki, voms: VomsServer) -> bytes:
    """A real AC of the VO for bob (from the real server, legacy protocol)."""
    voms.add_user(pki.users["bob"].dn, pki.ca.dn, roles=[("/atlas", "production")])
    answer = parse_legacy_answer(exchange(voms, pki.users["bob"].proxy, legacy_request(["B/atlas:production"], 3600)))
    assert answer.ac is not None, answer.items
    return answer.ac


@pytest.fixture
def hostile(voms: VomsServer) -> Iterator[Callable[[bytes | None], HostileVoms]]:
    servers: list[HostileVoms] = []

    def start(answer: bytes | None) -> HostileVoms:
        servers.append(HostileVoms(voms, answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def gone_server(pki: Pki, start: Callable[..., VomsServer], out: Path) -> tuple[VomsServer, bytes]:
    """A VOMS server that made alice's delegated proxy, then stopped: the refresh goes to vomses."""
    gone = start()
    gone.add_user(pki.users["alice"].dn, pki.ca.dn, groups=["/atlas/uk"], roles=[("/atlas", "production")])
    delegated = voms_proxy(pki, gone, out)
    gone.stop()
    return gone, delegated


def test_a_server_answering_an_unusable_ac_is_passed_over_for_the_next(
        runtime: Runtime, pki: Pki, myproxy: MyProxyServer, voms: VomsServer, tmp_path: Path,
        voms_server_factory: Callable[..., VomsServer], hostile: Callable[[bytes | None], HostileVoms]) -> None:  # noqa: F811
    _, delegated = gone_server(pki, voms_server_factory, tmp_path / "x509up")
    wrong = hostile(vomsans(bobs_ac(pki, voms)))  # a real AC, of another holder
    (tmp_path / "vomses").write_text(wrong.line + f'"atlas" "localhost" "{voms.port}" "{voms.dn}" "atlas"\n')
    stored, _, notes = astuple(renew_once(runtime, pki, myproxy, delegated, voms.vomsdir))
    assert verified_fqans(load_pem_chain(stored), vomsdir=voms.vomsdir, ca_dir=pki.ca_dir) == FQANS
    assert wrong.connections == 1 and not notes


def test_a_server_that_never_answers_is_asked_once_per_cycle(
        runtime: Runtime, pki: Pki, myproxy: MyProxyServer, voms: VomsServer, tmp_path: Path,
        voms_server_factory: Callable[..., VomsServer], hostile: Callable[[bytes | None], HostileVoms]) -> None:  # noqa: F811
    _, delegated = gone_server(pki, voms_server_factory, tmp_path / "x509up")
    silent = hostile(None)
    (tmp_path / "vomses").write_text(silent.line + f'"atlas" "localhost" "{voms.port}" "{voms.dn}" "atlas"\n')
    rt = dataclasses.replace(runtime, settings=dataclasses.replace(runtime.settings, renewal=dataclasses.replace(
        runtime.settings.renewal, timeout=3.0)))
    fqans = verified_fqans(load_pem_chain(delegated), vomsdir=voms.vomsdir, ca_dir=pki.ca_dir)
    staged = [stage_running_job(rt, pki.users["alice"].dn, delegated, f"{myproxy.host}:{myproxy.port}",
                                fqans=fqans, jdl_registered=f'[ VOMS_FQAN = "{FQANS[0]}"; ]') for _ in range(3)]
    report = RenewalWorker(rt, threads=1).step()
    assert (report.renewed, report.pushed) == (3, 3), report
    for credential in staged:
        after = after_pass(rt, credential)
        assert verified_fqans(load_pem_chain(after.stored), vomsdir=voms.vomsdir, ca_dir=pki.ca_dir) == FQANS
    assert silent.connections == 1  # the first credential found it silent; the others did not ask it


def test_an_internal_error_on_one_credential_leaves_the_others_renewed(
        runtime: Runtime, pki: Pki, myproxy: MyProxyServer, voms: VomsServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    delegated = voms_proxy(pki, voms, tmp_path / "x509up")
    fqans = verified_fqans(load_pem_chain(delegated), vomsdir=voms.vomsdir, ca_dir=pki.ca_dir)
    server = f"{myproxy.host}:{myproxy.port}"
    with_voms = stage_running_job(runtime, pki.users["alice"].dn, delegated, server, fqans=fqans,
                                  jdl_registered=f'[ VOMS_FQAN = "{FQANS[0]}"; ]')
    plain = stage_running_job(runtime, pki.users["alice"].dn, pki.proxy("alice", 20 * 60).read_bytes(), server)

    def defect(*args: object) -> None:
        raise KeyError("a defect")

    monkeypatch.setattr(renewal_service, "settle_voms_refresh", defect)  # met only by the VOMS credential
    report = RenewalWorker(runtime, threads=1).step()
    assert (report.attempted, report.renewed) == (2, 1), report
    assert after_pass(runtime, plain).copy  # renewed and pushed
    with runtime.uow() as uow:
        row = uow.delegations.get(with_voms.owner_dn, with_voms.delegation_id)
        assert row is not None and row.not_after == with_voms.end
    assert f"renewal of proxy {with_voms.delegation_id} of {with_voms.owner_dn} failed on an internal error" in (
        caplog.text)


def test_an_ac_ending_before_the_proxy_is_refreshed_then(
        runtime: Runtime, pki: Pki, myproxy: MyProxyServer, voms: VomsServer, tmp_path: Path,
        voms_server_factory: Callable[..., VomsServer]) -> None:  # noqa: F811
    # a server granting ACs of 30 min at most: a 24 h VOMS proxy, whose AC ends within the 35 min
    # threshold while its X.509 part has hours left (the shortest end drives the schedule)
    short = voms_server_factory(max_lifetime=1800)
    short.add_user(pki.users["alice"].dn, pki.ca.dn, groups=["/atlas/uk"], roles=[("/atlas", "production")])
    home = pki.root / pki.users["alice"].name
    done = voms_proxy_init(short, tmp_path / "x509up", fqan="/atlas/Role=production", cert=home / "usercert.pem",
                           key=home / "userkey.pem", lifetime="24:00")
    assert done.returncode == 0, done.stdout + done.stderr
    delegated = (tmp_path / "x509up").read_bytes()
    (old_ac,) = voms_attributes(load_pem_chain(delegated))
    assert old_ac.not_after < min(c.not_valid_after_utc for c in load_pem_chain(delegated)) - dt.timedelta(hours=20)
    fqans = verified_fqans(load_pem_chain(delegated), vomsdir=voms.vomsdir, ca_dir=pki.ca_dir)
    staged = stage_running_job(runtime, pki.users["alice"].dn, delegated, f"{myproxy.host}:{myproxy.port}",
                               fqans=fqans, jdl_registered=f'[ VOMS_FQAN = "{FQANS[0]}"; ]')
    report = RenewalWorker(runtime, threads=1).step()
    assert (report.renewed, report.pushed) == (1, 1), report
    with runtime.uow() as uow:
        row = uow.delegations.get(staged.owner_dn, staged.delegation_id)
        assert row is not None
        stored = runtime.sealer.open(row.sealed_proxy)
    assert verified_fqans(load_pem_chain(stored), vomsdir=voms.vomsdir, ca_dir=pki.ca_dir) == FQANS
    (new_ac,) = voms_attributes(load_pem_chain(stored))
    assert new_ac.not_after >= old_ac.not_after  # the same second when both were made within one
    assert ac_extension(stored) != ac_extension(delegated)  # a new AC (VOMS serials are random)


def ac_extension(pem: bytes) -> bytes:
    """The DER value of the VOMS AC extension of the proxy's leaf-most certificate carrying one."""
    ext = next(e for c in load_pem_chain(pem) for e in c.extensions if e.oid == VOMS_AC_OID)
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    return ext.value.value
