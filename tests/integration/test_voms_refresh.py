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

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import astuple
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.peers.myproxy_server import (  # noqa: F401  (fixture import)
    MyProxyServer,
    myproxy_server_factory,
    store_renewable_credential,
)
from tests.peers.voms_server import VomsServer, voms_proxy_init, voms_server_factory  # noqa: F401
from tests.support import build_runtime, close_runtime
from tests.unit.renewal.pass_support import PassResult, alices_myproxy, renew_running_job
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.voms import verified_fqans, voms_attributes
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
def runtime(tmp_path: Path, pki: Pki, voms: VomsServer) -> Iterator[Runtime]:
    """A runtime trusting the VOMS server (its vomsdir), any MyProxy server, and a site vomses
    file at ``tmp_path / "vomses"`` (absent unless a test writes it)."""
    rt = build_runtime(tmp_path / "rt", pki, security={"vomsdir": str(voms.vomsdir)},
                       renewal={"myproxy_allowed_servers": "*", "vomses": str(tmp_path / "vomses")})
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
    # every server of these tests has the same DN and CA, so voms.vomsdir's .lsc trusts them all
    gone = voms_server_factory()
    gone.add_user(pki.users["alice"].dn, pki.ca.dn, groups=["/atlas/uk"], roles=[("/atlas", "production")])
    delegated = voms_proxy(pki, gone, tmp_path / "x509up")
    gone.stop()  # the server named in the AC is down: the site's vomses one is asked, and refuses the role
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
