"""The real VOMS server as a test peer (``tests/peers/voms_server.py``, ``docs/voms.md``).

One Debian ``voms`` (2.1.0~rc3, MySQL plugin on MariaDB) serves VO atlas for the module: alice
is in ``/atlas`` and ``/atlas/uk`` and holds ``/atlas/Role=production``, bob is in ``/atlas``
only, mallory is unknown. The tests pin what the VOMS refresh after a MyProxy renewal (anchors
row 10) will meet: the real ``voms-proxy-init`` gets an AC and ``voms-proxy-info`` shows it; the
service's own verifier believes that AC with the requested role first; a stranger is refused;
the legacy XML protocol answers a Python ``ssl`` client that presents an RFC 3820 proxy (or a
proxy of one); the AC's lifetime, URI, holder and certseq; the errors; and that this build's
REST interface answers nothing.
"""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from pyasn1.codec.der import decoder
from pyasn1_modules import rfc5755

from tests.conftest import Pki
from tests.peers.voms_server import (
    VomsServer,
    exchange,
    legacy_request,
    parse_legacy_answer,
    voms_proxy_init,
    voms_server_factory,  # noqa: F401 - the fixture
)
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.proxy import credential_pem, load_credential, make_proxy
from wmproxy.security.voms import VOMS_CERTSEQ_OID, verified_fqans, voms_attributes

pytestmark = pytest.mark.integration

ROLE_FIRST = ("/atlas/Role=production/Capability=NULL", "/atlas/Role=NULL/Capability=NULL",
              "/atlas/uk/Role=NULL/Capability=NULL")
TWELVE_HOURS = 12 * 3600


@pytest.fixture(scope="module")
def voms(voms_server_factory, pki: Pki) -> VomsServer:  # noqa: F811
    server = voms_server_factory()
    server.add_user(pki.users["alice"].dn, pki.ca.dn, groups=["/atlas/uk"], roles=[("/atlas", "production")])
    server.add_user(pki.users["bob"].dn, pki.ca.dn)
    return server


def user_files(pki: Pki, user: str) -> tuple[Path, Path]:
    home = pki.root / pki.users[user].name
    return home / "usercert.pem", home / "userkey.pem"


def ac_info(der: bytes) -> rfc5755.AttributeCertificateInfo:
    ac, rest = decoder.decode(der, asn1Spec=rfc5755.AttributeCertificate())
    assert rest == b""
    return ac["acinfo"]


def fqans_and_authority(info: rfc5755.AttributeCertificateInfo) -> tuple[str, list[str]]:
    (attribute,) = info["attributes"]
    assert str(attribute["type"]) == "1.3.6.1.4.1.8005.100.100.4"
    value, _ = decoder.decode(attribute["values"][0], asn1Spec=rfc5755.IetfAttrSyntax())
    return (str(value["policyAuthority"][0]["uniformResourceIdentifier"]),
            [bytes(v["octets"]).decode() for v in value["values"]])


def lifetime(info: rfc5755.AttributeCertificateInfo) -> timedelta:
    period = info["attrCertValidityPeriod"]
    return period["notAfterTime"].asDateTime - period["notBeforeTime"].asDateTime


def test_voms_proxy_init_gets_an_ac_and_voms_proxy_info_shows_it(voms: VomsServer, pki: Pki, tmp_path: Path) -> None:
    cert, key = user_files(pki, "alice")
    out = tmp_path / "voms-proxy.pem"
    result = voms_proxy_init(voms, out, fqan="/atlas/Role=production", cert=cert, key=key)
    assert result.returncode == 0, result.stdout + result.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("X509_", "VOMS"))}
    info = subprocess.run(["voms-proxy-info", "-all", "-file", str(out)], env={**env, **voms.env()},
                          capture_output=True, text=True, timeout=60, check=True).stdout
    attributes = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("attribute :")]
    assert attributes == list(ROLE_FIRST)
    assert f"uri       : {voms.uri}" in info
    assert f"issuer    : {voms.dn}" in info


def test_the_service_verifier_believes_the_real_ac_role_first(voms: VomsServer, pki: Pki, tmp_path: Path) -> None:
    cert, key = user_files(pki, "alice")
    out = tmp_path / "voms-proxy.pem"
    result = voms_proxy_init(voms, out, fqan="/atlas/Role=production", cert=cert, key=key)
    assert result.returncode == 0, result.stdout + result.stderr
    chain = load_pem_chain(out.read_bytes())
    assert verified_fqans(chain, vomsdir=voms.vomsdir, ca_dir=pki.ca_dir) == ROLE_FIRST
    (ac,) = voms_attributes(chain, vomsdir=voms.vomsdir, ca_dir=pki.ca_dir)
    assert (ac.vo, ac.uri, ac.issuer_dn, ac.issuer_ca_dn) == ("atlas", voms.uri, voms.dn, pki.ca.dn)
    assert ac.holder_dn == pki.users["alice"].dn
    assert ac.not_after - ac.not_before == timedelta(seconds=TWELVE_HOURS)  # voms-proxy-init's default 12:00
    # the .lsc is what makes it trusted: the AC embeds the server certificate (certseq)
    (voms.vomsdir / "atlas" / f"{voms.host}.lsc").rename(voms.vomsdir / "moved-away")
    try:
        assert verified_fqans(chain, vomsdir=voms.vomsdir, ca_dir=pki.ca_dir) == ()
    finally:
        (voms.vomsdir / "moved-away").rename(voms.vomsdir / "atlas" / f"{voms.host}.lsc")


def test_a_user_unknown_to_the_vo_is_refused(voms: VomsServer, pki: Pki, tmp_path: Path) -> None:
    cert, key = user_files(pki, "mallory")
    out = tmp_path / "voms-proxy.pem"
    result = voms_proxy_init(voms, out, fqan="/atlas", cert=cert, key=key)
    assert result.returncode != 0
    assert "atlas: User unknown to this VO." in result.stdout + result.stderr
    answer = parse_legacy_answer(exchange(voms, pki.users["mallory"].proxy, legacy_request(["G/atlas"], 43200)))
    assert answer.ac is None
    assert answer.items == [(1001, "atlas: User unknown to this VO.")]


@pytest.mark.parametrize("depth", [1, 2], ids=["proxy", "proxy-of-proxy"])
def test_legacy_protocol_answers_a_python_client_presenting_a_proxy(
    voms: VomsServer, pki: Pki, tmp_path: Path, depth: int,
) -> None:
    proxy = pki.users["alice"].proxy
    if depth == 2:
        inner = make_proxy(load_credential(proxy), lifetime=3600)
        proxy = tmp_path / "proxy-of-proxy.pem"
        proxy.write_bytes(credential_pem(inner))
        proxy.chmod(0o600)
    raw = exchange(voms, proxy, legacy_request(["B/atlas:production"], TWELVE_HOURS))
    assert raw.startswith(b'<?xml version="1.0" encoding = "US-ASCII"?><vomsans><version>3</version><ac>')
    answer = parse_legacy_answer(raw)
    assert answer.items == []
    assert answer.ac is not None
    info = ac_info(answer.ac)
    authority, fqans = fqans_and_authority(info)
    assert authority == voms.policy_authority
    assert fqans == list(ROLE_FIRST)
    assert lifetime(info) == timedelta(seconds=TWELVE_HOURS)
    # the holder is the user's certificate, not the proxy that connected
    user_cert = pki.users["alice"].credential.cert
    assert int(info["holder"]["baseCertificateID"]["serial"]) == user_cert.serial_number
    extensions = {str(e["extnID"]): bool(e["critical"]) for e in info["extensions"]}
    assert extensions == {VOMS_CERTSEQ_OID: False, "2.5.29.56": False, "2.5.29.35": False}


def test_legacy_protocol_lifetime_and_order(voms: VomsServer, pki: Pki) -> None:
    proxy = pki.users["alice"].proxy
    # longer than the server's -timeout: cut to it, with warning 2
    longer = parse_legacy_answer(exchange(voms, proxy, legacy_request(["B/atlas:production"], 10 * 86400)))
    shortened = f"{voms.uri}: The validity of this VOMS AC in your proxy is shortened to {voms.max_lifetime} seconds!"
    assert longer.items == [(2, shortened)]
    assert longer.ac is not None and lifetime(ac_info(longer.ac)) == timedelta(seconds=voms.max_lifetime)
    # no lifetime at all: an AC valid for zero seconds (a client must always send one)
    empty = parse_legacy_answer(exchange(voms, proxy, legacy_request(["G/atlas"], None)))
    assert empty.ac is not None and lifetime(ac_info(empty.ac)) == timedelta(0)
    # -1: the server's maximum
    default = parse_legacy_answer(exchange(voms, proxy, legacy_request(["G/atlas"], -1)))
    assert default.ac is not None and lifetime(ac_info(default.ac)) == timedelta(seconds=voms.max_lifetime)
    # a group alone brings no role; the FQANs follow the commands' order
    _, groups = fqans_and_authority(ac_info(parse_legacy_answer(
        exchange(voms, proxy, legacy_request(["G/atlas/uk", "B/atlas:production"], TWELVE_HOURS))).ac or b""))
    assert groups == ["/atlas/uk/Role=NULL/Capability=NULL", "/atlas/Role=production/Capability=NULL",
                      "/atlas/Role=NULL/Capability=NULL"]
    _, plain = fqans_and_authority(ac_info(parse_legacy_answer(
        exchange(voms, proxy, legacy_request(["G/atlas"], TWELVE_HOURS))).ac or b""))
    assert plain == ["/atlas/Role=NULL/Capability=NULL", "/atlas/uk/Role=NULL/Capability=NULL"]


def test_legacy_protocol_errors(voms: VomsServer, pki: Pki) -> None:
    bob = pki.users["bob"].proxy
    no_role = parse_legacy_answer(exchange(voms, bob, legacy_request(["B/atlas:production"], TWELVE_HOURS)))
    assert (no_role.ac, no_role.items) == (None, [(1001, "atlas: Unable to satisfy B/atlas:production request!")])
    # the long FQAN form is not a command: /Role=NULL and /Capability=NULL must be stripped first
    long_form = parse_legacy_answer(exchange(voms, pki.users["alice"].proxy, legacy_request(
        ["B/atlas:production/Capability=NULL"], TWELVE_HOURS)))
    assert long_form.items == [(1001, "atlas: Unable to satisfy B/atlas:production/Capability=NULL request!")]
    garbage = parse_legacy_answer(exchange(voms, bob, b"hello"))
    assert (garbage.ac, garbage.items) == (None, [(1005, "Unable to intepret command: hello")])


def test_this_build_answers_no_rest_request(voms: VomsServer, pki: Pki) -> None:
    """voms 2.1.0~rc3 with Debian's gSOAP 2.8.124 accepts GET /generate-ac, logs "Received HTTP
    request..." and closes without a byte (upstream fixed it in 2.1.0-rc4, commit 15654d2);
    voms-proxy-init then falls back to the legacy protocol on a new connection. If this fails, a
    newer voms-server answers REST: update docs/voms.md and test the REST answer."""
    request = (f"GET /generate-ac?fqans=/atlas/Role=production&lifetime={TWELVE_HOURS} HTTP/1.0\r\n"
               f"Host: localhost:{voms.port}\r\n\r\n").encode()
    assert exchange(voms, pki.users["alice"].proxy, request) == b""


def test_a_server_that_trusts_its_own_acs_issues_only_the_intersection(
    voms_server_factory, pki: Pki, tmp_path: Path,  # noqa: F811
) -> None:
    """The server reads the ACs already in the client's chain (libvomsapi, VERIFY_SIGN|VERIFY_DATE,
    its own X509_VOMS_DIR): when one of its VO verifies, it issues only what that AC holds
    (warning 3), and nothing at all (error 1002) if nothing is left. Without a vomsdir that
    trusts it (the other tests' server) the old AC is ignored."""
    server = voms_server_factory(trust_own_acs=True)
    server.add_user(pki.users["alice"].dn, pki.ca.dn, groups=["/atlas/uk"], roles=[("/atlas", "production")])
    cert, key = user_files(pki, "alice")
    group_only = tmp_path / "group-only.pem"
    result = voms_proxy_init(server, group_only, fqan="/atlas/uk", cert=cert, key=key)
    assert result.returncode == 0, result.stdout + result.stderr
    subset = parse_legacy_answer(exchange(server, group_only, legacy_request(["B/atlas:production"], TWELVE_HOURS)))
    only_subset = "atlas : your certificate already contains attributes, only a subset of them can be issued."
    assert subset.items == [(3, only_subset)]
    assert subset.ac is not None
    assert fqans_and_authority(ac_info(subset.ac))[1] == ["/atlas/Role=NULL/Capability=NULL",
                                                          "/atlas/uk/Role=NULL/Capability=NULL"]
    # the same FQANs again (the refresh case): all of them, no warning
    same = parse_legacy_answer(exchange(server, group_only, legacy_request(["G/atlas/uk"], TWELVE_HOURS)))
    assert same.items == []
    assert same.ac is not None
    assert fqans_and_authority(ac_info(same.ac))[1] == ["/atlas/uk/Role=NULL/Capability=NULL",
                                                        "/atlas/Role=NULL/Capability=NULL"]
