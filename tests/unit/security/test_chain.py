from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ObjectIdentifier

from tests.support import INDEPENDENT, PRIVATE_POLICY, odd_proxy, policy_proxy
from tests.unit.security.ca_support import intermediate_ca
from tests.unit.security.signing_support import SHA1_RSA, resigned
from wmproxy.errors import ProxyError, ProxyPolicyError, ProxyVerificationError
from wmproxy.security import chain as chain_module
from wmproxy.security.chain import (
    _pem_blocks,
    certificate_der,
    certificate_pem,
    chain_pem,
    check_proxy_policies,
    der_chain_to_pem,
    end_entity,
    has_limited_proxy,
    identity_dn,
    is_limited_proxy,
    is_proxy,
    load_pem_chain,
    unknown_proxy_policy,
    verify_chain,
    verify_delegated_chain,
)
from wmproxy.security.delegation import new_proxy_request
from wmproxy.security.proxy import credential_pem, make_proxy

#: Extensions cryptography reads lazily and refuses then (ValueError at ``cert.extensions``).
MALFORMED_EXTENSIONS = {
    "keyUsage": x509.UnrecognizedExtension(ObjectIdentifier("2.5.29.15"), b"\x01\x02"),
    "basicConstraints": x509.UnrecognizedExtension(ObjectIdentifier("2.5.29.19"), b"\xff"),
}


def _rewrite_in_place(path, data):
    """Write ``data`` over the file ``path`` (same inode; its directory's stat unchanged)."""
    import os

    directory = os.stat(path.parent)
    with open(path, "r+b") as fh:
        fh.write(data)
        fh.truncate()
    after = os.stat(path.parent)
    assert (directory.st_mtime_ns, directory.st_ctime_ns) == (after.st_mtime_ns, after.st_ctime_ns)


def _settle(directory, monkeypatch):
    """Let ``directory``'s listing be kept (settled) and its files' parse be used for an hour
    without a stat of each (:data:`chain_module.CA_FILES_RESTAT`)."""
    import os

    monkeypatch.setattr(chain_module, "SETTLED_NS", 0)
    monkeypatch.setattr(chain_module, "CA_FILES_RESTAT", 3600.0)
    os.utime(directory, (1_000_000_000, 1_000_000_000))


class TestLoadPemChain:
    def test_reads_grid_proxy_file_and_skips_the_key(self, proxy):
        chain = load_pem_chain(credential_pem(proxy))
        assert chain == proxy.full_chain

    @pytest.mark.parametrize("data", [b"", b"garbage",
                                      b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
    def test_garbage_raises_proxy_error(self, data):
        with pytest.raises(ProxyError):
            load_pem_chain(data)

    def test_blocks_are_those_the_regular_expression_finds(self, proxy):
        """The block scanner finds what ``BEGIN\r?\n.+?\r?\nEND`` (DOTALL) found before it."""

        reference = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL)
        pem = chain_pem(proxy.full_chain)
        begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
        cases = [
            pem, pem.replace(b"\n", b"\r\n"), b"text\n" + pem + b"more text\n" + pem,
            begin + end, begin + b"\n" + end, begin + b"\n\n" + end, begin + b"\nx\n" + end,
            begin + b"x\nA\n" + end + begin + b"\r\nB\r\n" + end, begin + b"\nA\n" + begin + b"\nB\n" + end,
            begin + b"\nA", begin + b"\n\r\n" + end, pem[:-30],
        ]
        for data in cases:
            assert _pem_blocks(data) == reference.findall(data), data
        assert load_pem_chain(pem.replace(b"\n", b"\r\n")) == proxy.full_chain

    def test_a_new_leaf_is_not_kept(self, ca):
        """With ``new_leaf`` (a putProxy's chain) the first certificate is parsed alike but not
        kept, the issuers are: a putProxy's new proxies no longer push issuers out of the cache."""
        from wmproxy.security.chain import _pem_blocks as blocks_of
        from wmproxy.security.chain import _pem_certificates

        caller = make_proxy(ca.issue_user("Kept Issuers"), lifetime=600)
        pem = chain_pem(make_proxy(caller, lifetime=60).full_chain)
        leaf_block, *issuer_blocks = blocks_of(pem)
        chain = load_pem_chain(pem, new_leaf=True)
        assert chain == load_pem_chain(pem, new_leaf=True) and len(chain) == 3
        assert leaf_block not in _pem_certificates
        assert all(block in _pem_certificates for block in issuer_blocks)
        with pytest.raises(ProxyError, match="unreadable PEM certificate"):
            load_pem_chain(pem.replace(leaf_block[40:60], b"A" * 20), new_leaf=True)

    def test_der_chain_to_pem(self, proxy):
        ders = [c.public_bytes(Encoding.DER) for c in proxy.full_chain]
        assert der_chain_to_pem(ders) == chain_pem(proxy.full_chain)

    @pytest.mark.parametrize("name", list(MALFORMED_EXTENSIONS))
    def test_an_unreadable_extension_is_refused_when_loaded(self, proxy, name):
        """Not later, as a ValueError of is_proxy, proxy_depth or end_entity (an internal error)."""
        pem = odd_proxy(new_proxy_request(bits=1024)[1], proxy, extension=MALFORMED_EXTENSIONS[name]).encode()
        blocks = _pem_blocks(pem)
        for _ in range(2):  # never kept: refused each time
            with pytest.raises(ProxyError, match="unreadable PEM certificate: unreadable extension or name: "):
                load_pem_chain(pem)
        assert blocks[0] not in chain_module._pem_certificates
        ders = [x509.load_pem_x509_certificate(block).public_bytes(Encoding.DER) for block in blocks]
        with pytest.raises(ProxyError, match="unreadable DER certificate: unreadable extension or name: "):
            der_chain_to_pem(ders)


class TestEncodings:
    def test_the_encodings_are_cryptographys(self, ca, proxy):
        chain = [*proxy.full_chain, ca.cert]
        for _ in range(2):  # encoded, then kept
            assert [certificate_der(c) for c in chain] == [c.public_bytes(Encoding.DER) for c in chain]
            assert [certificate_pem(c) for c in chain] == [c.public_bytes(Encoding.PEM) for c in chain]
            assert chain_pem(chain) == b"".join(c.public_bytes(Encoding.PEM) for c in chain)

    def test_an_entry_serves_its_own_certificate_object_only(self, ca, proxy):
        """Entries are found by ``id``: one left by another object under the same id (an id
        reused after the object was freed) is replaced, never returned."""
        cert, other = proxy.cert, ca.cert
        with chain_module._encodings_lock:
            chain_module._encodings[id(cert)] = [other, b"other's DER", b"other's PEM"]
        assert certificate_pem(cert) == cert.public_bytes(Encoding.PEM)
        assert certificate_der(cert) == cert.public_bytes(Encoding.DER)


def _blocks(cert) -> dict[str, bytes]:
    """PEM blocks of ``cert`` in the shapes a client may send, and broken ones."""
    import binascii

    text = binascii.b2a_base64(cert.public_bytes(Encoding.DER), newline=False)

    def block(width: int, eol: bytes = b"\n", head: bytes = b"\n", tail: bytes = b"\n", body: bytes = text) -> bytes:
        lines = eol.join(body[i:i + width] for i in range(0, len(body), width))
        return b"-----BEGIN CERTIFICATE-----" + head + lines + tail + b"-----END CERTIFICATE-----"

    stripped = text.rstrip(b"=")
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    # the last character before the padding with its unused low bit set (a non-canonical encoding)
    loose = stripped[:-1] + bytes([alphabet[alphabet.index(stripped[-1]) ^ 1]]) + text[len(stripped):]
    if stripped == text:  # a DER of 3n bytes: no padding, no unused bits
        loose = stripped
    return {
        "64": block(64), "76": block(76), "one line": block(len(text)), "width 1": block(1),
        "crlf": block(64, b"\r\n", b"\r\n", b"\r\n"), "mixed": block(64, b"\r\n", b"\n", b"\r\n"),
        "blank line": block(64, b"\n\n"), "cr only": block(64, b"\r"), "spaces": block(64, b" \n"),
        "no padding": block(64, body=stripped), "loose bits": block(64, body=loose),
        "header": block(64, head=b"\nProc-Type: 4,ENCRYPTED\n\n"),
        "short": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        "truncated": block(64, body=text[:400]),
    }


class TestPlainBlocks:
    """Blocks of canonical base64 are parsed from their DER (which is kept); the others by
    cryptography's PEM reader: either way the outcome is cryptography's (issue 14)."""

    @pytest.mark.parametrize("shape", [
        "64", "76", "one line", "width 1", "crlf", "mixed", "blank line", "cr only", "spaces", "no padding",
        "loose bits", "header", "short", "truncated"])
    @pytest.mark.parametrize("which", ["ca", "user", "proxy"])
    def test_same_outcome_as_cryptography(self, ca, user, proxy, shape, which):
        from cryptography import x509

        cert = {"ca": ca.cert, "user": user.cert, "proxy": proxy.cert}[which]
        block = _blocks(cert)[shape]
        with chain_module._pem_certificates_lock:
            chain_module._pem_certificates.pop(block, None)
        try:
            expected = x509.load_pem_x509_certificate(block)
        except ValueError as exc:
            refused = str(exc)
        else:
            refused = ""
        if refused:
            with pytest.raises(ValueError, match=re.escape(refused)):
                chain_module._load_pem_certificate(block)
            return
        parsed = chain_module._load_pem_certificate(block)
        assert parsed == expected
        assert certificate_der(parsed) == expected.public_bytes(Encoding.DER)
        assert certificate_pem(parsed) == expected.public_bytes(Encoding.PEM)

    def test_plain_blocks_keep_their_der(self, proxy):
        der = proxy.cert.public_bytes(Encoding.DER)
        blocks = _blocks(proxy.cert)
        # the DER, and whether the block is the certificate's PEM as written (its PEM is kept then)
        assert chain_module._plain_der(blocks["64"]) == (der, True)
        assert blocks["64"] + b"\n" == proxy.cert.public_bytes(Encoding.PEM)
        for shape in ("76", "one line", "width 1", "crlf", "mixed"):
            assert chain_module._plain_der(blocks[shape]) == (der, False), shape
        shapes = ["blank line", "cr only", "spaces", "header"]
        if blocks["no padding"] != blocks["64"]:  # a DER of 3n bytes has no padding
            shapes += ["no padding", "loose bits"]
        for shape in shapes:
            assert chain_module._plain_der(blocks[shape]) is None, shape


class TestProxyTests:
    def test_is_proxy(self, user, proxy):
        assert is_proxy(proxy.cert)
        assert not is_proxy(user.cert)
        assert not is_limited_proxy(proxy.cert)

    def test_limited(self, user):
        assert is_limited_proxy(make_proxy(user, lifetime=600, limited=True).cert)

    def test_identity_of_two_level_proxy_is_the_user(self, user, proxy):
        second = make_proxy(proxy, lifetime=600)
        assert end_entity(second.full_chain) == user.cert
        assert identity_dn(second.full_chain) == "/C=XX/O=wmproxy-demo/OU=Users/CN=Jane Doe"

    def test_proxies_only_has_no_identity(self, proxy):
        with pytest.raises(ProxyError):
            end_entity([proxy.cert])


class TestProxyPolicies:
    """RFC 3820 policy languages: inheritAll and the Globus limited proxy are understood; an
    independent proxy has none of its issuer's rights and a language not understood cannot be
    read as inheritAll, so both are refused (and count as limited where a chain gets past that)."""

    def test_inherit_all_and_limited_chains_pass(self, user, proxy):
        limited = make_proxy(proxy, lifetime=600, limited=True)
        for chain in ([user.cert], proxy.full_chain, limited.full_chain,
                      make_proxy(limited, lifetime=600).full_chain):
            check_proxy_policies(chain)
            assert unknown_proxy_policy(chain) is None
        assert not has_limited_proxy(proxy.full_chain) and has_limited_proxy(limited.full_chain)

    def test_an_independent_proxy_is_refused_naming_its_language(self, user):
        independent = policy_proxy(user, INDEPENDENT)
        with pytest.raises(ProxyPolicyError) as err:
            check_proxy_policies(independent.full_chain)
        assert err.value.policy_language == INDEPENDENT
        assert isinstance(err.value, ProxyVerificationError) and err.value.code == 1212
        assert ("an independent proxy (RFC 3820 policy language id-ppl-independent, 1.3.6.1.5.5.7.21.2) has none "
                "of its issuer's rights") in str(err.value)
        assert is_limited_proxy(independent.cert)

    def test_a_language_not_understood_is_refused_naming_it(self, user, proxy):
        private = policy_proxy(proxy, *PRIVATE_POLICY)
        with pytest.raises(ProxyPolicyError, match=r"policy language 1\.3\.6\.1\.4\.1\.99999\.1\.1, which this "
                                                   r"service does not understand") as err:
            check_proxy_policies(private.full_chain)
        assert err.value.policy_language == PRIVATE_POLICY[0]
        assert is_limited_proxy(private.cert)

    def test_any_level_counts(self, user):
        # an impersonation proxy signed by an independent one has no more rights than its issuer
        below = make_proxy(make_proxy(policy_proxy(user, INDEPENDENT), lifetime=600), lifetime=600)
        assert unknown_proxy_policy(below.full_chain) == INDEPENDENT
        with pytest.raises(ProxyPolicyError, match="independent"):
            check_proxy_policies(below.full_chain)
        assert has_limited_proxy(below.full_chain)
        assert unknown_proxy_policy([policy_proxy(user, "1.2.3.4").cert, user.cert]) == "1.2.3.4"


class TestVerifyChain:
    def test_proxy_verifies(self, ca, proxy):
        verify_chain(proxy.full_chain, str(ca.directory))

    def test_delegated_chain_says_whether_the_path_goes_through_the_next_certificate(self, ca, user, proxy):
        second = make_proxy(proxy, lifetime=600)
        assert verify_delegated_chain(second.full_chain, str(ca.directory))[0] is True
        other = make_proxy(user, lifetime=600)  # another proxy of the user, not second's issuer
        # OpenSSL picks second's issuer by name among the untrusted certificates: not chain[1]
        sent = [second.cert, other.cert, proxy.cert, user.cert]
        assert verify_delegated_chain(sent, str(ca.directory))[0] is False
        assert verify_delegated_chain([user.cert], str(ca.directory))[0] is False

    def test_delegated_chain_path_is_the_verified_one_through_the_user_certificate(self, ca, user, proxy):
        """The sent certificates OpenSSL's path goes through, the same objects, in path order; not
        a certificate beside the path, nor the CA (sent or not)."""
        second = make_proxy(proxy, lifetime=600)
        other = make_proxy(user, lifetime=600)
        sent = [second.cert, other.cert, user.cert, proxy.cert, ca.cert]
        proven, path = verify_delegated_chain(sent, str(ca.directory))
        assert proven is False
        assert [c is s for c, s in zip(path, [second.cert, proxy.cert, user.cert], strict=True)] == [True] * 3
        assert verify_delegated_chain(second.full_chain, str(ca.directory))[1] == second.full_chain
        assert verify_delegated_chain([user.cert], str(ca.directory))[1] == [user.cert]

    def test_two_level_and_limited_proxies_verify(self, ca, proxy):
        verify_chain(make_proxy(proxy, lifetime=600).full_chain, str(ca.directory))
        verify_chain(make_proxy(proxy, lifetime=600, limited=True).full_chain, str(ca.directory))

    def test_openssl_binary_agrees(self, ca, proxy, tmp_path):
        (tmp_path / "leaf.pem").write_bytes(chain_pem([proxy.cert]))
        (tmp_path / "chain.pem").write_bytes(chain_pem(proxy.chain))
        result = subprocess.run(
            ["openssl", "verify", "-CApath", str(ca.directory), "-allow_proxy_certs", "-crl_check_all",
             "-untrusted", str(tmp_path / "chain.pem"), str(tmp_path / "leaf.pem")],
            capture_output=True, text=True, check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip().endswith(": OK")

    def test_revoked_users_proxy_is_refused(self, fresh_ca):
        user = fresh_ca.issue_user("Rev Oked")
        proxy = make_proxy(user, lifetime=3600)
        verify_chain(proxy.full_chain, str(fresh_ca.directory))  # loads and caches the CA dir
        fresh_ca.revoke(user.cert)
        with pytest.raises(ProxyVerificationError, match="certificate revoked"):
            verify_chain(proxy.full_chain, str(fresh_ca.directory))

    def test_expired_proxy_is_refused(self, ca, proxy):
        with pytest.raises(ProxyVerificationError, match="certificate has expired"):
            verify_chain(proxy.full_chain, str(ca.directory), at=datetime.now(UTC) + timedelta(hours=2))

    def test_each_call_is_verified_at_its_own_time(self, ca, proxy):
        """Verifications at the clock's time share a store; other times get their own, so
        alternating times never reuse another call's time."""
        now = datetime.now(UTC)
        later = now + timedelta(hours=2)
        for at in (now, later, None, later.replace(tzinfo=None), now, later):
            if at is None or at == now:
                verify_chain(proxy.full_chain, str(ca.directory), at=at)
            else:
                with pytest.raises(ProxyVerificationError, match="certificate has expired"):
                    verify_chain(proxy.full_chain, str(ca.directory), at=at)
        with pytest.raises(ProxyVerificationError, match="not yet valid"):
            verify_chain(proxy.full_chain, str(ca.directory), at=now - timedelta(days=400))

    def test_proxy_of_expired_user_is_refused(self, ca):
        now = datetime.now(UTC)
        user = ca.issue_user("Old Timer", lifetime_days=10, not_after=now - timedelta(days=1))
        proxy = make_proxy(user, lifetime=3600, now=now - timedelta(days=2))
        with pytest.raises(ProxyVerificationError, match="certificate has expired"):
            verify_chain(proxy.full_chain, str(ca.directory))

    def test_unknown_ca_is_refused(self, other_ca, proxy):
        with pytest.raises(ProxyVerificationError, match="unable to get local issuer certificate"):
            verify_chain(proxy.full_chain, str(other_ca.directory))

    def test_ca_without_crl_is_refused(self, fresh_ca):
        proxy = make_proxy(fresh_ca.issue_user("No Crl"), lifetime=600)
        fresh_ca.crl_path.unlink()
        with pytest.raises(ProxyVerificationError, match="unable to get certificate CRL"):
            verify_chain(proxy.full_chain, str(fresh_ca.directory))

    def test_a_ca_added_to_a_settled_directory_is_seen(self, fresh_ca, other_ca, monkeypatch):
        """The listing of a settled CA directory is kept while its stat is unchanged: a CA added
        to it (which changes the directory's mtime) is seen on the next call."""
        import os
        import shutil

        monkeypatch.setattr(chain_module, "SETTLED_NS", 0)
        directory = fresh_ca.directory
        os.utime(directory, (1_000_000_000, 1_000_000_000))
        stranger = make_proxy(other_ca.issue_user("Stranger"), lifetime=600)
        with pytest.raises(ProxyVerificationError, match="unable to get local issuer certificate"):
            verify_chain(stranger.full_chain, str(directory))
        assert str(directory) in chain_module._listings  # the listing is kept
        shutil.copy(other_ca.cert_path, directory / other_ca.cert_path.name)
        shutil.copy(other_ca.crl_path, directory / other_ca.crl_path.name)
        verify_chain(stranger.full_chain, str(directory))

    @pytest.fixture
    def settled_two_cas(self, fresh_ca, other_ca, tmp_path, monkeypatch):
        """fresh_ca's directory with a copy of other_ca's certificate and CRL, its listing settled
        and its files' parse kept for an hour (:data:`chain_module.CA_FILES_RESTAT`); returns
        (directory, a CertificateAuthority writing other_ca's CRL into the copy)."""
        import shutil

        from wmproxy.security.pki import CertificateAuthority

        directory = fresh_ca.directory
        shutil.copy(other_ca.cert_path, directory / other_ca.cert_path.name)
        shutil.copy(other_ca.crl_path, directory / other_ca.crl_path.name)
        _settle(directory, monkeypatch)
        return directory, CertificateAuthority(other_ca.cert, other_ca.key, tmp_path / "scratch")

    def test_a_crl_of_the_path_rewritten_in_place_is_seen_at_once(self, settled_two_cas, other_ca):
        """The files of another CA are not stat-ed on every call; those of the path's CA are."""
        directory, scratch = settled_two_cas
        stranger = other_ca.issue_user("Stranger Two")
        proxy = make_proxy(stranger, lifetime=600)
        verify_chain(proxy.full_chain, str(directory))
        loaded = chain_module._load_ca_dir(str(directory))
        scratch.revoke(stranger.cert)
        _rewrite_in_place(directory / other_ca.crl_path.name, scratch.crl_path.read_bytes())
        assert chain_module._load_ca_dir(str(directory)) is loaded  # the parse kept: no stat of each file
        with pytest.raises(ProxyVerificationError, match="certificate revoked"):
            verify_chain(proxy.full_chain, str(directory))

    def test_a_file_of_another_ca_rewritten_in_place_is_seen_after_the_restat_time(self, settled_two_cas,
                                                                                     fresh_ca, other_ca,
                                                                                     monkeypatch):
        directory, scratch = settled_two_cas
        mine = make_proxy(fresh_ca.issue_user("Mine"), lifetime=600)
        stranger = other_ca.issue_user("Stranger Three")
        verify_chain(mine.full_chain, str(directory))
        loaded = chain_module._load_ca_dir(str(directory))
        scratch.revoke(stranger.cert)
        _rewrite_in_place(directory / other_ca.crl_path.name, scratch.crl_path.read_bytes())
        verify_chain(mine.full_chain, str(directory))  # through fresh_ca: other_ca's files not looked at
        assert chain_module._load_ca_dir(str(directory)) is loaded
        monkeypatch.setattr(chain_module, "CA_FILES_RESTAT", 0.0)
        fresh = chain_module._load_ca_dir(str(directory))
        assert fresh is not loaded and len(fresh.crls) == len(loaded.crls)
        assert any(len(list(crl)) == 1 for crl in fresh.crls)  # other_ca's new CRL, revoking one

    def test_a_crl_of_an_intermediate_ca_rewritten_in_place_is_seen_at_once(self, fresh_ca, tmp_path,
                                                                           monkeypatch):
        from wmproxy.security.pki import CertificateAuthority

        intermediate = intermediate_ca(fresh_ca, "/C=XX/O=wmproxy-demo/CN=Intermediate CA")
        user = intermediate.issue_user("Inter Mediated")
        proxy = make_proxy(user, lifetime=600)
        directory = fresh_ca.directory
        _settle(directory, monkeypatch)
        verify_chain(proxy.full_chain, str(directory))
        scratch = CertificateAuthority(intermediate.cert, intermediate.key, tmp_path / "scratch")
        scratch.revoke(user.cert)
        _rewrite_in_place(intermediate.crl_path, scratch.crl_path.read_bytes())
        with pytest.raises(ProxyVerificationError, match="certificate revoked"):
            verify_chain(proxy.full_chain, str(directory))

    def test_a_crl_under_another_name_rewritten_in_place_is_seen_at_once(self, fresh_ca, tmp_path, monkeypatch):
        """fetch-crl also writes each CRL under the CA's old-style hash (``<hash_old>.r0``): a file
        of the path's CA by what it holds, not by its name."""
        import subprocess

        from wmproxy.security.pki import CertificateAuthority

        old_hash = subprocess.run(["openssl", "x509", "-noout", "-subject_hash_old", "-in", str(fresh_ca.cert_path)],
                                  check=True, capture_output=True, text=True).stdout.strip()
        assert old_hash != fresh_ca.hash
        renamed = fresh_ca.directory / f"{old_hash}.r0"
        fresh_ca.crl_path.rename(renamed)
        user = fresh_ca.issue_user("Old Hash")
        proxy = make_proxy(user, lifetime=600)
        _settle(fresh_ca.directory, monkeypatch)
        verify_chain(proxy.full_chain, str(fresh_ca.directory))
        scratch = CertificateAuthority(fresh_ca.cert, fresh_ca.key, tmp_path / "scratch")
        scratch.revoke(user.cert)
        _rewrite_in_place(renamed, scratch.crl_path.read_bytes())
        with pytest.raises(ProxyVerificationError, match="certificate revoked"):
            verify_chain(proxy.full_chain, str(fresh_ca.directory))

    def test_a_failed_verification_looks_at_every_file_again(self, settled_two_cas, other_ca):
        """A CRL written in place into a file that held none: the refusal is not kept."""
        directory, _ = settled_two_cas
        crl = directory / other_ca.crl_path.name
        good = crl.read_bytes()
        _rewrite_in_place(crl, b"")
        stranger = make_proxy(other_ca.issue_user("Stranger Four"), lifetime=600)
        chain_module._load_ca_dir(str(directory), walk=True)
        with pytest.raises(ProxyVerificationError, match="unable to get certificate CRL"):
            verify_chain(stranger.full_chain, str(directory))
        _rewrite_in_place(crl, good)
        verify_chain(stranger.full_chain, str(directory))

    def test_missing_ca_dir(self, tmp_path, proxy):
        with pytest.raises(ProxyVerificationError, match="cannot read CA directory"):
            verify_chain(proxy.full_chain, str(tmp_path / "nope"))


def _leaf(signer, *, subject=None, not_before=None, not_after=None, extensions=None, sign_key=None,
          digest=None, aki=True):
    """A proxy of ``signer`` (a Credential) as a client builds it for putProxy, with one thing
    changed: the subject, validity, extensions (``(extension, critical)`` pairs replacing the
    usual proxyCertInfo and keyUsage), signing key, digest, or no authority key identifier."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from wmproxy.security.pci import INHERIT_ALL_OID, ProxyCertInfo, pci_extension

    now = datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer = signer.cert
    if subject is None:
        subject = x509.Name([*issuer.subject.rdns, x509.RelativeDistinguishedName(
            [x509.NameAttribute(NameOID.COMMON_NAME, "123456789")])])
    if extensions is None:
        extensions = [(pci_extension(ProxyCertInfo(INHERIT_ALL_OID, None)), True),
                      (x509.KeyUsage(True, False, True, False, False, False, False, False, False), True)]
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer.subject)
               .public_key(key.public_key()).serial_number(123456789)
               .not_valid_before(not_before or now - timedelta(minutes=5))
               .not_valid_after(not_after or now + timedelta(hours=1)))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    if aki is True:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.key.public_key()), critical=False)
    elif aki is not None:
        builder = builder.add_extension(aki, critical=False)
    return builder.sign(sign_key or signer.key, digest or hashes.SHA256())


def _leaf_shapes(proxy, user):
    """Leaves over ``proxy``'s chain (and one over ``user``'s, whose certificate has a subject key
    identifier): name -> (signer, leaf)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from wmproxy.security.pci import INHERIT_ALL_OID, ProxyCertInfo, pci_extension

    now = datetime.now(UTC)
    pci = (pci_extension(ProxyCertInfo(INHERIT_ALL_OID, None)), True)
    usage = (x509.KeyUsage(True, False, True, False, False, False, False, False, False), True)
    cn = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "7")])
    ou = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "7")])
    return {
        "plain": (proxy, _leaf(proxy)),
        "not yet valid": (proxy, _leaf(proxy, not_before=now + timedelta(minutes=2))),
        "ended": (proxy, _leaf(proxy, not_before=now - timedelta(hours=2), not_after=now - timedelta(hours=1))),
        "another signer": (proxy, _leaf(proxy, sign_key=rsa.generate_private_key(public_exponent=65537,
                                                                                  key_size=2048))),
        "subject plus an OU": (proxy, _leaf(proxy, subject=x509.Name([*proxy.cert.subject.rdns, ou]))),
        "subject plus two CNs": (proxy, _leaf(proxy, subject=x509.Name([*proxy.cert.subject.rdns, cn, cn]))),
        "a CA": (proxy, _leaf(proxy, extensions=[pci, usage, (x509.BasicConstraints(True, None), True)])),
        "not a proxy": (proxy, _leaf(proxy, extensions=[usage])),
        "unknown critical extension": (proxy, _leaf(proxy, extensions=[
            pci, usage, (x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"), True)])),
        "subject alternative name": (proxy, _leaf(proxy, extensions=[
            pci, usage, (x509.SubjectAlternativeName([x509.DNSName("example.org")]), False)])),
        "SHA-224": (proxy, _leaf(proxy, digest=hashes.SHA224())),
        "SHA-1": (proxy, resigned(_leaf(proxy), proxy.key, hashes.SHA1(), SHA1_RSA)),  # noqa: S303 - gridsite's
        "SHA-1 outside, SHA-256 inside": (proxy, resigned(_leaf(proxy), proxy.key, hashes.SHA1(), SHA1_RSA,  # noqa: S303
                                                          inner_oid=SHA256_RSA)),
        "SHA-1 of another signer": (proxy, resigned(_leaf(proxy), rsa.generate_private_key(
            public_exponent=65537, key_size=2048), hashes.SHA1(), SHA1_RSA)),  # noqa: S303 - as above
        "no authority key identifier": (proxy, _leaf(proxy, aki=None)),
        "authority key identifier of another key": (user, _leaf(user, aki=x509.AuthorityKeyIdentifier(
            b"\x01" * 20, None, None))),
        "authority key identifier by issuer and serial": (user, _leaf(user, aki=x509.AuthorityKeyIdentifier(
            None, [x509.DirectoryName(user.cert.issuer)], user.cert.serial_number))),
        "over the user certificate": (user, _leaf(user)),
    }


def _outcome(chain, ca_dir):
    try:
        proven, path = verify_delegated_chain(chain, ca_dir)
    except ProxyVerificationError as exc:
        return ("refused", str(exc))
    return ("verified", proven, [certificate_der(c) for c in path])


SHA256_RSA = "1.2.840.113549.1.1.11"

SHAPES = ["plain", "not yet valid", "ended", "another signer", "subject plus an OU", "subject plus two CNs", "a CA",
          "not a proxy", "unknown critical extension", "subject alternative name", "SHA-224", "SHA-1",
          "SHA-1 outside, SHA-256 inside", "SHA-1 of another signer",
          "no authority key identifier", "authority key identifier of another key",
          "authority key identifier by issuer and serial", "over the user certificate"]


#: The shapes OpenSSL accepts.
ACCEPTED = ("plain", "no authority key identifier", "over the user certificate", "SHA-224",
            "authority key identifier by issuer and serial", "SHA-1")
#: The shapes checked without OpenSSL once their issuers are known.
PLAIN = ("plain", "no authority key identifier", "over the user certificate", "SHA-1")


@pytest.fixture
def openssl_calls(monkeypatch):
    """The chains given to OpenSSL's verification (``_openssl_path``) during the test."""
    calls = []
    openssl_path = chain_module._openssl_path

    def counted(*args, **kwargs):
        calls.append(args[0])
        return openssl_path(*args, **kwargs)

    monkeypatch.setattr(chain_module, "_openssl_path", counted)
    return calls


class TestVerifiedChains:
    """A chain OpenSSL verified at the clock's time is not verified again (issue 14: a VOMS
    server's certificate at every AC check), while nothing it was verified against changed."""

    @pytest.fixture(autouse=True)
    def _forget(self, monkeypatch):
        chain_module._verified_chains.clear()
        chain_module._verified_issuers.clear()
        monkeypatch.setattr(chain_module, "VERIFIED_ISSUERS_TTL", 3600.0)  # whatever the load
        yield
        chain_module._verified_chains.clear()
        chain_module._verified_issuers.clear()

    def test_a_chain_verified_once_is_not_given_to_openssl_again(self, ca, proxy, openssl_calls):
        for _ in range(3):
            verify_chain(proxy.full_chain, str(ca.directory))
        assert len(openssl_calls) == 1

    def test_a_crl_rewritten_in_place_refuses_a_kept_chain_at_once(self, fresh_ca, tmp_path, openssl_calls,
                                                                    monkeypatch):
        from wmproxy.security.pki import CertificateAuthority

        user = fresh_ca.issue_user("Rev Oked")
        chain = make_proxy(user, lifetime=3600).full_chain
        ca_dir = str(fresh_ca.directory)
        _settle(fresh_ca.directory, monkeypatch)
        verify_chain(chain, ca_dir)
        verify_chain(chain, ca_dir)
        assert len(openssl_calls) == 1
        scratch = CertificateAuthority(fresh_ca.cert, fresh_ca.key, tmp_path / "scratch")
        scratch.revoke(user.cert)
        _rewrite_in_place(fresh_ca.crl_path, scratch.crl_path.read_bytes())
        with pytest.raises(ProxyVerificationError, match="certificate revoked"):
            verify_chain(chain, ca_dir)

    def test_a_refusal_is_not_kept(self, fresh_ca, other_ca, openssl_calls):
        stranger = make_proxy(other_ca.issue_user("Stranger"), lifetime=600).full_chain
        for _ in range(2):
            with pytest.raises(ProxyVerificationError, match="unable to get local issuer certificate"):
                verify_chain(stranger, str(fresh_ca.directory))
        assert chain_module._verified_chains.currsize == 0

    def test_not_at_the_clocks_time_is_verified_by_openssl(self, ca, proxy, openssl_calls):
        verify_chain(proxy.full_chain, str(ca.directory))
        verify_chain(proxy.full_chain, str(ca.directory), at=datetime.now(UTC) + timedelta(seconds=30))
        assert len(openssl_calls) == 2

    def test_proofs_against_an_older_parse_of_the_directory_are_dropped(self, fresh_ca, tmp_path, monkeypatch):
        """Review: a kept chain holds the parsed CA directory it was verified against; after a CRL
        rewrite, the proofs made before it would hold old parses until their key came again."""
        from wmproxy.security.pki import CertificateAuthority

        ca_dir = str(fresh_ca.directory)
        _settle(fresh_ca.directory, monkeypatch)
        scratch = CertificateAuthority(fresh_ca.cert, fresh_ca.key, tmp_path / "scratch")
        for number in range(3):
            verify_chain(make_proxy(fresh_ca.issue_user(f"User {number}"), lifetime=600).full_chain, ca_dir)
            scratch.revoke(fresh_ca.issue_user(f"Revoked {number}").cert)
            _rewrite_in_place(fresh_ca.crl_path, scratch.crl_path.read_bytes())
        verify_chain(make_proxy(fresh_ca.issue_user("Last"), lifetime=600).full_chain, ca_dir)
        assert len({id(proof.loaded) for proof in chain_module._verified_chains.values()}) == 1
        assert chain_module._verified_chains.currsize == 1

    def test_a_kept_chain_ends_with_its_first_certificate_to_end(self, fresh_ca):
        user = fresh_ca.issue_user("Short Lived")
        chain = make_proxy(user, lifetime=600).full_chain
        verify_chain(chain, str(fresh_ca.directory))
        (proof,) = chain_module._verified_chains.values()
        assert proof.until == min(c.not_valid_after_utc.timestamp() for c in chain)

    def test_a_kept_chain_is_no_issuer_proof(self, ca, user, proxy, openssl_calls):
        """verify_chain's proofs are apart from putProxy's known issuers: a chain proven as a
        leaf proves nothing of what it may sign."""
        verify_chain(proxy.full_chain, str(ca.directory))
        verify_delegated_chain(make_proxy(proxy, lifetime=600).full_chain, str(ca.directory))
        assert len(openssl_calls) == 2


class TestKnownIssuers:
    """A delegated chain whose issuers OpenSSL verified before (with another leaf) has only its leaf
    checked (issue 14): every leaf gets OpenSSL's answer, and the plain ones get it without OpenSSL."""

    @pytest.fixture(autouse=True)
    def _forget(self, monkeypatch):
        chain_module._verified_issuers.clear()
        # a kept entry outlives the test whatever the load (its 60 s could pass between two calls)
        monkeypatch.setattr(chain_module, "VERIFIED_ISSUERS_TTL", 3600.0)
        yield
        chain_module._verified_issuers.clear()

    @pytest.mark.parametrize("shape", SHAPES)
    def test_every_leaf_gets_openssls_answer(self, ca, user, proxy, shape, openssl_calls):
        signer, leaf = _leaf_shapes(proxy, user)[shape]
        chain = [leaf, signer.cert, *signer.chain]
        ca_dir = str(ca.directory)
        expected = _outcome(chain, ca_dir)  # nothing known: OpenSSL
        chain_module._verified_issuers.clear()
        first = _leaf(signer)
        assert _outcome([first, signer.cert, *signer.chain], ca_dir)[0] == "verified"  # the issuers now known
        openssl_calls.clear()
        assert _outcome(chain, ca_dir) == expected
        assert openssl_calls == ([] if shape in PLAIN else [chain]), "the plain leaves only are checked without OpenSSL"
        assert (expected[0] == "verified") == (shape in ACCEPTED), expected

    def test_a_crl_rewritten_in_place_is_seen_at_once(self, fresh_ca, tmp_path, openssl_calls, monkeypatch):
        """The directory settled, its stat unchanged: the known issuers' path files are looked at,
        and OpenSSL verifies the chain once, against the directory as it now is."""
        from wmproxy.security.pki import CertificateAuthority

        user = fresh_ca.issue_user("Rev Oked")
        proxy = make_proxy(user, lifetime=3600)
        ca_dir = str(fresh_ca.directory)
        _settle(fresh_ca.directory, monkeypatch)
        verify_delegated_chain(make_proxy(proxy, lifetime=600).full_chain, ca_dir)
        assert verify_delegated_chain(make_proxy(proxy, lifetime=600).full_chain, ca_dir)[0] is True
        assert len(openssl_calls) == 1  # the second one without OpenSSL
        scratch = CertificateAuthority(fresh_ca.cert, fresh_ca.key, tmp_path / "scratch")
        scratch.revoke(user.cert)
        _rewrite_in_place(fresh_ca.crl_path, scratch.crl_path.read_bytes())
        openssl_calls.clear()
        with pytest.raises(ProxyVerificationError, match="certificate revoked"):
            verify_delegated_chain(make_proxy(proxy, lifetime=600).full_chain, ca_dir)
        assert len(openssl_calls) == 1  # against the directory parsed again, not the kept one first

    def test_another_order_or_another_issuer_is_verified_by_openssl(self, ca, user, proxy, openssl_calls):
        ca_dir = str(ca.directory)
        verify_delegated_chain(make_proxy(proxy, lifetime=600).full_chain, ca_dir)
        with_ca = make_proxy(proxy, lifetime=600)
        openssl_calls.clear()
        verify_delegated_chain([*with_ca.full_chain, ca.cert], ca_dir)  # issuers: another tuple
        other = make_proxy(user, lifetime=600)
        verify_delegated_chain(make_proxy(other, lifetime=600).full_chain, ca_dir)
        assert len(openssl_calls) == 2

    def test_not_at_the_clocks_time_is_verified_by_openssl(self, ca, proxy, openssl_calls):
        ca_dir = str(ca.directory)
        verify_delegated_chain(make_proxy(proxy, lifetime=600).full_chain, ca_dir)
        openssl_calls.clear()
        verify_delegated_chain(make_proxy(proxy, lifetime=600).full_chain, ca_dir,
                               at=datetime.now(UTC) + timedelta(seconds=30))
        assert len(openssl_calls) == 1

    def test_kept_until_the_first_end_of_the_path_and_at_most_the_ttl(self, fresh_ca, monkeypatch):
        # a TTL beyond the short-lived user certificate's end, which is far enough for a loaded machine
        monkeypatch.setattr(chain_module, "VERIFIED_ISSUERS_TTL", 3600.0)
        now = datetime.now(UTC)
        user = fresh_ca.issue_user("Short Lived", not_after=now + timedelta(seconds=600))
        proxy = make_proxy(user, lifetime=3600)
        ca_dir = str(fresh_ca.directory)
        chain = make_proxy(proxy, lifetime=600).full_chain
        verify_delegated_chain(chain, ca_dir)
        issuers = tuple(certificate_der(c) for c in chain[1:])
        loaded = chain_module._load_ca_dir(ca_dir)
        (proof,) = chain_module._verified_issuers.values()
        assert proof.until == user.cert.not_valid_after_utc.timestamp()
        assert chain_module._verified_issuers_of(ca_dir, issuers, loaded, proof.until - 1)[0] is not None
        assert chain_module._verified_issuers_of(ca_dir, issuers, loaded, proof.until)[0] is None
        long_lived = make_proxy(fresh_ca.issue_user("Long Lived"), lifetime=3600)
        verify_delegated_chain(make_proxy(long_lived, lifetime=600).full_chain, ca_dir)
        ttl = max(p.until for p in chain_module._verified_issuers.values())
        assert ttl <= datetime.now(UTC).timestamp() + chain_module.VERIFIED_ISSUERS_TTL
