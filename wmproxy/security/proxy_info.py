"""What getProxyInfo / getJobProxyInfo report about a proxy (``wmproxy-behaviour.md`` §5.5).

Typed values for ProxyInfoStructType / VOProxyInfoStructType: slash DNs, the key size
in bits (int) and times as aware UTC datetimes. The SOAP port formats them into the wire
strings (``wmproxy.soap.convert``: decimal, times as UNIX epoch seconds).

Two deliberate differences from the gLite HEAD server:

* ``type`` is ``"proxy"`` only for RFC 3820 proxies (proxyCertInfo present), else
  ``"x509"``; HEAD looked for ``CN=`` in the subject and so always said ``"proxy"``.
* ``identity`` is the end-entity (user) DN, as ``voms-proxy-info`` prints it. HEAD
  copied the issuer string, which is the same for a one-level proxy but carries the
  extra proxy CNs for proxies of proxies.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

from wmproxy.errors import ProxyError
from wmproxy.security.chain import end_entity, is_proxy, load_pem_chain
from wmproxy.security.dn import slash_dn
from wmproxy.security.voms import VomsAttributes, voms_attributes


@dataclass
class VOProxyInfo:
    """One VOMS AC (VOProxyInfoStructType); times are aware UTC.

    ``attributes`` holds the AC's FQANs only when it verified (``verified``); an AC that
    did not verify keeps what it claims about its holder, issuer, VO and dates, no FQAN,
    and the reason in ``verify_error``.
    """

    user: str
    user_ca: str
    server: str
    server_ca: str
    vo_name: str
    uri: str
    start_time: datetime
    end_time: datetime
    attributes: list[str] = field(default_factory=list)
    verified: bool = True
    verify_error: str = ""


@dataclass
class ProxyInfo:
    """A proxy or certificate (ProxyInfoStructType).

    ``strength`` is the leaf's public key size in bits. ``start_time``/``end_time`` (aware
    UTC) are the leaf's notBefore and the earliest notAfter of the chain (the effective
    lifetime; the leaf's own for proxies made by the usual tools).
    """

    subject: str
    issuer: str
    identity: str
    type: str
    strength: int
    start_time: datetime
    end_time: datetime
    vos: list[VOProxyInfo] = field(default_factory=list)


def proxy_info(
    pem: bytes, *, vomsdir: str | None, ca_dir: str | None, at: datetime | None = None,
    host_names: Collection[str] = (),
) -> ProxyInfo:
    """Describe a grid proxy file (cert, key, chain) or a PEM chain, leaf first.

    Args:
        pem: PEM bytes; private key blocks are ignored.
        vomsdir, ca_dir: what the VOMS ACs are verified against
            (:func:`~wmproxy.security.voms.voms_attributes`); every AC is listed, with its
            FQANs only if it verifies (``None``: nothing verifies).
        at: time of the AC check (UTC, default now).
        host_names: the service's names, which an AC with targets must name
            (:func:`~wmproxy.security.voms.service_host_names`; empty: such ACs do not verify).

    Raises:
        ProxyError: no certificate, unreadable certificate or malformed VOMS AC.
    """
    return chain_proxy_info(load_pem_chain(pem), vomsdir=vomsdir, ca_dir=ca_dir, at=at, host_names=host_names)


def chain_proxy_info(
    chain: list[x509.Certificate], *, vomsdir: str | None, ca_dir: str | None, at: datetime | None = None,
    host_names: Collection[str] = (),
) -> ProxyInfo:
    """:func:`proxy_info` for an already parsed leaf-first chain. Raises ProxyError like it."""
    if not chain:
        raise ProxyError("empty certificate chain")
    leaf = chain[0]
    try:
        identity = slash_dn(end_entity(chain).subject)
    except ProxyError:
        identity = slash_dn(leaf.issuer)
    return ProxyInfo(
        subject=slash_dn(leaf.subject),
        issuer=slash_dn(leaf.issuer),
        identity=identity,
        type="proxy" if is_proxy(leaf) else "x509",
        strength=key_bits(leaf),
        start_time=leaf.not_valid_before_utc,
        end_time=min(c.not_valid_after_utc for c in chain),
        vos=[vo_proxy_info(a) for a in voms_attributes(chain, vomsdir=vomsdir, ca_dir=ca_dir, at=at,
                                                       host_names=host_names)],
    )


def vo_proxy_info(attrs: VomsAttributes) -> VOProxyInfo:
    """The VOProxyInfoStructType fields of one AC; FQANs only if it verified."""
    return VOProxyInfo(
        user=attrs.holder_dn,
        user_ca=attrs.holder_ca_dn,
        server=attrs.issuer_dn,
        server_ca=attrs.issuer_ca_dn,
        vo_name=attrs.vo,
        uri=attrs.uri,
        start_time=attrs.not_before,
        end_time=attrs.not_after,
        attributes=list(attrs.fqans) if attrs.verified else [],
        verified=attrs.verified,
        verify_error="" if attrs.verified else attrs.verify_error or "not verified",
    )


def key_bits(cert: x509.Certificate) -> int:
    """Public key size in bits (RSA modulus, EC curve size; 256/456 for Ed25519/Ed448)."""
    key = cert.public_key()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return 256
    if isinstance(key, ed448.Ed448PublicKey):
        return 456
    return int(getattr(key, "key_size", 0))
