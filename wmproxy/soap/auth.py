"""Who is calling: the TLS client chain as verified by the server's SSL context.

gunicorn terminates TLS with ``CERT_REQUIRED``, ``VERIFY_ALLOW_PROXY_CERTS`` and
``VERIFY_CRL_CHECK_CHAIN`` against the grid CA directory (``deploy/gunicorn.conf.py``),
so a request only reaches the app with a valid, unrevoked chain. Here we read that
verified chain from the socket and name the caller by the end-entity certificate's DN
in slash form (RFC 3820: proxies are skipped).
"""

from __future__ import annotations

import ssl
from typing import Any

from wmproxy.domain import Principal
from wmproxy.errors import AuthenticationError
from wmproxy.security.chain import der_chain_to_pem, identity_dn, load_pem_chain
from wmproxy.security.voms import voms_attributes


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


def tls_principal(environ: dict[str, Any], *, vomsdir: str | None = None, ca_dir: str | None = None) -> Principal:
    """The :class:`Principal` of a request served by gunicorn over TLS.

    FQANs come from the VOMS ACs of the chain that verify against ``vomsdir`` and
    ``ca_dir`` and are valid now; without both, the caller has no FQANs.

    Raises:
        AuthenticationError: no TLS socket or no client certificate.
    """
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, ssl.SSLSocket):
        raise AuthenticationError("Unable to get a valid user DN: no TLS client certificate")
    ders = verified_chain_der(sock)
    if not ders:
        raise AuthenticationError("Unable to get a valid user DN: no TLS client certificate")
    chain_pem = der_chain_to_pem(ders)
    chain = load_pem_chain(chain_pem)
    fqans: tuple[str, ...] = ()
    if vomsdir and ca_dir:
        for attrs in voms_attributes(chain, vomsdir=vomsdir, ca_dir=ca_dir):
            if attrs.verified and attrs.valid_at():
                fqans = attrs.fqans
                break
    return Principal(dn=identity_dn(chain), chain_pem=chain_pem, fqans=fqans)
