"""Who is calling: the TLS client chain as verified by the server's SSL context.

gunicorn terminates TLS with ``CERT_REQUIRED``, ``VERIFY_ALLOW_PROXY_CERTS`` and
``VERIFY_CRL_CHECK_CHAIN`` against the grid CA directory (``deploy/gunicorn.conf.py``),
so a request only reaches the app with a valid, unrevoked chain. Here we read that
verified chain from the socket, refuse chains with more than ``[limits]
max_proxy_chain_depth`` proxy levels (OpenSSL's own limit is 100), name the caller by the
end-entity certificate's DN in slash form (RFC 3820: proxies are skipped) and take its
FQANs from the VOMS ACs that verify (:func:`wmproxy.security.voms.verified_fqans`).
"""

from __future__ import annotations

import ssl
from typing import Any

from wmproxy.domain import Principal
from wmproxy.errors import AuthenticationError, ProxyError
from wmproxy.security.chain import der_chain_to_pem, identity_dn, load_pem_chain, proxy_depth
from wmproxy.security.voms import verified_fqans


def verified_chain_der(sock: Any) -> list[bytes]:
    """DER certificates of the peer's verified chain, leaf first ([] if none).

    Python ≥ 3.13 has ``SSLSocket.get_verified_chain()``; 3.10-3.12 only the private
    ``_sslobj.get_verified_chain()``.
    """
    if hasattr(sock, "get_verified_chain"):
        certs = sock.get_verified_chain() or []
        return [c if isinstance(c, bytes) else c.public_bytes(ssl._ssl.ENCODING_DER) for c in certs]  # type: ignore[attr-defined]
    sslobj = getattr(sock, "_sslobj", None)
    if sslobj is None:
        return []
    return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in (sslobj.get_verified_chain() or [])]  # type: ignore[attr-defined]


def tls_principal(
    environ: dict[str, Any], *, vomsdir: str | None = None, ca_dir: str | None = None,
    max_chain_depth: int | None = None,
) -> Principal:
    """The :class:`Principal` of a request served by gunicorn over TLS.

    FQANs come from the VOMS ACs of the chain that verify against ``vomsdir`` and
    ``ca_dir`` now; without both, the caller has no FQANs.

    Args:
        max_chain_depth: most proxy levels the client chain may have (None: no limit).

    Raises:
        AuthenticationError: no TLS socket, no client certificate, a chain with more than
            ``max_chain_depth`` proxy levels, or a malformed VOMS extension.
    """
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, ssl.SSLSocket):
        raise AuthenticationError("Unable to get a valid user DN: no TLS client certificate")
    ders = verified_chain_der(sock)
    if not ders:
        raise AuthenticationError("Unable to get a valid user DN: no TLS client certificate")
    chain_pem = der_chain_to_pem(ders)
    chain = load_pem_chain(chain_pem)
    depth = proxy_depth(chain)
    if max_chain_depth is not None and depth > max_chain_depth:
        raise AuthenticationError(
            f"The client proxy chain is too long: {depth} proxy levels, at most {max_chain_depth} allowed"
        )
    try:
        fqans = verified_fqans(chain, vomsdir=vomsdir, ca_dir=ca_dir)
    except ProxyError as exc:
        raise AuthenticationError(f"Unusable client credential: {exc}") from None
    return Principal(dn=identity_dn(chain), chain_pem=chain_pem, fqans=fqans)
