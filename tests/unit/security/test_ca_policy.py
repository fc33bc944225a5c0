"""The namespace policies of the CA directory (wmproxy/security/ca_policy.py): a trusted CA may
only certify the names its ``<hash>.namespaces`` (EUGridPMA) or ``<hash>.signing_policy``
(Globus) file gives it, on every verified path: the caller's TLS chain, putProxy's delegated
chain (its kept-issuers fast path included) and a VOMS AC signer's chain.

The directory of each test holds the demo CA (``/C=XX/O=wmproxy-demo/...``, whose users are
Alice and Olga's neighbours) and a second CA, ``/C=YY/O=Other/CN=Other CA``, whose policy files
confine it to ``/C=YY/O=Other/...``: the red-team case is that CA issuing a certificate with
Alice's DN."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.conftest import need_peer
from tests.unit.security.ca_support import intermediate_ca
from tests.unit.soap.tls_support import tls_pair
from tests.voms_support import VomsServer, fake_voms_proxy, write_lsc
from wmproxy.config import ConfigError, SecuritySettings
from wmproxy.errors import AuthenticationError, ProxyVerificationError
from wmproxy.security import ca_policy
from wmproxy.security import chain as chain_module
from wmproxy.security.ca_policy import CaPolicyError, parse_namespaces, parse_signing_policy
from wmproxy.security.chain import chain_pem, load_pem_chain, verify_chain
from wmproxy.security.delegation import accept_delegated_proxy, new_proxy_request
from wmproxy.security.dn import parse_slash_dn
from wmproxy.security.pki import CertificateAuthority, _ku, create_ca, write_proxy
from wmproxy.security.proxy import Credential, make_proxy, sign_proxy_request
from wmproxy.security.proxy import key_pem as pem_of_key
from wmproxy.security.voms import voms_attributes
from wmproxy.soap import auth

ALICE = "/C=XX/O=wmproxy-demo/OU=Users/CN=Alice"
OLGA = "/C=YY/O=Other/OU=Users/CN=Olga"
OTHER = "/C=YY/O=Other/CN=Other CA"


def _issue(ca: CertificateAuthority, dn: str) -> Credential:
    """A user certificate with the subject ``dn`` (any name) issued by ``ca``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    cert = ca._issue(parse_slash_dn(dn), key.public_key(), now - timedelta(minutes=5), now + timedelta(days=3), [
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        (_ku(digital_signature=True, key_encipherment=True, data_encipherment=True), True)])
    return Credential(cert, key, [])


def _chain(ca: CertificateAuthority, dn: str) -> list[x509.Certificate]:
    return make_proxy(_issue(ca, dn), lifetime=3600).full_chain


class Site(SimpleNamespace):
    demo: CertificateAuthority
    other: CertificateAuthority
    ca_dir: Path

    def namespaces(self, ca: CertificateAuthority) -> Path:
        return self.ca_dir / f"{ca.hash}.namespaces"

    def signing_policy(self, ca: CertificateAuthority) -> Path:
        return self.ca_dir / f"{ca.hash}.signing_policy"


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """Both CAs in one directory, as an IGTF bundle installs them (create_ca writes each CA's
    certificate, CRL, signing_policy and namespaces)."""
    ca_dir = tmp_path / "certificates"
    demo = create_ca(ca_dir)
    other = create_ca(ca_dir, OTHER)
    return Site(demo=demo, other=other, ca_dir=ca_dir)


def _rewrite(path: Path, text: str) -> None:
    """Replace ``path`` by a new file (another inode: the directory changes)."""
    path.unlink()
    path.write_text(text)


class TestParsers:
    def test_namespaces_rules_continuations_comments_self_and_deny(self) -> None:
        rules = parse_namespaces(
            "##########\n#NAMESPACES-VERSION: 1.0\n# comment\n"
            'TO Issuer "/C=XX/O=Example/CN=Example CA" \\\n  PERMIT Subject "/C=XX/O=Example/.*"  # why\n'
            "\n"
            'to issuer SELF deny subject "/C=XX/O=Example/CN=Root.*"\n', "ab12cd34.namespaces")
        assert [(r.issuer, r.permit, r.subject, r.where) for r in rules] == [
            ("/c=xx/o=example/cn=example ca", True, "/C=XX/O=Example/.*", "ab12cd34.namespaces:4"),
            (None, False, "/C=XX/O=Example/CN=Root.*", "ab12cd34.namespaces:7")]
        assert rules[0].pattern.fullmatch("/c=xx/o=example/ou=users/cn=jane doe")
        assert not rules[0].pattern.fullmatch("/c=xx/o=examplex/cn=jane")

    def test_namespaces_patterns_are_literal_but_for_dot_star(self) -> None:
        """IGTF writes names with regular-expression characters as literal names."""
        (thawte,) = parse_namespaces('TO Issuer SELF PERMIT Subject "/C=ZA/O=Thawte Consulting (Pty) Ltd./CN=A"')
        assert thawte.pattern.fullmatch("/c=za/o=thawte consulting (pty) ltd./cn=a")
        assert not thawte.pattern.fullmatch("/c=za/o=thawte consulting pty ltdx/cn=a")
        (bracket,) = parse_namespaces('TO Issuer SELF PERMIT Subject "/C=AE/CN=G4  [Run by the Issuer]"')
        assert bracket.pattern.fullmatch("/c=ae/cn=g4  [run by the issuer]")
        (escaped,) = parse_namespaces(r'TO Issuer SELF PERMIT Subject "/CN=a\.b/.*"')
        assert escaped.pattern.fullmatch("/cn=a.b/cn=x") and not escaped.pattern.fullmatch("/cn=axb/cn=x")

    @pytest.mark.parametrize("text", [
        '#NAMESPACES-VERSION: 2.0\nTO Issuer SELF PERMIT Subject "/C=XX/.*"\n',
        'TO Issuer SELF ALLOW Subject "/C=XX/.*"\n',
        'TO Issuer "/C=XX/CN=CA" PERMIT Subject "/C=XX/.*\n',
        'TO Issuer SELF PERMIT Subject "/C=XX/.*" \\\n',
    ])
    def test_malformed_namespaces_are_refused(self, text: str) -> None:
        with pytest.raises(ca_policy.PolicySyntaxError):
            parse_namespaces(text)

    def test_signing_policy_blocks(self) -> None:
        rules = parse_signing_policy(
            "# EACL\n access_id_CA   X509    '/C=XX/O=Example/CN=Example CA'\n pos_rights globus CA:sign\n"
            " cond_subjects  globus  '\"/C=XX/O=Example/*\" \"/DC=org/DC=example/CN=?x\"'\n"
            "access_id_CA X509 '/C=YY/CN=Unsigning'\ncond_subjects globus '\"/*\"'\n")
        assert [(r.issuer, r.subject) for r in rules] == [
            ("/c=xx/o=example/cn=example ca", "/C=XX/O=Example/*"),
            ("/c=xx/o=example/cn=example ca", "/DC=org/DC=example/CN=?x")]  # no CA:sign: no rule
        assert rules[0].pattern.fullmatch("/c=xx/o=example/ou=a/cn=b")
        assert rules[1].pattern.fullmatch("/dc=org/dc=example/cn=ax") and not rules[1].pattern.fullmatch(
            "/dc=org/dc=example/cn=x")

    def test_signing_policy_of_another_form_is_refused(self) -> None:
        with pytest.raises(ca_policy.PolicySyntaxError):
            parse_signing_policy("access_id_CA X509 '/C=XX/CN=CA'\nneg_rights globus CA:sign\n")

    def test_attribute_labels_are_spelled_one_way(self) -> None:
        assert ca_policy.normalize_dn("/C=XX/CN=A/Email=a@x") == ca_policy.normalize_dn("/c=xx/cn=a/emailAddress=A@X")
        assert ca_policy.normalize_dn("/UserID=a") == ca_policy.normalize_dn("/UID=a")


class TestVerifiedPaths:
    def test_a_foreign_ca_issuing_outside_its_namespace_is_refused(self, site: Site, caplog) -> None:
        with caplog.at_level(logging.WARNING, logger="wmproxy.security.ca_policy"), \
                pytest.raises(CaPolicyError, match=f"the CA {OTHER} may not certify {ALICE}: outside its namespace"):
            verify_chain(_chain(site.other, ALICE), str(site.ca_dir))
        assert any(OTHER in r.getMessage() and ALICE in r.getMessage() for r in caplog.records)

    def test_inside_its_namespace_it_is_accepted(self, site: Site) -> None:
        verify_chain(_chain(site.other, OLGA), str(site.ca_dir))
        verify_chain(_chain(site.demo, ALICE), str(site.ca_dir))

    def test_a_certificate_parsed_again_reuses_its_verdict_and_is_not_kept(self, site: Site) -> None:
        """The verdicts are kept by DER: a user's certificate parsed again (its chain fell out of
        the parsed-chain caches) finds its verdict, and no parsed certificate is kept for it
        (each one kept 9 KB; the cache filled with copies of the same users' certificates)."""
        user = _issue(site.demo, ALICE)
        for _ in range(4):  # each a new proxy, its chain parsed anew: a new object for the same certificate
            pem = chain_pem(make_proxy(user, lifetime=3600).full_chain)
            verify_chain(x509.load_pem_x509_certificates(pem), str(site.ca_dir))
        verdicts = chain_module._load_ca_dir(str(site.ca_dir)).policies._verdicts
        assert len(verdicts) == 1
        assert not any(isinstance(part, x509.Certificate) for kept in verdicts.values() for part in kept)

    def test_a_deny_rule(self, site: Site) -> None:
        _rewrite(site.namespaces(site.other), f'TO Issuer "{OTHER}" PERMIT Subject "/C=YY/O=Other/.*"\n'
                                              'TO Issuer SELF DENY Subject "/C=YY/O=Other/OU=Banned/.*"\n')
        verify_chain(_chain(site.other, OLGA), str(site.ca_dir))
        with pytest.raises(CaPolicyError, match=r"denied by .*namespaces:2"):
            verify_chain(_chain(site.other, "/C=YY/O=Other/OU=Banned/CN=Eve"), str(site.ca_dir))

    def test_the_signing_policy_alone(self, site: Site) -> None:
        site.namespaces(site.other).unlink()
        with pytest.raises(CaPolicyError, match="signing_policy permits \"/C=YY/O=Other/\\*\""):
            verify_chain(_chain(site.other, ALICE), str(site.ca_dir))
        verify_chain(_chain(site.other, OLGA), str(site.ca_dir))

    def test_the_namespaces_alone(self, site: Site) -> None:
        site.signing_policy(site.other).unlink()
        with pytest.raises(CaPolicyError, match="namespaces permits"):
            verify_chain(_chain(site.other, ALICE), str(site.ca_dir))
        verify_chain(_chain(site.other, OLGA), str(site.ca_dir))

    def test_a_ca_with_neither_file_is_not_restricted_unless_required(self, site: Site) -> None:
        """CANL's default (eugridpma_globus); eugridpma_globus_require refuses it."""
        site.namespaces(site.other).unlink()
        site.signing_policy(site.other).unlink()
        spoofed = _chain(site.other, ALICE)
        verify_chain(spoofed, str(site.ca_dir))
        try:
            ca_policy.configure(str(site.ca_dir), "eugridpma_globus_require")
            chain_module._verified_chains.clear()
            with pytest.raises(CaPolicyError, match="no namespaces or signing_policy file"):
                verify_chain(spoofed, str(site.ca_dir))
            verify_chain(_chain(site.demo, ALICE), str(site.ca_dir))  # the demo CA has its files
        finally:
            ca_policy._modes.pop(str(site.ca_dir), None)

    def test_conflicting_files_the_namespaces_decide_unless_both_are_enforced(self, site: Site) -> None:
        _rewrite(site.namespaces(site.other), f'TO Issuer "{OTHER}" PERMIT Subject "/C=XX/O=wmproxy-demo/.*"\n')
        spoofed = _chain(site.other, ALICE)
        verify_chain(spoofed, str(site.ca_dir))  # the signing policy (/C=YY/O=Other/*) is not read
        try:
            ca_policy.configure(str(site.ca_dir), "eugridpma_and_globus")
            chain_module._verified_chains.clear()
            with pytest.raises(CaPolicyError, match="signing_policy permits"):
                verify_chain(spoofed, str(site.ca_dir))
            ca_policy.configure(str(site.ca_dir), "ignore")
            chain_module._verified_chains.clear()
            verify_chain(_chain(site.other, "/C=ZZ/CN=Anyone"), str(site.ca_dir))
        finally:
            ca_policy._modes.pop(str(site.ca_dir), None)

    def test_a_broken_namespaces_file_leaves_the_signing_policy_to_decide(self, site: Site, caplog) -> None:
        _rewrite(site.namespaces(site.other), "TO Issuer SELF PERMIT everything\n")
        with caplog.at_level(logging.ERROR, logger="wmproxy.security.ca_policy"), \
                pytest.raises(CaPolicyError, match="signing_policy permits"):
            verify_chain(_chain(site.other, ALICE), str(site.ca_dir))
        assert any("cannot be used" in r.getMessage() for r in caplog.records)
        verify_chain(_chain(site.other, OLGA), str(site.ca_dir))
        site.signing_policy(site.other).unlink()  # nothing usable left: refused, never let through
        with pytest.raises(CaPolicyError, match="cannot be used"):
            verify_chain(_chain(site.other, OLGA), str(site.ca_dir))

    def test_an_intermediate_ca_is_checked_against_its_root_and_its_users_against_it(self, site: Site) -> None:
        outside = intermediate_ca(site.demo, "/C=ZZ/O=Elsewhere/CN=Sub CA")
        with pytest.raises(CaPolicyError, match="wmproxy Demo CA may not certify /C=ZZ/O=Elsewhere/CN=Sub CA"):
            verify_chain(_chain(outside, "/C=ZZ/O=Elsewhere/OU=Users/CN=Zed"), str(site.ca_dir))
        inside = intermediate_ca(site.demo, "/C=XX/O=wmproxy-demo/CN=Sub CA")
        # the subordinate's namespace written in its root's file (as IGTF bundles do)
        with site.namespaces(site.demo).open("a") as fh:
            fh.write('TO Issuer "/C=XX/O=wmproxy-demo/CN=Sub CA" PERMIT Subject "/C=XX/O=wmproxy-demo/OU=Sub/.*"\n')
        verify_chain(_chain(inside, "/C=XX/O=wmproxy-demo/OU=Sub/CN=Sam"), str(site.ca_dir))
        with pytest.raises(CaPolicyError, match="Sub CA may not certify /C=XX/O=wmproxy-demo/OU=Users/CN=Sam"):
            verify_chain(_chain(inside, "/C=XX/O=wmproxy-demo/OU=Users/CN=Sam"), str(site.ca_dir))

    def test_a_policy_rewritten_in_place_is_seen_by_the_next_verification(self, site: Site, monkeypatch) -> None:
        """Written over in place (the directory's stat unchanged, its listing kept): the chain
        verified before (kept as proven) is checked again."""
        monkeypatch.setattr(chain_module, "SETTLED_NS", 0)
        olga = _chain(site.other, OLGA)
        os.utime(site.ca_dir, (1_000_000_000, 1_000_000_000))
        verify_chain(olga, str(site.ca_dir))
        verify_chain(olga, str(site.ca_dir))  # kept
        before = os.stat(site.ca_dir)
        with open(site.namespaces(site.other), "w") as fh:
            fh.write(f'TO Issuer "{OTHER}" PERMIT Subject "/C=YY/O=Other/OU=Staff/.*"\n')
        after = os.stat(site.ca_dir)
        assert (before.st_mtime_ns, before.st_ctime_ns) == (after.st_mtime_ns, after.st_ctime_ns)
        with pytest.raises(CaPolicyError, match="OU=Staff"):
            verify_chain(olga, str(site.ca_dir))


def _openssl_old_hash(cert: Path) -> str:
    """``openssl x509 -noout -subject_hash_old`` of the PEM certificate ``cert``."""
    return subprocess.run(["openssl", "x509", "-noout", "-subject_hash_old", "-in", str(cert)],
                          capture_output=True, text=True, check=True).stdout.strip()


class TestOldStyleNames:
    """The policy files named by a CA's old-style (MD5) subject hash, as IGTF bundles also ship
    them (and some sites only them)."""

    @staticmethod
    def _old(ca: CertificateAuthority) -> str:
        return ca_policy.old_name_hash(ca.cert.subject.public_bytes())

    def test_the_old_style_hash_is_openssls(self, site: Site, tmp_path: Path) -> None:
        odd = create_ca(tmp_path / "odd", "/DC=org/DC=example/O=Grid Ünïversity/CN=Odd CA/emailAddress=ca@x.org")
        for ca in (site.demo, site.other, odd):
            assert self._old(ca) == _openssl_old_hash(ca.cert_path)
            assert self._old(ca) != ca.hash

    def test_policy_files_under_the_old_name_only_are_enforced(self, site: Site) -> None:
        old = self._old(site.other)
        site.namespaces(site.other).rename(site.ca_dir / f"{old}.namespaces")
        site.signing_policy(site.other).rename(site.ca_dir / f"{old}.signing_policy")
        with pytest.raises(CaPolicyError, match=f"outside its namespace \\({old}.namespaces permits"):
            verify_chain(_chain(site.other, ALICE), str(site.ca_dir))
        verify_chain(_chain(site.other, OLGA), str(site.ca_dir))
        (site.ca_dir / f"{old}.namespaces").unlink()  # the old-named signing policy decides then
        with pytest.raises(CaPolicyError, match=f"{old}.signing_policy permits"):
            verify_chain(_chain(site.other, ALICE), str(site.ca_dir))

    def test_both_names_with_different_rules_each_must_accept(self, site: Site) -> None:
        old = site.ca_dir / f"{self._old(site.other)}.namespaces"
        old.write_text(f'TO Issuer "{OTHER}" PERMIT Subject "/C=YY/O=Other/OU=Staff/.*"\n')
        with pytest.raises(CaPolicyError, match=f"outside its namespace \\({old.name} permits"):
            verify_chain(_chain(site.other, OLGA), str(site.ca_dir))  # the new-named file permits her
        verify_chain(_chain(site.other, "/C=YY/O=Other/OU=Staff/CN=Sam"), str(site.ca_dir))
        old.write_text(site.namespaces(site.other).read_text())  # the same rules: one verdict
        verify_chain(_chain(site.other, OLGA), str(site.ca_dir))
        _rewrite(old, f'TO Issuer SELF DENY Subject "{OLGA}"\nTO Issuer SELF PERMIT Subject "/C=YY/.*"\n')
        with pytest.raises(CaPolicyError, match=f"denied by {old.name}:1"):
            verify_chain(_chain(site.other, OLGA), str(site.ca_dir))

    def test_an_unparsable_old_named_file_is_a_broken_file(self, site: Site) -> None:
        site.signing_policy(site.other).unlink()
        (site.ca_dir / f"{self._old(site.other)}.namespaces").write_text("TO Issuer SELF PERMIT everything\n")
        with pytest.raises(CaPolicyError, match="its policy file cannot be used"):
            verify_chain(_chain(site.other, OLGA), str(site.ca_dir))

    def test_an_intermediate_ca_sent_in_the_chain_is_looked_up_by_its_old_name(self, site: Site) -> None:
        sub = intermediate_ca(site.demo, "/C=XX/O=wmproxy-demo/CN=Sub CA")
        sub.cert_path.unlink()  # not in the directory: the caller sends it
        (site.ca_dir / f"{self._old(sub)}.namespaces").write_text(
            'TO Issuer SELF PERMIT Subject "/C=XX/O=wmproxy-demo/OU=Sub/.*"\n')

        def chain(dn: str) -> list[x509.Certificate]:
            user = _issue(sub, dn)
            return make_proxy(Credential(user.cert, user.key, [sub.cert]), lifetime=3600).full_chain

        verify_chain(chain("/C=XX/O=wmproxy-demo/OU=Sub/CN=Sam"), str(site.ca_dir))
        with pytest.raises(CaPolicyError, match="Sub CA may not certify /C=XX/O=wmproxy-demo/OU=Users/CN=Sam"):
            verify_chain(chain("/C=XX/O=wmproxy-demo/OU=Users/CN=Sam"), str(site.ca_dir))

    def test_an_old_named_namespaces_does_not_override_the_new_named_signing_policy(self, site: Site) -> None:
        """In eugridpma_globus mode the namespaces decide over the signing policy, but only among
        the files of one name: the new-named signing policy still refuses what it refuses."""
        site.namespaces(site.other).unlink()
        (site.ca_dir / f"{self._old(site.other)}.namespaces").write_text('TO Issuer SELF PERMIT Subject "/C=.*"\n')
        with pytest.raises(CaPolicyError, match=f"{site.other.hash}.signing_policy permits"):
            verify_chain(_chain(site.other, ALICE), str(site.ca_dir))
        verify_chain(_chain(site.other, OLGA), str(site.ca_dir))  # both permit her

    def test_an_intermediates_old_named_file_does_not_cut_off_its_roots_file(self, site: Site) -> None:
        sub = intermediate_ca(site.demo, "/C=XX/O=wmproxy-demo/CN=Sub CA")
        with site.namespaces(site.demo).open("a") as fh:  # the root's file names the intermediate
            fh.write('TO Issuer "/C=XX/O=wmproxy-demo/CN=Sub CA" PERMIT Subject "/C=XX/O=wmproxy-demo/OU=Sub/.*"\n')
        (site.ca_dir / f"{sub.hash}.namespaces").write_text(  # the new-named file names another CA only
            f'TO Issuer "{OTHER}" PERMIT Subject "/C=YY/.*"\n')
        (site.ca_dir / f"{self._old(sub)}.namespaces").write_text(
            'TO Issuer SELF PERMIT Subject "/C=XX/O=wmproxy-demo/.*"\n')
        with pytest.raises(CaPolicyError, match=f"{site.demo.hash}.namespaces permits"):
            verify_chain(_chain(sub, "/C=XX/O=wmproxy-demo/OU=Users/CN=Sam"), str(site.ca_dir))
        verify_chain(_chain(sub, "/C=XX/O=wmproxy-demo/OU=Sub/CN=Sam"), str(site.ca_dir))

    def test_an_old_name_that_is_another_cas_hash_is_not_read(self, site: Site, monkeypatch) -> None:
        """A 32-bit hash collision (simulated: none can be found here) of the other CA's old-style
        hash with the demo CA's hash: the demo CA's files (its SELF rules) are not the other's."""
        real = ca_policy.old_name_hash
        other = site.other.cert.subject.public_bytes()
        monkeypatch.setattr(ca_policy, "old_name_hash",
                            lambda der: site.demo.hash if der == other else real(der))
        _rewrite(site.namespaces(site.demo), 'TO Issuer SELF PERMIT Subject "/C=XX/O=wmproxy-demo/.*"\n')
        verify_chain(_chain(site.other, OLGA), str(site.ca_dir))  # the demo CA's SELF rules permit /C=XX only
        with pytest.raises(CaPolicyError, match=f"{site.other.hash}.namespaces permits"):
            verify_chain(_chain(site.other, ALICE), str(site.ca_dir))

    def test_an_old_named_file_rewritten_in_place_is_seen_by_the_next_verification(self, site: Site,
                                                                                   monkeypatch) -> None:
        """As a new-named one: the kept chain's CA files (its old-named policy files among them)
        are looked at, not the whole directory (whose walk is put off here)."""
        monkeypatch.setattr(chain_module, "SETTLED_NS", 0)
        monkeypatch.setattr(chain_module, "CA_FILES_RESTAT", 1e9)
        old = site.ca_dir / f"{self._old(site.other)}.namespaces"
        old.write_text(site.namespaces(site.other).read_text())
        olga = _chain(site.other, OLGA)
        os.utime(site.ca_dir, (1_000_000_000, 1_000_000_000))
        verify_chain(olga, str(site.ca_dir))
        verify_chain(olga, str(site.ca_dir))  # kept
        with open(old, "w") as fh:
            fh.write(f'TO Issuer "{OTHER}" PERMIT Subject "/C=YY/O=Other/OU=Staff/.*"\n')
        with pytest.raises(CaPolicyError, match="OU=Staff"):
            verify_chain(olga, str(site.ca_dir))


class TestEdges:
    def test_the_tls_caller_is_refused_with_an_authentication_fault(self, site: Site, tmp_path: Path) -> None:
        """The handshake (OpenSSL, no namespace check) lets the chain in; the service refuses
        to name its holder."""
        host_cert, host_key = site.demo.issue_host("localhost", tmp_path / "host")
        tls_site = SimpleNamespace(host_cert=host_cert, host_key=host_key, ca_dir=site.ca_dir)
        spoofed = tmp_path / "spoofed.pem"
        write_proxy(_issue(site.other, ALICE), spoofed, lifetime=3600)
        auth._cache.clear()
        server, client = tls_pair(tls_site, spoofed)  # type: ignore[arg-type]
        try:
            ders = auth.verified_chain_der(server)
            with pytest.raises(AuthenticationError, match=f"refused: the CA {OTHER} may not certify {ALICE}"):
                auth.tls_principal({"gunicorn.socket": server}, ca_dir=str(site.ca_dir))
            assert len(ders) == 3  # proxy, spoofed certificate, the Other CA
        finally:
            client.close()
            server.close()
            auth._cache.clear()

    def test_put_proxy_refuses_a_chain_outside_the_namespace(self, site: Site) -> None:
        caller = make_proxy(_issue(site.other, ALICE), lifetime=3600)
        key_pem, csr = new_proxy_request(bits=2048)
        with pytest.raises(ProxyVerificationError, match=f"may not certify {ALICE}"):
            accept_delegated_proxy(key_pem, sign_proxy_request(csr, caller, lifetime=60), ALICE, str(site.ca_dir))

    def test_put_proxy_over_kept_issuers_sees_a_policy_change(self, site: Site, monkeypatch) -> None:
        """The second delegation over the same issuers has only its new leaf checked; a policy
        file of the path's CA rewritten in place ends that."""
        monkeypatch.setattr(chain_module, "SETTLED_NS", 0)
        caller = make_proxy(_issue(site.other, OLGA), lifetime=3600)
        os.utime(site.ca_dir, (1_000_000_000, 1_000_000_000))
        for _ in range(2):
            key_pem, csr = new_proxy_request(bits=2048)
            accept_delegated_proxy(key_pem, sign_proxy_request(csr, caller, lifetime=60), OLGA, str(site.ca_dir))
        assert any(key[0] == str(site.ca_dir) for key in chain_module._verified_issuers)
        with open(site.signing_policy(site.other), "a") as fh:  # in place; the namespaces decide anyway
            fh.write("# touched\n")
        with open(site.namespaces(site.other), "w") as fh:
            fh.write(f'TO Issuer "{OTHER}" PERMIT Subject "/C=YY/O=Other/OU=Staff/.*"\n')
        key_pem, csr = new_proxy_request(bits=2048)
        with pytest.raises(ProxyVerificationError, match="may not certify /C=YY/O=Other/OU=Users/CN=Olga"):
            accept_delegated_proxy(key_pem, sign_proxy_request(csr, caller, lifetime=60), OLGA, str(site.ca_dir))

    def test_a_voms_server_certified_outside_its_cas_namespace_signs_no_ac(self, site: Site, tmp_path: Path) -> None:
        """A VOMS server certificate with the trusted server's DN, issued by the Other CA: the AC
        does not verify; with the Other CA's namespace widened to that DN, it does."""
        if shutil.which("voms-proxy-fake") is None:
            need_peer("voms-proxy-fake (voms-clients) is not installed")
        dn = "/C=XX/O=wmproxy-demo/OU=Hosts/CN=voms.localhost"
        voms = _issue(site.other, dn)
        cert, key = tmp_path / "voms" / "hostcert.pem", tmp_path / "voms" / "hostkey.pem"
        cert.parent.mkdir()
        cert.write_bytes(chain_pem([voms.cert]))
        key.write_bytes(pem_of_key(voms.key))
        key.chmod(0o600)
        server = VomsServer(cert, key, dn, tmp_path / "vomsdir")
        write_lsc(server.vomsdir, dn, OTHER)
        home = tmp_path / "alice"
        alice = site.demo.issue_user("Alice", home)
        assert alice.cert.subject == parse_slash_dn(ALICE)
        pki = SimpleNamespace(root=tmp_path, ca_dir=site.ca_dir, users={"alice": SimpleNamespace(name="alice")})
        proxy = fake_voms_proxy(pki, server, tmp_path / "voms-proxy.pem")  # type: ignore[arg-type]
        chain = load_pem_chain(proxy.read_bytes())
        (ac,) = voms_attributes(chain, vomsdir=str(server.vomsdir), ca_dir=str(site.ca_dir))
        assert not ac.verified
        assert f"VOMS server certificate: Proxy exception: the CA {OTHER} may not certify {dn}" in ac.verify_error
        _rewrite(site.namespaces(site.other),
                 f'TO Issuer "{OTHER}" PERMIT Subject "/C=XX/O=wmproxy-demo/OU=Hosts/.*"\n')
        (ac,) = voms_attributes(chain, vomsdir=str(server.vomsdir), ca_dir=str(site.ca_dir))
        assert ac.verified, ac.verify_error


def test_the_mode_is_a_security_setting() -> None:
    assert SecuritySettings().namespace_mode == "eugridpma_globus"
    assert SecuritySettings(namespace_mode="ignore").namespace_mode == "ignore"
    with pytest.raises(ConfigError, match="namespace_mode"):
        SecuritySettings(namespace_mode="globus_only")
