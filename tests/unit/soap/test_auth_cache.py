"""The caller's Principal kept per verified chain (soap/auth.py; issue 14) on a real TLS
connection with the test PKI: reused for the same chain, never past the first expiry in the
chain, and the chain-depth check still refuses every time."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ObjectIdentifier

from tests.conftest import Pki
from tests.support import INDEPENDENT, PRIVATE_POLICY, build_runtime, close_runtime, odd_proxy, policy_proxy
from tests.unit.soap.tls_support import tls_pair
from tests.voms_support import (
    FQANS,
    TARGETS_OID,
    fake_voms_proxy,
    fake_voms_server,
    targets_extension,
    with_ac_extension,
    write_lsc,
)
from wmproxy.errors import AuthenticationError
from wmproxy.security.chain import _pem_blocks
from wmproxy.security.delegation import new_proxy_request
from wmproxy.security.proxy import load_credential, make_proxy
from wmproxy.soap import auth
from wmproxy.soap.app import WMProxyApplication

#: Seconds for the TLS handshake between two threads; generous, the machine is shared.
DEADLINE = 60.0


@pytest.fixture
def alice_socket(pki: Pki) -> Iterator[ssl.SSLSocket]:
    auth._cache.clear()
    server, client = tls_pair(pki, pki.users["alice"].proxy)
    yield server
    client.close()
    server.close()
    auth._cache.clear()


def test_the_same_chain_gives_the_kept_principal(alice_socket: ssl.SSLSocket, pki: Pki) -> None:
    environ = {"gunicorn.socket": alice_socket}
    first = auth.tls_principal(environ, ca_dir=str(pki.ca_dir), max_chain_depth=10)
    again = auth.tls_principal(environ, ca_dir=str(pki.ca_dir), max_chain_depth=10)
    assert first.dn == pki.users["alice"].dn
    assert again is first
    other_settings = auth.tls_principal(environ, ca_dir=str(pki.ca_dir), max_chain_depth=9)
    assert other_settings is not first and other_settings == first


def test_a_kept_principal_ends_with_the_first_expiry_in_the_chain(pki: Pki) -> None:
    short = pki.proxy("alice", lifetime=1800)
    server, client = tls_pair(pki, short)
    try:
        ders = auth.verified_chain_der(server)
        principal, valid_until = auth._principal_of(ders, vomsdir=None, ca_dir=str(pki.ca_dir), max_chain_depth=None)
        proxy_end = x509.load_pem_x509_certificate(short.read_bytes()).not_valid_after_utc.timestamp()
        assert valid_until == proxy_end
        cache = auth._PrincipalCache(4)
        cache.put("k", principal, valid_until)
        assert cache.get("k", valid_until - 1) is principal
        assert cache.get("k", valid_until) is None
        assert cache.get("k", valid_until - 1) is None  # dropped for good
    finally:
        client.close()
        server.close()


def test_a_too_deep_chain_is_refused_every_time(alice_socket: ssl.SSLSocket, pki: Pki) -> None:
    environ = {"gunicorn.socket": alice_socket}
    for _ in range(2):
        with pytest.raises(AuthenticationError, match="too long"):
            auth.tls_principal(environ, ca_dir=str(pki.ca_dir), max_chain_depth=0)


def test_the_cache_keeps_at_most_its_size() -> None:
    from wmproxy.domain import Principal

    cache = auth._PrincipalCache(2)
    for i in range(3):
        cache.put(i, Principal(dn=f"/CN={i}"), 100.0)
    assert cache.get(0, 0.0) is None
    assert cache.get(2, 0.0) == Principal(dn="/CN=2")


def _own_pki(root: Path) -> Pki:
    """A CA of the test's own (its CRL is rewritten here), its host and one user, Erin."""
    from wmproxy.security.pki import create_ca, write_proxy

    ca = create_ca(root / "certificates", key_path=root / "ca" / "ca-key.pem")
    host_cert, host_key = ca.issue_host("localhost", root / "host")
    erin = ca.issue_user("Erin", root / "erin")
    proxy = root / "erin" / "x509up"
    write_proxy(erin, proxy, lifetime=3600)
    from tests.conftest import User

    return Pki(root, ca, root / "certificates", host_cert, host_key, {"erin": User("erin", erin, proxy)})


def test_a_chain_revoked_after_its_handshake_is_refused_once_its_principal_lapses(tmp_path: Path) -> None:
    """A kept-alive connection outlives its handshake: when the kept Principal lapses
    (CACHE_TTL), the chain is verified again and a CRL published since refuses it."""
    own = _own_pki(tmp_path)
    auth._cache.clear()
    server, client = tls_pair(own, own.users["erin"].proxy)
    try:
        environ = {"gunicorn.socket": server}
        assert auth.tls_principal(environ, ca_dir=str(own.ca_dir)).dn == own.users["erin"].dn
        own.ca.revoke(own.users["erin"].credential.cert)
        assert auth.tls_principal(environ, ca_dir=str(own.ca_dir)).dn == own.users["erin"].dn  # still kept
        auth._cache.clear()  # what CACHE_TTL does
        with pytest.raises(AuthenticationError, match="revoked"):
            auth.tls_principal(environ, ca_dir=str(own.ca_dir))
    finally:
        client.close()
        server.close()
        auth._cache.clear()


def test_a_chain_past_its_end_gets_no_principal(alice_socket: ssl.SSLSocket, pki: Pki) -> None:
    """The Principal of a chain is made only while the chain verifies: after the end of its
    proxy (a kept-alive connection whose Principal lapsed with it) it is refused."""
    import datetime as dt

    ders = auth.verified_chain_der(alice_socket)
    end = x509.load_der_x509_certificate(ders[0]).not_valid_after_utc
    principal, _ = auth._principal_of(ders, vomsdir=None, ca_dir=str(pki.ca_dir), max_chain_depth=None,
                                      at=end - dt.timedelta(seconds=5))
    assert principal.dn == pki.users["alice"].dn
    with pytest.raises(AuthenticationError, match="expired"):
        auth._principal_of(ders, vomsdir=None, ca_dir=str(pki.ca_dir), max_chain_depth=None,
                           at=end + dt.timedelta(seconds=5))


def test_a_certificate_with_an_unreadable_extension_is_an_authentication_error(pki: Pki) -> None:
    """cryptography reads extensions lazily: a malformed keyUsage was a ValueError of proxy_depth
    (an internal error); the chain is refused when it is first loaded (then kept, once verified)."""
    signer = load_credential(pki.users["alice"].proxy)
    bad = x509.UnrecognizedExtension(ObjectIdentifier("2.5.29.15"), b"\x01\x02")
    pem = odd_proxy(new_proxy_request(bits=1024)[1], signer, extension=bad)
    ders = [x509.load_pem_x509_certificate(block).public_bytes(Encoding.DER) for block in _pem_blocks(pem.encode())]
    with pytest.raises(AuthenticationError, match=r"^Unusable client credential: unreadable DER certificate: "
                                                  r"unreadable extension or name: "):
        auth._principal_of(ders, vomsdir=None, ca_dir=str(pki.ca_dir), max_chain_depth=None)


@pytest.mark.parametrize(("language", "policy", "text"), [
    (INDEPENDENT, None, "an independent proxy (RFC 3820 policy language id-ppl-independent, 1.3.6.1.5.5.7.21.2)"),
    (*PRIVATE_POLICY, f"policy language {PRIVATE_POLICY[0]}, which this service does not understand"),
])
def test_a_proxy_of_another_policy_language_is_an_authentication_error(pki: Pki, language: str,
                                                                        policy: bytes | None, text: str) -> None:
    """RFC 3820: an independent proxy, or one of a language not understood, does not act with its
    owner's rights; the caller is refused, at any level of its chain."""
    alice = pki.users["alice"].credential
    restricted = policy_proxy(alice, language, policy)
    for cred in (restricted, make_proxy(restricted, lifetime=600)):
        ders = [cert.public_bytes(Encoding.DER) for cert in cred.full_chain]
        with pytest.raises(AuthenticationError, match=r"^Unusable client credential: ") as err:
            auth._principal_of(ders, vomsdir=None, ca_dir=str(pki.ca_dir), max_chain_depth=None)
        assert text in str(err.value)
    limited = make_proxy(alice, lifetime=600, limited=True).full_chain
    principal, _ = auth._principal_of([cert.public_bytes(Encoding.DER) for cert in limited], vomsdir=None,
                                      ca_dir=str(pki.ca_dir), max_chain_depth=None)
    assert principal.dn == pki.users["alice"].dn


@pytest.mark.parametrize(("target", "fqans"), [("other-service.example.org", ()), ("localhost", FQANS)])
def test_the_callers_fqans_are_those_of_acs_for_this_service(pki: Pki, tmp_path: Path, template_db: Path,
                                                             target: str, fqans: tuple[str, ...]) -> None:
    """RFC 5755 §4.3.2 at the TLS edge: the application's own authentication believes a VOMS AC
    targeted at another service for nothing; one naming ``[service] host`` (localhost) counts."""
    server = fake_voms_server(pki, tmp_path / "voms")
    proxy = with_ac_extension(pki, server, fake_voms_proxy(pki, server, tmp_path / "voms.pem"),
                              tmp_path / "targeted.pem", TARGETS_OID, targets_extension(target, voms=True),
                              critical=True)
    rt = build_runtime(tmp_path / "state", pki, template_db)
    write_lsc(Path(rt.settings.security.vomsdir), server.dn, pki.ca.dn)
    auth._cache.clear()
    server_side, client = tls_pair(pki, proxy)
    try:
        principal = WMProxyApplication(rt).authenticate({"gunicorn.socket": server_side})
        assert principal.dn == pki.users["alice"].dn
        assert principal.fqans == fqans
    finally:
        client.close()
        server_side.close()
        auth._cache.clear()
        close_runtime(rt)
