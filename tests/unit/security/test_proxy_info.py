"""getProxyInfo data (ProxyInfoStructType formats) for plain, VOMS and multi-level proxies."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import need_peer
from tests.voms_support import (
    FQANS,
    URI,
    fake_ca_voms_server,
    fake_voms_proxy,
    fake_voms_server,
    untrusted_voms_server,
)
from wmproxy.errors import ProxyError
from wmproxy.security.chain import chain_pem, load_pem_chain
from wmproxy.security.proxy import credential_pem, load_credential, make_proxy
from wmproxy.security.proxy_info import chain_proxy_info, proxy_info


@pytest.fixture(scope="module")
def voms_server(pki, tmp_path_factory):
    return fake_voms_server(pki, tmp_path_factory.mktemp("voms-info"))


@pytest.fixture(scope="module")
def trust(pki, voms_server) -> dict[str, str]:
    """The vomsdir and CA directory the ACs of ``voms_proxy`` verify against."""
    return {"vomsdir": str(voms_server.vomsdir), "ca_dir": str(pki.ca_dir)}


@pytest.fixture(scope="module")
def voms_proxy(pki, voms_server):
    return fake_voms_proxy(pki, voms_server, voms_server.vomsdir.parent / "voms-proxy.pem")


def _epoch_now() -> int:
    return int(datetime.now(UTC).timestamp())


class TestProxyFields:
    def test_voms_proxy_file(self, voms_proxy, pki, trust):
        info = proxy_info(voms_proxy.read_bytes(), **trust)
        leaf = load_pem_chain(voms_proxy.read_bytes())[0]
        alice = pki.users["alice"].dn
        assert info.subject.startswith(alice + "/CN=")
        assert info.issuer == alice
        assert info.identity == alice
        assert info.type == "proxy"
        assert info.strength == 2048
        assert info.start_time == leaf.not_valid_before_utc
        assert info.end_time == leaf.not_valid_after_utc

    def test_times_are_aware_utc(self, voms_proxy, trust):
        info = proxy_info(voms_proxy.read_bytes(), **trust)
        for value in (info.start_time, info.end_time, info.vos[0].start_time, info.vos[0].end_time):
            assert value.utcoffset() == timedelta(0)
        assert info.start_time <= datetime.now(UTC) < info.end_time

    def test_plain_certificate_is_x509(self, pki):
        user = pki.users["bob"].credential
        info = chain_proxy_info([user.cert], vomsdir=None, ca_dir=None)
        assert info.type == "x509"
        assert info.subject == info.identity == pki.users["bob"].dn
        assert info.issuer == pki.ca.dn
        assert info.vos == []

    def test_proxy_of_proxy_identity_is_the_user(self, pki):
        first = load_credential(pki.users["bob"].proxy)
        second = make_proxy(first, lifetime=600, key_bits=1024)
        info = proxy_info(credential_pem(second), vomsdir=None, ca_dir=None)
        assert info.identity == pki.users["bob"].dn
        assert info.issuer != info.identity and info.issuer.startswith(info.identity + "/CN=")
        assert info.strength == 1024
        assert info.vos == []

    def test_no_certificate(self):
        with pytest.raises(ProxyError):
            proxy_info(b"nothing here", vomsdir=None, ca_dir=None)


class TestVoInfo:
    def test_vo_fields(self, voms_proxy, voms_server, pki, trust):
        (vo,) = proxy_info(voms_proxy.read_bytes(), **trust).vos
        assert vo.vo_name == "atlas"
        assert vo.uri == URI
        assert vo.user == pki.users["alice"].dn
        assert vo.user_ca == pki.ca.dn
        assert vo.server == voms_server.dn
        assert vo.server_ca == pki.ca.dn
        assert vo.attributes == list(FQANS)
        assert vo.end_time - vo.start_time == timedelta(hours=24)

    def test_vo_info_survives_a_further_proxy(self, voms_proxy, trust):
        second = make_proxy(load_credential(voms_proxy), lifetime=600)
        info = proxy_info(chain_pem(second.full_chain), **trust)
        assert [vo.attributes for vo in info.vos] == [list(FQANS)]
        assert info.end_time - datetime.now(UTC) <= timedelta(seconds=600)

    def test_expired_ac_end_time_in_the_past_and_no_fqans(self, pki, voms_server, tmp_path, trust):
        path = fake_voms_proxy(pki, voms_server, tmp_path / "old.pem", "-pastac", "48:00")
        (vo,) = proxy_info(path.read_bytes(), **trust).vos
        assert vo.end_time < datetime.now(UTC) - timedelta(hours=23)
        assert (vo.verified, vo.attributes) == (False, [])
        assert "not valid at" in vo.verify_error


class TestForgedAcs:
    """What the AC claims is never shown as FQANs when it does not verify."""

    def test_ac_signed_by_a_server_the_lsc_does_not_name(self, pki, tmp_path, trust):
        forged = untrusted_voms_server(pki, tmp_path)
        (vo,) = proxy_info(fake_voms_proxy(pki, forged, tmp_path / "forged.pem").read_bytes(), **trust).vos
        assert (vo.verified, vo.attributes) == (False, [])
        assert "lsc mismatch" in vo.verify_error
        assert vo.vo_name == "atlas" and vo.server == forged.dn

    def test_ac_from_a_fake_ca_with_the_real_ca_dn(self, pki, voms_server, tmp_path, trust):
        forged = fake_ca_voms_server(pki, tmp_path)
        assert forged.dn == voms_server.dn  # same DNs all the way: the .lsc matches
        (vo,) = proxy_info(fake_voms_proxy(pki, forged, tmp_path / "forged.pem").read_bytes(), **trust).vos
        assert (vo.verified, vo.attributes) == (False, [])
        assert "VOMS server certificate" in vo.verify_error

    def test_without_trust_anchors_nothing_verifies(self, voms_proxy):
        (vo,) = proxy_info(voms_proxy.read_bytes(), vomsdir=None, ca_dir=None).vos
        assert (vo.verified, vo.attributes) == (False, [])


def test_agrees_with_voms_proxy_info(voms_proxy, pki, trust):
    binary = shutil.which("voms-proxy-info")
    if binary is None:
        need_peer("voms-proxy-info (voms-clients) is not installed")
    env = {**os.environ, "X509_CERT_DIR": str(pki.ca_dir)}
    out = subprocess.run([binary, "-all", "-file", str(voms_proxy)], capture_output=True, text=True,
                         env=env, timeout=60, check=False).stdout
    fields: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), []).append(value.strip())
    info = proxy_info(voms_proxy.read_bytes(), **trust)
    vo = info.vos[0]
    assert fields["subject"] == [info.subject, vo.user]
    assert fields["issuer"] == [info.issuer, vo.server]
    assert fields["identity"] == [info.identity]
    assert fields["strength"] == [f"{info.strength} bits"]
    assert fields["VO"] == [vo.vo_name]
    assert fields["attribute"] == vo.attributes
    assert fields["uri"] == [vo.uri]
