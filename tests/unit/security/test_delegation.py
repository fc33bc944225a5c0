from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from tests.conftest import Pki
from tests.support import INDEPENDENT, PRIVATE_POLICY, odd_proxy, policy_proxy
from tests.unit.security.signing_support import MD5_RSA, SHA1_RSA, resigned
from wmproxy.errors import InvalidDelegationIdError, LimitedProxyError, ProxyPolicyError, ProxyVerificationError
from wmproxy.security.chain import chain_pem, is_proxy, load_pem_chain, verify_chain, verify_delegated_chain
from wmproxy.security.delegation import (
    accept_delegated_proxy,
    check_delegation_id,
    default_delegation_id,
    new_proxy_request,
)
from wmproxy.security.dn import slash_dn
from wmproxy.security.proxy import load_credential, make_proxy, sign_proxy_request

DN = "/C=XX/O=wmproxy-demo/OU=Users/CN=Jane Doe"


@pytest.fixture
def request_pair():
    return new_proxy_request(bits=2048)


def _htproxyput_like(signer, public_key) -> bytes:
    """What gridsite htproxyput sends (peers.md 6.3): subject + CN, keyUsage, no proxyCertInfo."""
    subject = x509.Name([*signer.cert.subject.rdns, x509.RelativeDistinguishedName(
        [x509.NameAttribute(NameOID.COMMON_NAME, "12345")])])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(signer.cert.subject)
        .public_key(public_key).serial_number(12345)
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.KeyUsage(True, False, True, False, True, False, False, False, False), critical=True)
        .sign(signer.key, hashes.SHA256())
    )
    return chain_pem([cert, *signer.full_chain])


def _legacy_proxy(user) -> object:
    """What ``grid-proxy-init -old`` makes: subject = the user's + ``CN=proxy``, no proxyCertInfo."""
    from wmproxy.security.proxy import Credential

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([*user.cert.subject.rdns,
                                 x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "proxy")])]))
        .issuer_name(user.cert.subject).public_key(key.public_key()).serial_number(4242)
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=2))
        .sign(user.key, hashes.SHA256())
    )
    return Credential(cert, key, [user.cert, *user.chain])


class TestNewProxyRequest:
    def test_csr_shape(self, request_pair):
        key_pem, csr_pem = request_pair
        assert csr_pem.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
        csr = x509.load_pem_x509_csr(csr_pem)
        key = serialization.load_pem_private_key(key_pem, None)
        assert csr.is_signature_valid and csr.public_key() == key.public_key()
        assert csr.subject.rfc4514_string() == "CN=proxy"
        assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)


class TestAcceptDelegatedProxy:
    def test_happy_path(self, ca, proxy, request_pair):
        key_pem, csr = request_pair
        signed = sign_proxy_request(csr, proxy, lifetime=1800)
        got = accept_delegated_proxy(key_pem, signed, DN, str(ca.directory))
        assert got.dn == DN and got.fqans == ()
        leaf = load_pem_chain(signed)[0]
        assert got.not_after == leaf.not_valid_after_utc and got.not_after.tzinfo is not None
        assert got.not_before == leaf.not_valid_before_utc
        stored = load_credential(got.pem)  # grid layout: leaf, key, chain
        assert stored.cert == leaf and stored.key is not None
        assert stored.chain == proxy.full_chain
        verify_chain(stored.full_chain, str(ca.directory))

    def test_wrong_key(self, ca, proxy, request_pair):
        _key, csr = request_pair
        other_key, _csr = new_proxy_request(bits=2048)
        with pytest.raises(ProxyVerificationError, match="does not match the proxy request key"):
            accept_delegated_proxy(other_key, sign_proxy_request(csr, proxy, lifetime=60), DN, str(ca.directory))

    def test_not_an_rfc_proxy(self, ca, proxy, request_pair):
        key_pem, csr = request_pair
        sent = _htproxyput_like(proxy, x509.load_pem_x509_csr(csr).public_key())
        assert not is_proxy(load_pem_chain(sent)[0])
        with pytest.raises(ProxyVerificationError, match="the delegated credential is not an RFC 3820 proxy"):
            accept_delegated_proxy(key_pem, sent, DN, str(ca.directory))

    @pytest.mark.parametrize(("language", "policy", "text"), [
        (INDEPENDENT, None, "an independent proxy (RFC 3820 policy language id-ppl-independent"),
        (*PRIVATE_POLICY, f"policy language {PRIVATE_POLICY[0]}, which this service does not understand"),
    ])
    def test_a_proxy_of_another_policy_language_is_refused(self, ca, user, proxy, request_pair, language, policy,
                                                           text):
        """RFC 3820: an independent proxy has none of its issuer's rights, a language not understood
        cannot be read as inheritAll: refused as the signer's chain and as the delegated proxy."""
        key_pem, csr = request_pair
        signed_by = sign_proxy_request(csr, policy_proxy(user, language, policy), lifetime=600)
        leaf = chain_pem(policy_proxy(proxy, language, policy, csr_pem=csr).full_chain)
        for sent in (signed_by, leaf):
            with pytest.raises(ProxyPolicyError) as err:
                accept_delegated_proxy(key_pem, sent, DN, str(ca.directory))
            assert text in str(err.value) and err.value.policy_language == language
        # a limited proxy keeps its refusal
        with pytest.raises(LimitedProxyError, match="a limited proxy cannot be delegated"):
            accept_delegated_proxy(key_pem, sign_proxy_request(csr, make_proxy(proxy, lifetime=600, limited=True),
                                                               lifetime=600), DN, str(ca.directory))

    def test_other_dn(self, ca, proxy, request_pair):
        key_pem, csr = request_pair
        with pytest.raises(ProxyVerificationError, match="delegated proxy does not belong to the caller"):
            accept_delegated_proxy(key_pem, sign_proxy_request(csr, proxy, lifetime=60),
                                   "/C=XX/O=wmproxy-demo/OU=Users/CN=Mallory", str(ca.directory))

    def test_expired(self, ca, proxy, request_pair):
        key_pem, csr = request_pair
        signed = sign_proxy_request(csr, proxy, lifetime=60)
        later = datetime.now(UTC) + timedelta(minutes=10)
        with pytest.raises(ProxyVerificationError, match="expired"):
            accept_delegated_proxy(key_pem, signed, DN, str(ca.directory), now=later)

    def test_not_yet_valid(self, ca, proxy, request_pair):
        key_pem, csr = request_pair
        signed = sign_proxy_request(csr, proxy, lifetime=60)
        earlier = datetime.now(UTC) - timedelta(hours=1)
        with pytest.raises(ProxyVerificationError, match="in the future"):
            accept_delegated_proxy(key_pem, signed, DN, str(ca.directory), now=earlier)

    def test_untrusted_ca(self, other_ca, proxy, request_pair):
        key_pem, csr = request_pair
        with pytest.raises(ProxyVerificationError, match="unable to get local issuer certificate"):
            accept_delegated_proxy(key_pem, sign_proxy_request(csr, proxy, lifetime=60), DN, str(other_ca.directory))

    def test_revoked_user(self, fresh_ca, request_pair):
        user = fresh_ca.issue_user("Jane Doe")
        key_pem, csr = request_pair
        signed = sign_proxy_request(csr, make_proxy(user, lifetime=600), lifetime=60)
        fresh_ca.revoke(user.cert)
        with pytest.raises(ProxyVerificationError, match="certificate revoked"):
            accept_delegated_proxy(key_pem, signed, DN, str(fresh_ca.directory))

    def test_a_crl_rewritten_in_place_is_seen_by_the_next_put(self, fresh_ca, tmp_path, monkeypatch):
        """A CRL revoking the caller, written over the old one in place (the CA directory's own
        stat unchanged, its listing kept): the next putProxy is refused."""
        import os

        from wmproxy.security import chain as chain_module
        from wmproxy.security.pki import CertificateAuthority

        monkeypatch.setattr(chain_module, "SETTLED_NS", 0)
        user = fresh_ca.issue_user("Jane Doe")
        caller = make_proxy(user, lifetime=3600)
        directory = fresh_ca.directory
        os.utime(directory, (1_000_000_000, 1_000_000_000))
        key_pem, csr = new_proxy_request(bits=2048)
        accept_delegated_proxy(key_pem, sign_proxy_request(csr, caller, lifetime=60), DN, str(directory))
        assert str(directory) in chain_module._listings
        scratch = CertificateAuthority(fresh_ca.cert, fresh_ca.key, tmp_path / "scratch")
        scratch.revoke(user.cert)
        before = os.stat(directory)
        with open(fresh_ca.crl_path, "wb") as fh:  # in place: same inode, the directory untouched
            fh.write(scratch.crl_path.read_bytes())
        after = os.stat(directory)
        assert (before.st_mtime_ns, before.st_ctime_ns) == (after.st_mtime_ns, after.st_ctime_ns)
        key_pem, csr = new_proxy_request(bits=2048)
        with pytest.raises(ProxyVerificationError, match="certificate revoked"):
            accept_delegated_proxy(key_pem, sign_proxy_request(csr, caller, lifetime=60), DN, str(directory))

    def test_leaf_not_signed_by_next_cert(self, ca, user, proxy, request_pair):
        key_pem, csr = request_pair
        chain = load_pem_chain(sign_proxy_request(csr, proxy, lifetime=60))
        other = make_proxy(user, lifetime=60)
        with pytest.raises(ProxyVerificationError, match="not signed by"):
            accept_delegated_proxy(key_pem, chain_pem([chain[0], other.cert, user.cert]), DN, str(ca.directory))

    def test_next_cert_named_as_the_issuer_but_not_the_signer(self, ca, user, proxy, request_pair):
        """chain[1] has the leaf issuer's subject (and passes the subject rule) but another key;
        the real issuer comes later in the chain. OpenSSL builds its path through the real issuer
        (the leaf's AKID does not match chain[1]'s SKI) and verifies it: the signature check of
        chain[1] must still refuse (issue 14: it no longer runs when OpenSSL's path proves it)."""
        key_pem, csr = request_pair
        chain = load_pem_chain(sign_proxy_request(csr, proxy, lifetime=60))
        assert chain[1] == proxy.cert
        twin = _twin(proxy.cert, user)
        sent = chain_pem([chain[0], twin, proxy.cert, user.cert])
        verify_chain(load_pem_chain(sent), str(ca.directory))  # OpenSSL alone accepts this chain
        with pytest.raises(ProxyVerificationError, match="not signed by"):
            accept_delegated_proxy(key_pem, sent, DN, str(ca.directory))

    @pytest.mark.parametrize("caller", [DN, "/C=XX/O=wmproxy-demo/OU=Users/CN=Mallory"])
    def test_a_bad_signature_is_reported_before_later_checks(self, ca, user, proxy, request_pair, caller):
        """A leaf signed by another key than chain[1]'s: the signature's refusal comes first,
        whether or not a later check (the caller's identity) also fails."""
        key_pem, csr = request_pair
        chain = load_pem_chain(sign_proxy_request(csr, proxy, lifetime=60))
        sent = chain_pem([chain[0], _twin(proxy.cert, user), user.cert])
        with pytest.raises(ProxyVerificationError, match="not signed by"):
            accept_delegated_proxy(key_pem, sent, caller, str(ca.directory))

    def test_certificates_sent_beside_the_verified_path_are_not_stored(self, ca, user, proxy, request_pair):
        """An expired and a short-lived certificate sent after the chain (an old copy of a
        certificate, a stray one), and the CA: OpenSSL's path goes through neither extra; the
        stored chain and its validity are that path's, from the leaf through the user
        certificate."""
        key_pem, csr = request_pair
        signed = sign_proxy_request(csr, proxy, lifetime=1800)
        now = datetime.now(UTC)
        bygone = ca.issue_user("Bygone", not_after=now - timedelta(hours=1), lifetime_days=1).cert
        brief = ca.issue_user("Brief", not_after=now + timedelta(minutes=10), lifetime_days=1).cert
        other_proxy = make_proxy(user, lifetime=300).cert  # the user's, beside the path
        sent = signed + chain_pem([bygone, other_proxy, brief, ca.cert])
        got = accept_delegated_proxy(key_pem, sent, DN, str(ca.directory))
        leaf = load_pem_chain(signed)[0]
        assert (got.not_before, got.not_after) == (leaf.not_valid_before_utc, leaf.not_valid_after_utc)
        stored = load_credential(got.pem)
        assert stored.cert == leaf and stored.chain == proxy.full_chain

    def test_a_proxy_of_another_user_sent_with_the_callers_certificate_is_refused(self, ca, request_pair):
        """Mallory holds a proxy of Jane's (delegated to her) and sends it with her own
        certificate before Jane's: the first non-proxy certificate of what she sent is hers, but
        the path OpenSSL verifies ends at Jane's."""
        jane, mallory = ca.issue_user("Jane Doe"), ca.issue_user("Mallory")
        janes = make_proxy(jane, lifetime=3600)
        key_pem, csr = request_pair
        leaf = load_pem_chain(sign_proxy_request(csr, janes, lifetime=600))[0]
        sent = chain_pem([leaf, janes.cert, mallory.cert, jane.cert])
        verify_chain(load_pem_chain(sent), str(ca.directory))  # OpenSSL alone accepts it
        with pytest.raises(ProxyVerificationError, match="delegated proxy does not belong to the caller"):
            accept_delegated_proxy(key_pem, sent, "/C=XX/O=wmproxy-demo/OU=Users/CN=Mallory", str(ca.directory))

    def test_a_sha1_signed_proxy_is_verified_and_accepted(self, ca, proxy, request_pair):
        """gridsite clients sign with SHA-1 (peers.md §6.3): its signature is verified, not taken
        for another signer's ("not signed by the next certificate of the chain")."""
        key_pem, csr = request_pair
        chain = load_pem_chain(sign_proxy_request(csr, proxy, lifetime=1800))
        leaf = resigned(chain[0], proxy.key, hashes.SHA1(), SHA1_RSA)  # noqa: S303 - what gridsite signs
        assert leaf.signature_algorithm_oid.dotted_string == SHA1_RSA
        got = accept_delegated_proxy(key_pem, chain_pem([leaf, *chain[1:]]), DN, str(ca.directory))
        assert got.dn == DN and load_credential(got.pem).cert == leaf

    def test_the_new_proxy_is_not_kept_with_the_issuers(self, fresh_ca):
        """Not in the parsed certificates, their encodings or their OpenSSL copies, whether
        OpenSSL verified the chain (the first put) or the issuers were known (the second)."""
        import ssl

        from wmproxy.security.chain import _encodings, _openssl_certs, _pem_blocks, _pem_certificates

        caller = make_proxy(fresh_ca.issue_user("Jane Doe"), lifetime=3600)
        for _ in range(2):
            key_pem, csr = new_proxy_request(bits=2048)
            sent = sign_proxy_request(csr, caller, lifetime=1800)
            accept_delegated_proxy(key_pem, sent, DN, str(fresh_ca.directory))
            leaf, *issuers = _pem_blocks(sent)
            der = ssl.PEM_cert_to_DER_cert(leaf.decode())  # not parsed here: that would keep it
            assert leaf not in _pem_certificates and all(block in _pem_certificates for block in issuers)
            assert der not in _openssl_certs
            assert all(entry[1] != der for entry in _encodings.values())

    @pytest.mark.parametrize("digest", ["SHA-1", "SHA-256"])
    def test_a_leaf_naming_its_issuer_in_another_letter_case_is_refused(self, fresh_ca, digest):
        """OpenSSL links a leaf to chain[1] by names compared case-folded, and verifies its
        signature; the leaf's issuer must still be chain[1]'s subject exactly (the check by hand
        is not skipped for it)."""
        from wmproxy.security.pci import INHERIT_ALL_OID, ProxyCertInfo, pci_extension

        caller = make_proxy(fresh_ca.issue_user("Jane Doe"), lifetime=3600)
        key_pem, _ = new_proxy_request(bits=2048)
        key = serialization.load_pem_private_key(key_pem, password=None)
        lowered = x509.Name([x509.RelativeDistinguishedName(
            [x509.NameAttribute(a.oid, str(a.value).lower() if a.value == "Jane Doe" else a.value) for a in rdn])
            for rdn in caller.cert.subject.rdns])
        assert lowered != caller.cert.subject
        now = datetime.now(UTC)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([*caller.cert.subject.rdns, x509.RelativeDistinguishedName(
                       [x509.NameAttribute(NameOID.COMMON_NAME, "4242")])]))
                   .issuer_name(lowered).public_key(key.public_key()).serial_number(4242)
                   .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
                   .add_extension(pci_extension(ProxyCertInfo(INHERIT_ALL_OID, None)), critical=True)
                   .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False),
                                  critical=True))
        leaf = builder.sign(caller.key, hashes.SHA256())
        if digest == "SHA-1":
            leaf = resigned(leaf, caller.key, hashes.SHA1(), SHA1_RSA)  # noqa: S303 - what gridsite signs
        chain = [leaf, caller.cert, *caller.chain]
        assert verify_delegated_chain(chain, str(fresh_ca.directory))[0] is True  # OpenSSL: proven
        with pytest.raises(ProxyVerificationError, match="not signed by the next certificate of the chain"):
            accept_delegated_proxy(key_pem, chain_pem(chain), DN, str(fresh_ca.directory))

    def test_a_sha1_signature_is_verified_once(self, fresh_ca, monkeypatch):
        """By OpenSSL the first time, by the known issuers' check the next (it was verified a
        second time by hand after either)."""
        from wmproxy.security import chain as chain_module
        from wmproxy.security import delegation as delegation_module

        monkeypatch.setattr(chain_module, "VERIFIED_ISSUERS_TTL", 3600.0)  # not the 60 s a loaded machine may take
        checks = []
        signed_by = chain_module.sha1_signed_by

        def counted(cert, issuer):
            checks.append(cert)
            return signed_by(cert, issuer)

        monkeypatch.setattr(chain_module, "sha1_signed_by", counted)
        monkeypatch.setattr(delegation_module, "sha1_signed_by", counted)
        caller = make_proxy(fresh_ca.issue_user("Jane Doe"), lifetime=3600)
        for expected in ([], [1]):
            key_pem, csr = new_proxy_request(bits=2048)
            chain = load_pem_chain(sign_proxy_request(csr, caller, lifetime=1800))
            leaf = resigned(chain[0], caller.key, hashes.SHA1(), SHA1_RSA)  # noqa: S303 - what gridsite signs
            got = accept_delegated_proxy(key_pem, chain_pem([leaf, *chain[1:]]), DN, str(fresh_ca.directory))
            assert load_credential(got.pem).cert == leaf
            assert len(checks) == len(expected), checks
            checks.clear()

    def test_a_sha1_signature_by_another_key_is_refused(self, ca, user, proxy, request_pair):
        key_pem, csr = request_pair
        chain = load_pem_chain(sign_proxy_request(csr, proxy, lifetime=1800))
        forged = resigned(chain[0], rsa.generate_private_key(public_exponent=65537, key_size=2048),
                           hashes.SHA1(), SHA1_RSA)  # noqa: S303 - as above
        with pytest.raises(ProxyVerificationError, match="not signed by the next certificate of the chain"):
            accept_delegated_proxy(key_pem, chain_pem([forged, *chain[1:]]), DN, str(ca.directory))

    def test_an_md5_signed_proxy_is_refused_by_its_algorithm(self, ca, proxy, request_pair):
        key_pem, csr = request_pair
        chain = load_pem_chain(sign_proxy_request(csr, proxy, lifetime=1800))
        leaf = resigned(chain[0], proxy.key, hashes.MD5(), MD5_RSA)  # noqa: S303 - refused
        with pytest.raises(ProxyVerificationError) as refused:
            accept_delegated_proxy(key_pem, chain_pem([leaf, *chain[1:]]), DN, str(ca.directory))
        assert str(refused.value) == ("Proxy exception: the delegated proxy is signed with md5WithRSAEncryption, "
                                      "which is not accepted; sign it with SHA-256 (the CSR's own algorithm)")

    def test_a_legacy_signer_is_named(self, ca, user, request_pair):
        """A ``grid-proxy-init -old`` proxy (CN=proxy, no proxyCertInfo) signing the delegation:
        refused as what it is, not as another user's proxy."""
        key_pem, csr = request_pair
        sent = sign_proxy_request(csr, _legacy_proxy(user), lifetime=1800)
        with pytest.raises(ProxyVerificationError, match=r"a legacy \(pre-RFC 3820\) proxy cannot sign a delegation"):
            accept_delegated_proxy(key_pem, sent, DN, str(ca.directory))
        with pytest.raises(ProxyVerificationError, match="delegated proxy does not belong to the caller"):
            accept_delegated_proxy(key_pem, sent, "/C=XX/O=wmproxy-demo/OU=Users/CN=Mallory", str(ca.directory))

    def test_leaf_alone(self, ca, proxy, request_pair):
        key_pem, csr = request_pair
        leaf = load_pem_chain(sign_proxy_request(csr, proxy, lifetime=60))[0]
        with pytest.raises(ProxyVerificationError, match="without its issuer"):
            accept_delegated_proxy(key_pem, chain_pem([leaf]), DN, str(ca.directory))

    def test_garbage(self, ca, request_pair):
        with pytest.raises(ProxyVerificationError, match="unreadable"):
            accept_delegated_proxy(request_pair[0], b"nonsense", DN, str(ca.directory))

    def test_an_unreadable_extension_is_refused(self, ca, proxy, request_pair):
        key_pem, csr = request_pair
        sent = odd_proxy(csr, proxy, extension=x509.UnrecognizedExtension(ObjectIdentifier("2.5.29.15"), b"\x01\x02"))
        with pytest.raises(ProxyVerificationError, match=r"^Proxy exception: the delegated credential is unreadable: "
                                                         r"unreadable PEM certificate: unreadable extension"):
            accept_delegated_proxy(key_pem, sent.encode(), DN, str(ca.directory))

    @pytest.mark.parametrize("cn", ["ab\x01cd", "12\n34", "12\x8534", "12\u202834", "\ufffe"])
    def test_a_control_character_in_the_added_cn_is_refused(self, ca, proxy, request_pair, cn):
        key_pem, csr = request_pair
        with pytest.raises(ProxyVerificationError, match=r"the delegated proxy subject holds a control character: "
                                                         r"/C=XX/.*/CN=Jane Doe/CN=[0-9]+/CN=") as refused:
            accept_delegated_proxy(key_pem, odd_proxy(csr, proxy, cn=cn).encode(), DN, str(ca.directory))
        assert cn not in str(refused.value)  # shown escaped

    @pytest.mark.parametrize("cn", ["123", "proxy", "Jos\u00e9 \u00e0 l'\u00e9cole"])
    def test_other_added_cns_are_accepted(self, ca, proxy, request_pair, cn):
        key_pem, csr = request_pair
        assert accept_delegated_proxy(key_pem, odd_proxy(csr, proxy, cn=cn).encode(), DN, str(ca.directory)).dn == DN


    def test_the_issuers_subject_is_looked_at_once(self, ca, proxy, monkeypatch):
        """The values of chain[1]'s subject are checked for control characters once per process
        (the caller's chain is parsed once and kept): a second putProxy over the same chain does
        not look at them again (issue 14)."""
        from wmproxy.security import delegation as delegation_module

        looked: list[str] = []
        unsafe = delegation_module._unsafe

        def counted(value: str) -> bool:
            looked.append(value)
            return unsafe(value)

        monkeypatch.setattr(delegation_module, "_unsafe", counted)
        for _ in range(2):
            looked.clear()
            key_pem, csr = new_proxy_request(bits=2048)
            assert accept_delegated_proxy(key_pem, sign_proxy_request(csr, proxy, lifetime=600), DN,
                                          str(ca.directory)).dn == DN
        assert looked == []

    def test_an_issuer_whose_subject_holds_a_control_character_is_refused_each_time(self, fresh_ca):
        user = fresh_ca.issue_user("Jane\x01Doe")
        caller = make_proxy(user, lifetime=3600)
        for _ in range(2):
            key_pem, csr = new_proxy_request(bits=2048)
            with pytest.raises(ProxyVerificationError, match="the delegated proxy subject holds a control character"):
                accept_delegated_proxy(key_pem, sign_proxy_request(csr, caller, lifetime=600),
                                       slash_dn(user.cert.subject), str(fresh_ca.directory))


class TestDelegationIds:
    def test_default_id_shape_and_stability(self):
        a = default_delegation_id(DN)
        assert len(a) == 16 and a == a.lower() and int(a, 16) >= 0
        assert a == default_delegation_id(DN, ())
        assert default_delegation_id(DN, ["/atlas/Role=NULL"]) != a
        assert default_delegation_id("/C=XX/CN=Other") != a

    @pytest.mark.parametrize("good", [
        "mydeleg", "a.b-c_D9", "x" * 64, default_delegation_id(DN),
        # §5.1: only "/" makes an id invalid; these worked against the original
        "user@host", "a:b", "x+y", "a b", "x" * 65, "x" * 255, "é" * 127, "id;rm", "...", ".hidden", "%2F",
        "<&'\">", "\\",
    ])
    def test_accepts(self, good):
        assert check_delegation_id(good) == good

    @pytest.mark.parametrize("bad", [
        "", "a/b", "../x", "/", "..", ".", "x" * 256, "é" * 128,  # over 255 bytes of UTF-8
        "a\n", "a\r", "a\tb", "a\x00", "a\x7f", "a\x85", "a\u2028", "a\ufffe", "a\ud800",
    ])
    def test_refuses(self, bad):
        with pytest.raises(InvalidDelegationIdError, match="invalid delegation id"):
            check_delegation_id(bad)


def _twin(cert: x509.Certificate, signer) -> x509.Certificate:
    """A proxy with ``cert``'s subject, issuer and validity but its own key and SKI, signed by
    ``signer`` (the issuer of ``cert``)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    builder = (
        x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    for ext in cert.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return builder.sign(signer.key, hashes.SHA256())


class TestStoredFqans:
    def test_a_voms_certificate_sent_beside_the_path_gives_no_fqan(self, pki: Pki, tmp_path: Path) -> None:
        """The FQANs stored with the proxy are those of the chain stored, the verified path: a
        VOMS proxy certificate of the same user sent after her plain chain (no key needed) gave
        the delegation ``/atlas/Role=production`` while its stored chain had no AC, so jobs were
        matched and run with a role the proxy did not carry."""
        from tests.voms_support import fake_voms_proxy, fake_voms_server
        from wmproxy.security.voms import verified_fqans

        server = fake_voms_server(pki, tmp_path)
        voms_cert = load_pem_chain(fake_voms_proxy(pki, server, tmp_path / "vp.pem").read_bytes())[0]
        key_pem, csr = new_proxy_request(2048)
        signed = sign_proxy_request(csr, load_credential(pki.users["alice"].proxy.read_bytes()), lifetime=1800)
        accepted = accept_delegated_proxy(key_pem, signed + chain_pem([voms_cert]), pki.users["alice"].dn,
                                          str(pki.ca_dir), vomsdir=str(server.vomsdir))
        stored = load_pem_chain(accepted.pem)
        assert verified_fqans(stored, vomsdir=str(server.vomsdir), ca_dir=str(pki.ca_dir)) == ()
        assert accepted.fqans == ()
