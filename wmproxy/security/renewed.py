"""Checks on proxies met during MyProxy renewal (``wmproxy-behaviour.md`` §3.5; issue 4).

Pure: PEM bytes in, typed values out. The renewal services
(:mod:`wmproxy.services.renewal`) decide what to do with the answers:

* :func:`check_renewed_proxy`: is what MyProxy returned a usable proxy of the owner,
  and how long is it valid;
* :func:`expired_voms_attributes` / :func:`has_voms_attributes`: the VOMS ACs a renewal
  cannot refresh (MyProxy holds no VOMS attributes);
* :func:`proxy_end`: notAfter of a proxy file, unchecked (for proxies this service stored);
* :func:`verified_proxy_end`: the end of a proxy file only if it verifies as a proxy of its
  owner (a job's own copy, which the job's account may have rewritten).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from wmproxy.errors import ProxyError
from wmproxy.security.chain import (
    check_proxy_policies,
    end_entity,
    has_limited_proxy,
    load_pem_chain,
    proxy_depth,
    verify_exact_chain,
)
from wmproxy.security.dn import slash_dn
from wmproxy.security.voms import voms_attributes

#: Largest RSA public exponent a certificate of a checked chain may have. Verifying a signature
#: costs one modular exponentiation by the signer's exponent: 65537 (17 bits) everywhere in
#: grid PKI, 3 or 17 in a few old keys. OpenSSL caps the exponent (at 64 bits) only for moduli
#: above 3072 bits, so a chain of 3072-bit keys with 3072-bit exponents, each proxy signed by
#: the one above, cost 7 ms a level (a job's copy of 22 levels: 156 ms at each check, red team).
#: 2**32 accepts every exponent in use and keeps a verification within 32 squarings a level.
MAX_RSA_EXPONENT = 2**32


@dataclass(frozen=True)
class ProxyValidity:
    """The validity of a proxy chain (aware UTC): the leaf's notBefore and the earliest
    notAfter of the chain (the effective end)."""

    not_before: dt.datetime
    not_after: dt.datetime


def check_renewed_proxy(
    pem: bytes, owner_dn: str, ca_dir: str, now: dt.datetime, *, stored_pem: bytes, max_depth: int | None = None
) -> ProxyValidity:
    """Check a proxy returned by MyProxy and return its validity.

    Args:
        pem: the proxy in grid file layout (certificate, key, chain), PEM.
        owner_dn: slash DN the proxy must be of (the delegating user's identity).
        ca_dir: grid CA directory the chain must verify against (with CRLs).
        now: aware UTC time of the check.
        stored_pem: the stored proxy being renewed: the new one's user certificate must have
            the same subject and the same issuer (a certificate renewed by its CA, with a new key,
            is the same user: gLite's renewal compares the DN).

    The chain must be the path OpenSSL verifies, in order (:func:`verify_exact_chain`): its
    identity is then the one of the verified path, not of a certificate sent beside it.

    Raises:
        ProxyError: no or unreadable certificate, more than ``max_depth`` proxy levels, an RSA
            key with a public exponent above :data:`MAX_RSA_EXPONENT`, a chain that does not
            verify at ``now`` or is not the verified path (``ProxyVerificationError``), another
            identity than ``owner_dn``, a limited proxy in the chain (putProxy refuses them), a
            proxy of another RFC 3820 policy language than inheritAll and limited
            (``ProxyPolicyError`` naming it: an independent proxy, or a language not understood), or
            a user certificate of another subject or issuer than the stored proxy's.
    """
    chain = load_pem_chain(pem)
    user = _owners_chain(chain, owner_dn, ca_dir, now, "MyProxy returned", max_depth=max_depth)
    if has_limited_proxy(chain):
        # a proxy of another language than inheritAll counts as limited: refused as what it is
        check_proxy_policies(chain)
        raise ProxyError("MyProxy returned a limited proxy, where a full one was delegated")
    stored = end_entity(load_pem_chain(stored_pem))
    if user.subject != stored.subject or user.issuer != stored.issuer:
        raise ProxyError(f"MyProxy returned a proxy of a certificate of {owner_dn} by another CA than the stored "
                         "proxy's")
    return ProxyValidity(chain[0].not_valid_before_utc, min(c.not_valid_after_utc for c in chain))


def _owners_chain(chain: list[x509.Certificate], owner_dn: str, ca_dir: str, now: dt.datetime | None,
                  what: str, *, check_crl: bool = True, max_depth: int | None) -> x509.Certificate:
    """Verify ``chain`` at ``now`` (None: the clock's time) as the exact path to ``ca_dir`` of a
    certificate of ``owner_dn``, with the CRLs unless ``check_crl`` is false; returns that
    (end-entity) certificate. Before OpenSSL: at most ``max_depth`` proxy levels (None: any)
    and no RSA key with a public exponent above :data:`MAX_RSA_EXPONENT` (:func:`check_chain_cost`).

    Raises:
        ProxyError: too deep, a key too slow to verify with, it does not verify, is not the
            verified path, or is of another identity.
    """
    check_chain_cost(chain, max_depth, what)
    verify_exact_chain(chain, ca_dir, at=now, check_crl=check_crl)
    user = end_entity(chain)
    identity = slash_dn(user.subject)
    if identity != owner_dn:
        raise ProxyError(f"{what} a proxy of {identity}")
    return user


def check_chain_cost(chain: list[x509.Certificate], max_depth: int | None, what: str) -> None:
    """Refuse, before any signature is verified, a chain whose verification would cost more than
    an ordinary proxy's: more than ``max_depth`` proxy levels (None: not checked) or a
    certificate with an RSA public exponent above :data:`MAX_RSA_EXPONENT`. A key of another or
    an unknown algorithm is left to the verification.

    Raises:
        ProxyError: the chain is too deep or holds such a key (``what`` begins the text).
    """
    depth = proxy_depth(chain)
    if max_depth is not None and depth > max_depth:
        raise ProxyError(f"{what} a proxy chain of {depth} proxy levels, at most {max_depth} allowed")
    for cert in chain:
        try:
            key = cert.public_key()
        except (ValueError, UnsupportedAlgorithm):
            continue
        if isinstance(key, rsa.RSAPublicKey) and key.public_numbers().e > MAX_RSA_EXPONENT:
            raise ProxyError(f"{what} a certificate whose RSA public exponent is over 2**32 ({slash_dn(cert.subject)})")


def verified_proxy_end(pem: bytes, owner_dn: str, ca_dir: str, now: dt.datetime, *,
                       max_depth: int | None = None) -> dt.datetime:
    """The end (aware UTC) of a proxy file that must be a proxy of ``owner_dn`` still valid at
    ``now``: the earliest notAfter of its chain, which must be the exact path OpenSSL verifies
    to ``ca_dir`` (:func:`verify_exact_chain`) at the clock's time.

    For a file someone else can write (a job's copy, in the work dir its account owns): a
    certificate it made itself does not verify, and a longer proxy it signs below its own
    (it holds that proxy's key) ends no later than its own, the earliest end of the path.
    The CRLs are not checked: the question is whether the file holds the owner's proxy and
    until when, and a CA directory whose CRL is stale or missing (fetch-crl late) must not
    make every job's copy count as ended. It is verified at the clock's time, by the store
    OpenSSL keeps for it (one built for ``now`` costs a conversion of every CA and CRL: a
    pass over thousands of jobs with one ``now`` paid that for each). A chain of more than
    ``max_depth`` proxy levels (None: any) or with a key slow to verify with
    (:func:`check_chain_cost`) is refused before it is verified.

    Raises:
        ProxyError: unreadable, too deep, a key too slow to verify with, not verifying now,
            ended at ``now``, not the verified path, or of another identity.
    """
    chain = load_pem_chain(pem)
    _owners_chain(chain, owner_dn, ca_dir, None, "the file holds", check_crl=False, max_depth=max_depth)
    end = min(c.not_valid_after_utc for c in chain)
    if end <= now:
        raise ProxyError(f"the file holds a proxy that ended at {end:%Y-%m-%d %H:%M:%S} UTC")
    return end


def expired_voms_attributes(pem: bytes, now: dt.datetime) -> tuple[str, ...]:
    """The VOMS ACs of the proxy that have ended at ``now`` (aware UTC), one text each:
    ``"<FQANs or VO> (VO <vo>, ended <ISO time>)"``. An unreadable proxy has none."""
    try:
        acs = voms_attributes(load_pem_chain(pem))
    except ProxyError:
        return ()
    return tuple(
        f"{' '.join(ac.fqans) or ac.vo} (VO {ac.vo}, ended {ac.not_after.isoformat()})"
        for ac in acs
        if ac.not_after <= now
    )


def has_voms_attributes(pem: bytes) -> bool:
    """Whether the proxy carries VOMS ACs (valid or not); False for an unreadable proxy."""
    try:
        return bool(voms_attributes(load_pem_chain(pem)))
    except ProxyError:
        return False


def proxy_end(pem: bytes) -> dt.datetime | None:
    """The end (aware UTC) of a proxy file: the earliest notAfter of its chain, as a stored
    proxy's ``not_after`` is; None if unreadable."""
    try:
        return min(c.not_valid_after_utc for c in load_pem_chain(pem))
    except (ProxyError, ValueError):
        return None
