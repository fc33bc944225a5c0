"""Who is calling: the TLS client chain as verified by the server's SSL context.

gunicorn terminates TLS with ``CERT_REQUIRED``, ``VERIFY_ALLOW_PROXY_CERTS`` and
``VERIFY_CRL_CHECK_CHAIN`` against the grid CA directory (``deploy/gunicorn.conf.py``),
so a connection only starts with a valid, unrevoked chain. A kept-alive connection can
outlive that check, so the chain is verified again against the CA directory as it is then
(CRLs included) whenever its Principal is made: at least every :data:`CACHE_TTL` seconds,
and as soon as its first certificate has expired. Here we read the verified chain from the
socket, refuse chains with more than ``[limits] max_proxy_chain_depth`` proxy levels
(OpenSSL's own limit is 100) and chains holding a proxy whose RFC 3820 policy language is
neither inheritAll nor the Globus limited proxy
(:func:`wmproxy.security.chain.check_proxy_policies`: an independent proxy has none of its
issuer's rights, and a language not understood cannot be given them), name the caller by the
end-entity certificate's DN in slash form (RFC 3820: proxies are skipped) and take its FQANs
from the VOMS ACs that verify (:func:`wmproxy.security.voms.verified_fqans`) for this service
(an AC targeted at other services gives none: ``host_names``).

OpenSSL's handshake does not read the CA directory's namespace policies: the verification of the
chain here does (:mod:`wmproxy.security.ca_policy`), so a chain whose certificate a CA issued
outside its namespace (another CA's user DN) names nobody: AuthenticationFault "The client
certificate is refused: ...".
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Collection
from datetime import datetime
from typing import Any

from cachetools import LRUCache

from wmproxy.domain import Principal
from wmproxy.errors import AuthenticationError, ProxyError
from wmproxy.security.ca_policy import CaPolicyError
from wmproxy.security.chain import (
    check_proxy_policies,
    der_chain_to_pem,
    identity_dn,
    load_pem_chain,
    proxy_depth,
    verify_chain,
)
from wmproxy.security.voms import verified_fqans, voms_attributes


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
    max_chain_depth: int | None = None, host_names: Collection[str] = (),
) -> Principal:
    """The :class:`Principal` of a request served by gunicorn over TLS.

    FQANs come from the VOMS ACs of the chain that verify against ``vomsdir`` and
    ``ca_dir`` now; without both, the caller has no FQANs.

    The Principal of a verified chain is kept (:data:`CACHE_SIZE` chains, per process) and
    reused by the next requests presenting the same chain (keep-alive or new connections,
    each verified by the TLS handshake, CRLs included) until the first certificate of the
    chain or one of its VOMS ACs expires or becomes valid, and at most :data:`CACHE_TTL`
    seconds (changes in the vomsdir or CA directory are seen after that). With ``ca_dir``, a
    Principal is only made for a chain that verifies against it at that moment: a connection
    kept alive past the end of its proxy, or past a CRL that revokes it, is refused from then
    on, not only at its next handshake.

    Args:
        max_chain_depth: most proxy levels the client chain may have (None: no limit).
        host_names: the service's names; an AC with targets verifies only if it names one
            (:func:`wmproxy.security.voms.service_host_names`).

    Raises:
        AuthenticationError: no TLS socket, no client certificate, a chain with more than
            ``max_chain_depth`` proxy levels, a proxy of another policy language than inheritAll
            or limited (the message names it), a chain that no longer verifies against
            ``ca_dir`` (expired, revoked), a certificate or extension that cannot be read, or a
            malformed VOMS extension.
    """
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, ssl.SSLSocket):
        raise AuthenticationError("Unable to get a valid user DN: no TLS client certificate")
    ders = verified_chain_der(sock)
    if not ders:
        raise AuthenticationError("Unable to get a valid user DN: no TLS client certificate")
    key = (tuple(ders), vomsdir, ca_dir, max_chain_depth, tuple(host_names))
    now = time.time()
    cached = _cache.get(key, now)
    if cached is not None:
        return cached
    principal, valid_until = _principal_of(ders, vomsdir=vomsdir, ca_dir=ca_dir, max_chain_depth=max_chain_depth,
                                           host_names=host_names)
    _cache.put(key, principal, min(valid_until, now + CACHE_TTL))
    return principal


def _principal_of(
    ders: list[bytes], *, vomsdir: str | None, ca_dir: str | None, max_chain_depth: int | None,
    at: datetime | None = None, host_names: Collection[str] = (),
) -> tuple[Principal, float]:
    """The Principal of a DER chain and until when (POSIX seconds) it stays the same; with
    ``ca_dir``, only for a chain that verifies against it at ``at`` (UTC; default now).

    Raises:
        AuthenticationError: as :func:`tls_principal`.
    """
    try:
        chain_pem = der_chain_to_pem(ders)
        chain = load_pem_chain(chain_pem)  # each certificate's extensions read once, then kept
    except ProxyError as exc:
        raise AuthenticationError(f"Unusable client credential: {exc.args[0]}") from None
    depth = proxy_depth(chain)
    if max_chain_depth is not None and depth > max_chain_depth:
        raise AuthenticationError(
            f"The client proxy chain is too long: {depth} proxy levels, at most {max_chain_depth} allowed"
        )
    try:
        check_proxy_policies(chain)  # an independent proxy, or one of a language not understood
    except ProxyError as exc:
        raise AuthenticationError(f"Unusable client credential: {exc.args[0]}") from None
    if ca_dir is not None:
        # The handshake verified the chain when the connection started; on a kept-alive
        # connection that may be long ago, and the proxy may have expired or been revoked since.
        try:
            verify_chain(chain, ca_dir, at=at)
        except CaPolicyError as exc:
            raise AuthenticationError(f"The client certificate is refused: {exc.args[0]}") from None
        except ProxyError as exc:
            raise AuthenticationError(f"The client credential is no longer valid: {exc}") from None
    try:
        fqans = verified_fqans(chain, vomsdir=vomsdir, ca_dir=ca_dir, at=at, host_names=host_names)
        acs = voms_attributes(chain) if vomsdir and ca_dir else []
    except ProxyError as exc:
        raise AuthenticationError(f"Unusable client credential: {exc}") from None
    now = time.time() if at is None else at.timestamp()
    changes = [c.not_valid_after_utc.timestamp() for c in chain]
    for ac in acs:
        changes += [t for t in (ac.not_before.timestamp(), ac.not_after.timestamp()) if t > now]
    return Principal(dn=identity_dn(chain), chain_pem=chain_pem, fqans=fqans), min(changes)


#: Verified chains whose Principal is kept per process.
CACHE_SIZE = 1024
#: Longest time (seconds) a kept Principal is reused: a CRL or vomsdir change reaches a
#: kept-alive connection after this, as it reaches new handshakes after the SSL context's own
#: 60 s (``wmproxy.gunicorn_conf``).
CACHE_TTL = 60.0


class _PrincipalCache:
    """A thread-safe LRU (cachetools) of ``key → (Principal, valid until)``; an entry read at
    or after its end is dropped."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: LRUCache[Any, tuple[Principal, float]] = LRUCache(size)
        self._lock = threading.Lock()

    def get(self, key: Any, now: float) -> Principal | None:
        """The kept Principal, None when absent or ended at ``now`` (UNIX seconds)."""
        with self._lock:
            item = self._items.get(key)
            if item is not None and now >= item[1]:
                del self._items[key]
                return None
        return None if item is None else item[0]

    def put(self, key: Any, principal: Principal, valid_until: float) -> None:
        """Keep ``principal`` until ``valid_until`` (UNIX seconds)."""
        with self._lock:
            self._items[key] = (principal, valid_until)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_cache = _PrincipalCache(CACHE_SIZE)
