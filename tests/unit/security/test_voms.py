"""VOMS AC parsing and verification against proxies made by the real voms-proxy-fake."""

from __future__ import annotations

import logging
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ as asn1

from tests.conftest import need_peer
from tests.voms_support import (
    FQANS,
    TARGETS_OID,
    URI,
    VomsServer,
    _ACSeqs,
    ac_extensions,
    fake_voms_proxy,
    fake_voms_server,
    other_vo_uri,
    other_vo_voms_server,
    run_voms_proxy_fake,
    targets_extension,
    voms_server_of,
    with_ac_extension,
    write_lsc,
)
from wmproxy.errors import ProxyError
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.delegation import accept_delegated_proxy, new_proxy_request
from wmproxy.security.pki import create_ca
from wmproxy.security.proxy import load_credential, make_proxy, sign_proxy_request
from wmproxy.security.voms import VOMS_AC_OID, ac_attributes, service_host_names, verified_fqans, voms_attributes


@pytest.fixture(scope="module")
def voms_server(pki, tmp_path_factory) -> VomsServer:
    return fake_voms_server(pki, tmp_path_factory.mktemp("voms"))


@pytest.fixture(scope="module")
def voms_proxy(pki, voms_server) -> Path:
    return fake_voms_proxy(pki, voms_server, voms_server.vomsdir.parent / "voms-proxy.pem")


@pytest.fixture(scope="module")
def voms_chain(voms_proxy) -> list[x509.Certificate]:
    return load_pem_chain(voms_proxy.read_bytes())


def _with_extension(value: bytes) -> list[x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broken")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.UnrecognizedExtension(VOMS_AC_OID, value), critical=False)
        .sign(key, hashes.SHA256())
    )
    return [cert]


class TestParse:
    def test_fqans_vo_and_uri(self, voms_chain):
        (ac,) = voms_attributes(voms_chain)
        assert ac.fqans == FQANS
        assert ac.vo == "atlas"
        assert ac.uri == URI

    def test_holder_and_issuer_dns(self, voms_chain, pki, voms_server):
        (ac,) = voms_attributes(voms_chain)
        assert ac.holder_dn == pki.users["alice"].dn
        assert ac.holder_ca_dn == pki.ca.dn
        assert ac.issuer_dn == voms_server.dn
        assert ac.issuer_ca_dn == pki.ca.dn

    def test_validity_times(self, voms_chain):
        (ac,) = voms_attributes(voms_chain)
        now = datetime.now(UTC)
        assert ac.not_before.tzinfo is not None
        assert ac.not_after - ac.not_before == timedelta(hours=24)
        assert abs((ac.not_before - now).total_seconds()) < 600
        assert ac.valid_at(now)

    def test_not_verified_unless_asked(self, voms_chain):
        (ac,) = voms_attributes(voms_chain)
        assert ac.verified is False
        assert ac.verify_error == ""

    def test_verified_fqans_primary_first(self, voms_chain, voms_server, pki):
        assert verified_fqans(voms_chain, vomsdir=str(voms_server.vomsdir), ca_dir=str(pki.ca_dir)) == FQANS

    def test_no_fqans_without_trust_anchors(self, voms_chain, pki):
        assert verified_fqans(voms_chain, vomsdir=None, ca_dir=str(pki.ca_dir)) == ()
        assert verified_fqans(voms_chain, vomsdir="", ca_dir=str(pki.ca_dir)) == ()

    def test_plain_proxy_has_none(self, pki):
        chain = load_pem_chain(pki.users["alice"].proxy.read_bytes())
        assert voms_attributes(chain) == []
        assert verified_fqans(chain, vomsdir="/nonexistent", ca_dir="/nonexistent") == ()

    def test_garbage_extension_is_a_proxy_error(self):
        with pytest.raises(ProxyError, match="malformed VOMS attribute certificate"):
            voms_attributes(_with_extension(b"\x30\x03\x02\x01\x01"))

    def test_empty_ac_sequence_is_a_proxy_error(self):
        with pytest.raises(ProxyError, match="no AC"):
            voms_attributes(_with_extension(b"\x30\x00"))


class TestDecodedOnce:
    """A stored proxy's ACs are checked at every jobSubmit: their DER is decoded once per
    process, what depends on the time, the vomsdir and the CA directory is checked every time."""

    def test_the_acs_are_decoded_once_and_checked_every_time(self, voms_chain, voms_server, pki, tmp_path,
                                                             monkeypatch):
        from wmproxy.security import voms as voms_module

        monkeypatch.setattr(voms_module, "_decoded", voms_module.LRUCache(voms_module.DECODED_MAX))
        decoded = []
        decode = voms_module._decode_acs

        def counted(der):
            decoded.append(der)
            return decode(der)

        monkeypatch.setattr(voms_module, "_decode_acs", counted)
        trusted = {"vomsdir": str(voms_server.vomsdir), "ca_dir": str(pki.ca_dir)}
        assert verified_fqans(voms_chain, **trusted) == FQANS
        (ac,) = voms_attributes(voms_chain)
        assert verified_fqans(voms_chain, **trusted, at=ac.not_after + timedelta(seconds=1)) == ()
        assert verified_fqans(voms_chain, vomsdir=str(tmp_path), ca_dir=str(pki.ca_dir)) == ()
        assert verified_fqans(voms_chain, **trusted) == FQANS
        assert len(decoded) == 1

    def test_an_acs_facts_and_signature_are_read_once_its_trust_every_time(self, pki, tmp_path, monkeypatch):
        """What an AC says and its signature are read once per process; the VOMS server's
        certificate is still checked against the CA directory at every call: revoked, the AC
        gives no FQAN at once."""
        from wmproxy.security import chain as chain_module
        from wmproxy.security import voms as voms_module

        monkeypatch.setattr(voms_module, "_decoded", voms_module.LRUCache(voms_module.DECODED_MAX))
        ca = create_ca(tmp_path / "certificates", "/C=XX/O=wmproxy-test/CN=Revoking CA")
        home = tmp_path / "user"
        ca.issue_user("Voms User", home)
        server = voms_server_of(ca, tmp_path)
        proxy = run_voms_proxy_fake(shutil.which("voms-proxy-fake") or need_peer("voms-proxy-fake"), home,
                                    ca.directory, server, tmp_path / "proxy.pem")
        assert proxy.returncode == 0, proxy.stderr
        chain = load_pem_chain((tmp_path / "proxy.pem").read_bytes())
        counts = {"facts": 0, "signature": 0}
        read_facts, check_signature = voms_module._read_facts, voms_module._check_signature

        def facts(*args):
            counts["facts"] += 1
            return read_facts(*args)

        def signature(*args):
            counts["signature"] += 1
            return check_signature(*args)

        monkeypatch.setattr(voms_module, "_read_facts", facts)
        monkeypatch.setattr(voms_module, "_check_signature", signature)
        trusted = {"vomsdir": str(server.vomsdir), "ca_dir": str(ca.directory)}
        for _ in range(3):
            assert verified_fqans(chain, **trusted) == FQANS
        assert counts == {"facts": 1, "signature": 1}
        assert chain_module._verified_chains.currsize >= 1  # the server's certificate: kept verified
        ca.revoke(x509.load_pem_x509_certificate(server.cert.read_bytes()))
        (ac,) = voms_attributes(chain, **trusted)
        assert not ac.verified
        assert "certificate revoked" in ac.verify_error

    def test_a_large_der_is_decoded_every_time(self, monkeypatch):
        """A user writes its proxies' extensions: what is decoded from more than
        DECODED_DER_MAX bytes is not kept (pyasn1 holds about thirty times its size)."""
        from wmproxy.security import voms as voms_module

        monkeypatch.setattr(voms_module, "_decoded", voms_module.LRUCache(voms_module.DECODED_MAX))
        calls = []
        small, large = b"s" * voms_module.DECODED_DER_MAX, b"l" * (voms_module.DECODED_DER_MAX + 1)
        for _ in range(2):
            for der in (small, large):
                assert voms_module._kept("extension", der, lambda d: calls.append(d) or len(d)) == len(der)
        assert calls == [small, large, large]

    def test_a_malformed_extension_is_refused_every_time(self, monkeypatch):
        from wmproxy.security import voms as voms_module

        monkeypatch.setattr(voms_module, "_decoded", voms_module.LRUCache(voms_module.DECODED_MAX))
        chain = _with_extension(b"\x30\x03\x02\x01\x01")
        for _ in range(2):
            with pytest.raises(ProxyError, match="malformed VOMS attribute certificate"):
                voms_attributes(chain)
        assert len(voms_module._decoded) == 0


def test_an_embedded_certificate_with_an_unreadable_name_is_a_malformed_ac():
    """Review: cryptography reads a certificate's names when asked, so an embedded VOMS certificate
    whose subject is not UTF-8 raised a bare ValueError where the AC's facts are read (callers
    handle ProxyError only): it is a malformed AC, and nothing is kept."""
    from wmproxy.security import voms as voms_module

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AAAA")]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "BBBB")])).public_key(key.public_key())
            .serial_number(5).not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    bad = cert.public_bytes(serialization.Encoding.DER).replace(b"\x0c\x04AAAA", b"\x0c\x04\xff\xfe\xff\xfe", 1)
    certs = asn1.SequenceOf(componentType=asn1.Any()).setComponentByPosition(0, asn1.Any(bad))
    der = der_encoder.encode(asn1.SequenceOf(componentType=asn1.SequenceOf(componentType=asn1.Any()))
                             .setComponentByPosition(0, certs))  # SEQUENCE { SEQUENCE OF Certificate }
    for _ in range(2):
        with pytest.raises(ProxyError, match="unreadable embedded VOMS certificate"):
            voms_module._kept("certificates", der, voms_module._decode_certs)


class TestVerify:
    def test_right_lsc_verifies(self, voms_chain, voms_server, pki):
        (ac,) = voms_attributes(voms_chain, vomsdir=str(voms_server.vomsdir), ca_dir=str(pki.ca_dir))
        assert ac.verified is True, ac.verify_error
        assert ac.verify_error == ""

    def test_wrong_lsc_dn_is_not_verified(self, voms_chain, voms_server, pki, tmp_path):
        write_lsc(tmp_path, "/C=XX/O=wmproxy-demo/OU=Hosts/CN=impostor", pki.ca.dn)
        (ac,) = voms_attributes(voms_chain, vomsdir=str(tmp_path), ca_dir=str(pki.ca_dir))
        assert ac.verified is False
        assert "lsc mismatch" in ac.verify_error
        assert ac.fqans == FQANS  # still reported, callers decide

    def test_wrong_lsc_ca_is_not_verified(self, voms_chain, voms_server, pki, tmp_path):
        write_lsc(tmp_path, voms_server.dn, "/C=YY/O=Elsewhere/CN=Other CA")
        (ac,) = voms_attributes(voms_chain, vomsdir=str(tmp_path), ca_dir=str(pki.ca_dir))
        assert not ac.verified
        assert "lsc mismatch" in ac.verify_error

    def test_empty_vomsdir_is_not_verified(self, voms_chain, pki, tmp_path):
        (ac,) = voms_attributes(voms_chain, vomsdir=str(tmp_path), ca_dir=str(pki.ca_dir))
        assert not ac.verified
        assert "voms.localhost.lsc" in ac.verify_error

    def test_old_style_vomsdir_with_server_cert(self, voms_chain, voms_server, pki, tmp_path):
        (tmp_path / "atlas").mkdir()
        shutil.copy(voms_server.cert, tmp_path / "atlas" / "voms.localhost.pem")
        (ac,) = voms_attributes(voms_chain, vomsdir=str(tmp_path), ca_dir=str(pki.ca_dir))
        assert ac.verified, ac.verify_error

    def test_untrusted_ca_is_not_verified(self, voms_chain, voms_server, tmp_path):
        other = create_ca(tmp_path / "certificates", "/C=YY/O=Elsewhere/CN=Other CA")
        (ac,) = voms_attributes(voms_chain, vomsdir=str(voms_server.vomsdir), ca_dir=str(other.directory))
        assert not ac.verified
        assert "VOMS server certificate" in ac.verify_error

    def test_ac_of_another_user_is_not_verified(self, voms_chain, pki, voms_server):
        bob = load_pem_chain(pki.users["bob"].proxy.read_bytes())
        # bob's chain with alice's VOMS proxy on top: the AC holder is not in bob's part
        (ac,) = voms_attributes([voms_chain[0], *bob[1:]], vomsdir=str(voms_server.vomsdir),
                                ca_dir=str(pki.ca_dir))
        assert not ac.verified
        assert "holder" in ac.verify_error


    def test_an_embedded_voms_certificate_of_an_unknown_key_type_is_not_verified(
            self, voms_proxy, voms_server, pki) -> None:
        # the AC's own VOMS certificate with its rsaEncryption OID made unknown: cryptography
        # raised UnsupportedAlgorithm from public_key(), which stopped the renewal worker
        ext = next(e for c in load_pem_chain(voms_proxy.read_bytes()) for e in c.extensions if e.oid == VOMS_AC_OID)
        assert isinstance(ext.value, x509.UnrecognizedExtension)
        rsa_oid = bytes.fromhex("06092a864886f70d010101")
        assert ext.value.value.count(rsa_oid) == 1
        patched = ext.value.value.replace(rsa_oid, bytes.fromhex("06092a864886f70d010163"))
        holder = pki.users["alice"].credential
        chain = make_proxy(holder, lifetime=3600,
                           extensions=[x509.UnrecognizedExtension(VOMS_AC_OID, patched)]).full_chain
        (ac,) = voms_attributes(chain, vomsdir=str(voms_server.vomsdir), ca_dir=str(pki.ca_dir))
        assert not ac.verified and "Cannot verify AC signature" in ac.verify_error
        assert verified_fqans(chain, vomsdir=voms_server.vomsdir, ca_dir=pki.ca_dir) == ()


class TestChainsAndLifetimes:
    def test_proxy_below_voms_proxy_keeps_the_ac(self, voms_proxy, voms_server, pki):
        second = make_proxy(load_credential(voms_proxy), lifetime=3600)
        chain = second.full_chain
        assert len(chain) == 3
        (ac,) = voms_attributes(chain, vomsdir=str(voms_server.vomsdir), ca_dir=str(pki.ca_dir))
        assert ac.fqans == FQANS
        assert ac.verified, ac.verify_error
        third = make_proxy(second, lifetime=600)
        assert verified_fqans(third.full_chain, vomsdir=str(voms_server.vomsdir), ca_dir=str(pki.ca_dir)) == FQANS

    def test_expired_ac_is_returned_with_its_dates_and_does_not_verify(self, pki, voms_server, tmp_path):
        path = fake_voms_proxy(pki, voms_server, tmp_path / "old.pem", "-pastac", "48:00",
                               fqans=FQANS[1:2])
        # -vomslife 24 from 48 h ago: ended about 24 h ago
        (ac,) = voms_attributes(load_pem_chain(path.read_bytes()), vomsdir=str(voms_server.vomsdir),
                                ca_dir=str(pki.ca_dir))
        now = datetime.now(UTC)
        assert ac.not_after < now - timedelta(hours=23)
        assert not ac.valid_at(now)
        assert ac.fqans == FQANS[1:2]
        assert not ac.verified
        assert "the AC is not valid at" in ac.verify_error
        chain = load_pem_chain(path.read_bytes())
        assert verified_fqans(chain, vomsdir=str(voms_server.vomsdir), ca_dir=str(pki.ca_dir)) == ()


class TestDelegationFqans:
    def test_malformed_extension_is_a_proxy_error(self):
        with pytest.raises(ProxyError, match="malformed"):
            verified_fqans(_with_extension(b"\x04\x00"), vomsdir="/nonexistent", ca_dir="/nonexistent")

    def test_put_proxy_of_a_voms_proxy_stores_the_verified_fqans(self, voms_proxy, voms_server, pki):
        key, csr = new_proxy_request()
        signed = sign_proxy_request(csr, load_credential(voms_proxy), lifetime=3600)
        delegated = accept_delegated_proxy(key, signed, pki.users["alice"].dn, str(pki.ca_dir),
                                           vomsdir=str(voms_server.vomsdir))
        assert delegated.fqans == FQANS

    def test_put_proxy_stores_no_fqans_it_cannot_verify(self, voms_proxy, pki, tmp_path):
        key, csr = new_proxy_request()
        signed = sign_proxy_request(csr, load_credential(voms_proxy), lifetime=3600)
        assert accept_delegated_proxy(key, signed, pki.users["alice"].dn, str(pki.ca_dir)).fqans == ()
        delegated = accept_delegated_proxy(key, signed, pki.users["alice"].dn, str(pki.ca_dir),
                                           vomsdir=str(tmp_path))
        assert delegated.fqans == ()


class TestFqansOfTheAcsVo:
    """A VOMS server is trusted for one VO (``<vomsdir>/<vo>/<host>.lsc``): an AC whose FQANs are
    of another VO is not believed at all, as libvomsapi refuses it (``AC_ERR_ATTRIB_FQAN``)."""

    @pytest.fixture(scope="class")
    @classmethod
    def vomsdir(cls, pki, voms_server, tmp_path_factory) -> Path:
        """A site trusting VO atlas's ``voms.localhost`` and VO cms's ``voms-cms.localhost``."""
        root = tmp_path_factory.mktemp("two-vos")
        write_lsc(root / "vomsdir", voms_server.dn, pki.ca.dn)
        return root / "vomsdir"

    @pytest.fixture(scope="class")
    @classmethod
    def cms(cls, pki, vomsdir) -> VomsServer:
        return other_vo_voms_server(pki, vomsdir.parent, vomsdir)

    def _cms_proxy(self, pki, cms, tmp_path, *fqans: str) -> list[x509.Certificate]:
        path = fake_voms_proxy(pki, cms, tmp_path / "cms.pem", fqans=fqans, vo="cms", uri=other_vo_uri())
        return load_pem_chain(path.read_bytes())

    def test_the_servers_own_vo_verifies(self, pki, cms, vomsdir, tmp_path):
        chain = self._cms_proxy(pki, cms, tmp_path, "/cms/Role=NULL/Capability=NULL", "/cms",
                                "/cms/uk/Role=pilot/Capability=NULL")
        assert verified_fqans(chain, vomsdir=vomsdir, ca_dir=pki.ca_dir) == (
            "/cms/Role=NULL/Capability=NULL", "/cms", "/cms/uk/Role=pilot/Capability=NULL")

    @pytest.mark.parametrize("fqans", [
        ("/atlas/Role=production/Capability=NULL",),
        ("/cms/Role=NULL/Capability=NULL", "/atlas/Role=production/Capability=NULL"),
        ("/cmsx/Role=NULL/Capability=NULL",),  # /cms is not a prefix of the group /cmsx
        ("cms/Role=NULL/Capability=NULL",),
    ])
    def test_an_fqan_of_another_vo_refuses_the_ac(self, pki, cms, vomsdir, tmp_path, fqans):
        chain = self._cms_proxy(pki, cms, tmp_path, *fqans)
        (ac,) = voms_attributes(chain, vomsdir=vomsdir, ca_dir=pki.ca_dir)
        assert ac.vo == "cms" and ac.fqans == fqans  # still reported, as other refused ACs
        assert not ac.verified
        assert ac.verify_error.startswith("the AC of VO cms holds FQANs of another VO (")
        assert repr(fqans[-1]) in ac.verify_error
        assert verified_fqans(chain, vomsdir=vomsdir, ca_dir=pki.ca_dir) == ()

    def test_an_ac_of_the_vos_own_server_is_unaffected(self, pki, voms_server, voms_chain, vomsdir, cms):
        assert verified_fqans(voms_chain, vomsdir=vomsdir, ca_dir=pki.ca_dir) == FQANS

    def test_an_ac_from_a_server_answer_is_judged_alike(self, pki, cms, vomsdir, tmp_path):
        # the VOMS refresh reads a server's answer with ac_attributes
        chain = self._cms_proxy(pki, cms, tmp_path, "/atlas/Role=production/Capability=NULL")
        ext = next(e for c in chain for e in c.extensions if e.oid == VOMS_AC_OID)
        assert isinstance(ext.value, x509.UnrecognizedExtension)
        (ac,) = [a for seq in decoder.decode(ext.value.value, asn1Spec=_ACSeqs())[0] for a in seq]
        attrs = ac_attributes(der_encoder.encode(ac), chain, vomsdir=vomsdir, ca_dir=pki.ca_dir)
        assert not attrs.verified and "FQANs of another VO" in attrs.verify_error

    def test_logged_once_per_ac(self, pki, cms, vomsdir, tmp_path, caplog):
        # FQANs no other test asks for: voms-proxy-fake's AC of the same holder, FQANs and second
        # is the same bytes, which this process has judged (and logged) already
        chain = self._cms_proxy(pki, cms, tmp_path, "/atlas/Role=lcgadmin/Capability=NULL")
        with caplog.at_level(logging.WARNING, logger="wmproxy.security.voms"):
            for _ in range(3):
                assert verified_fqans(chain, vomsdir=vomsdir, ca_dir=pki.ca_dir) == ()
        (record,) = [r for r in caplog.records if "another VO" in r.getMessage()]
        assert cms.dn in record.getMessage() and "trusted for VO cms" in record.getMessage()
        assert "'/atlas/Role=lcgadmin/Capability=NULL'" in record.getMessage()

    def test_an_untrusted_ac_of_another_vo_is_refused_for_its_signer_unlogged(self, pki, voms_server, cms,
                                                                                 tmp_path, caplog):
        # a vomsdir that does not trust the cms server: the signer decides, nothing is logged
        chain = self._cms_proxy(pki, cms, tmp_path, "/atlas/Role=production/Capability=NULL")
        with caplog.at_level(logging.WARNING, logger="wmproxy.security.voms"):
            (ac,) = voms_attributes(chain, vomsdir=voms_server.vomsdir, ca_dir=pki.ca_dir)
        assert not ac.verified and "cms/voms-cms.localhost.lsc" in ac.verify_error
        assert not [r for r in caplog.records if "another VO" in r.getMessage()]


#: The name the service of the targeting tests answers to.
HERE = "wms.example.org"


class TestTargetsAndCriticalExtensions:
    """RFC 5755 §4.3.2 (Targets) and §4.3 (critical extensions), as libvomsapi's VER_TARGETS."""

    def _check(self, pki, server, proxy, tmp_path, oid, value, *, critical=True, host_names=(HERE,)):
        path = with_ac_extension(pki, server, proxy, tmp_path / "changed.pem", oid, value, critical=critical)
        chain = load_pem_chain(path.read_bytes())
        (ac,) = voms_attributes(chain, vomsdir=str(server.vomsdir), ca_dir=str(pki.ca_dir), host_names=host_names)
        fqans = verified_fqans(chain, vomsdir=str(server.vomsdir), ca_dir=str(pki.ca_dir), host_names=host_names)
        return ac, fqans

    def test_voms_proxy_fake_marks_no_extension_critical(self, voms_proxy):
        assert ac_extensions(voms_proxy) == [
            ("1.3.6.1.4.1.8005.100.100.10", False), ("2.5.29.56", False), ("2.5.29.35", False)]

    @pytest.mark.parametrize(("target", "voms"), [
        (HERE, False), ("WMS.Example.ORG.", False), (HERE, True),
        (f"https://{HERE}:7443/glite_wms_wmproxy_server", True),
    ])
    def test_a_target_naming_this_service_verifies(self, pki, voms_server, voms_proxy, tmp_path, target, voms):
        value = targets_extension("other-service.example.org", target, voms=voms)
        ac, fqans = self._check(pki, voms_server, voms_proxy, tmp_path, TARGETS_OID, value)
        assert ac.verified, ac.verify_error
        assert fqans == FQANS

    @pytest.mark.parametrize("voms", [False, True])
    def test_an_ac_for_another_service_is_refused(self, pki, voms_server, voms_proxy, tmp_path, voms):
        value = targets_extension("other-service.example.org", voms=voms)
        ac, fqans = self._check(pki, voms_server, voms_proxy, tmp_path, TARGETS_OID, value)
        assert not ac.verified
        assert ac.verify_error == "the AC is targeted at 'other-service.example.org', not at this service"
        assert fqans == ()
        assert ac.fqans == FQANS  # listed, not believed

    def test_the_same_ac_is_judged_for_each_services_names(self, pki, voms_server, voms_proxy, tmp_path):
        """An AC's targets are checked once per set of names (kept with the AC): the same AC
        verifies for a service it names and not for another, in either order."""
        value = targets_extension(HERE)
        path = with_ac_extension(pki, voms_server, voms_proxy, tmp_path / "changed.pem", TARGETS_OID, value,
                                 critical=True)
        chain = load_pem_chain(path.read_bytes())
        trusted = {"vomsdir": str(voms_server.vomsdir), "ca_dir": str(pki.ca_dir)}
        for _ in range(2):
            assert verified_fqans(chain, **trusted, host_names=(HERE,)) == FQANS
            assert verified_fqans(chain, **trusted, host_names=("other-service.example.org",)) == ()

    def test_targets_are_checked_even_if_not_marked_critical(self, pki, voms_server, voms_proxy, tmp_path):
        value = targets_extension("other-service.example.org")
        ac, fqans = self._check(pki, voms_server, voms_proxy, tmp_path, TARGETS_OID, value, critical=False)
        assert not ac.verified and fqans == ()

    def test_an_ac_with_targets_is_refused_without_host_names(self, pki, voms_server, voms_proxy, tmp_path):
        ac, fqans = self._check(pki, voms_server, voms_proxy, tmp_path, TARGETS_OID, targets_extension(HERE),
                                host_names=())
        assert not ac.verified
        assert "this service has no host name to match" in ac.verify_error
        assert fqans == ()

    def test_unreadable_targets_are_refused(self, pki, voms_server, voms_proxy, tmp_path):
        ac, fqans = self._check(pki, voms_server, voms_proxy, tmp_path, TARGETS_OID, b"\x04\x01x")
        assert ac.verify_error == "unable to parse the AC Targets extension"
        assert fqans == ()

    def test_an_unknown_critical_extension_is_refused(self, pki, voms_server, voms_proxy, tmp_path):
        ac, fqans = self._check(pki, voms_server, voms_proxy, tmp_path, "1.2.3.4.5", b"\x05\x00")
        assert not ac.verified
        assert ac.verify_error == "unknown critical AC extension 1.2.3.4.5"
        assert fqans == ()

    def test_an_unknown_extension_not_critical_is_ignored(self, pki, voms_server, voms_proxy, tmp_path):
        ac, fqans = self._check(pki, voms_server, voms_proxy, tmp_path, "1.2.3.4.5", b"\x05\x00", critical=False)
        assert ac.verified, ac.verify_error
        assert fqans == FQANS

    def test_an_ac_without_targets_verifies_with_or_without_host_names(self, voms_chain, voms_server, pki):
        for names in ((), (HERE,)):
            assert verified_fqans(voms_chain, vomsdir=str(voms_server.vomsdir), ca_dir=str(pki.ca_dir),
                                  host_names=names) == FQANS

    def test_put_proxy_stores_no_fqans_of_an_ac_for_another_service(self, pki, voms_server, voms_proxy, tmp_path):
        path = with_ac_extension(pki, voms_server, voms_proxy, tmp_path / "other.pem", TARGETS_OID,
                                 targets_extension("other-service.example.org"), critical=True)
        key, csr = new_proxy_request()
        signed = sign_proxy_request(csr, load_credential(path), lifetime=3600)
        delegated = accept_delegated_proxy(key, signed, pki.users["alice"].dn, str(pki.ca_dir),
                                           vomsdir=str(voms_server.vomsdir), host_names=(HERE,))
        assert delegated.fqans == ()


class TestServiceHostNames:
    def test_host_then_the_certificate_names(self, pki, tmp_path):
        cert, _ = pki.ca.issue_host(HERE, tmp_path / "host")
        # [service] host first, then the SAN dNSNames (the IP address is not a name), the CN once
        assert service_host_names(cert, "WMS.Example.org.") == (HERE, "localhost")
        assert service_host_names(cert, "alias.example.org") == ("alias.example.org", HERE, "localhost")

    def test_a_missing_certificate_gives_the_host_only(self, tmp_path):
        assert service_host_names(tmp_path / "none.pem", "wms.example.org") == (HERE,)
        assert service_host_names(tmp_path / "none.pem", "") == ()

    def test_a_replaced_certificate_is_read_again(self, pki, tmp_path):
        cert, _ = pki.ca.issue_host(HERE, tmp_path / "host")
        assert service_host_names(cert) == (HERE, "localhost")
        other, _ = pki.ca.issue_host("wms2.example.org", tmp_path / "other")
        os.replace(other, cert)
        assert service_host_names(cert) == ("wms2.example.org", "localhost")
