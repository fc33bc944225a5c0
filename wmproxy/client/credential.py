"""The user's proxy checked before any connection, with reasons a person understands.

Without this check a missing, expired or wrong credential surfaces as an OpenSSL error
from the TLS handshake (``[SSL] PEM lib (_ssl.c:3905)``,
``SSLV3_ALERT_CERTIFICATE_EXPIRED``): issue 12.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from wmproxy.client.faults import WMProxyClientError

_FIX = "create one with voms-proxy-init or grid-proxy-init, or set X509_USER_PROXY"


def check_proxy(proxy_file: str, min_lifetime: int = 0, now: datetime | None = None) -> float:
    """Check that ``proxy_file`` holds a usable proxy (cert, matching key, RFC 3820 or legacy
    proxy) with at least ``min_lifetime`` seconds left.

    Args:
        proxy_file: ``X509_USER_PROXY`` or ``/tmp/x509up_u<uid>``.
        min_lifetime: seconds the proxy must still be valid (0: only not expired).
        now: the current time (aware, UTC), for tests.

    Returns:
        The seconds left.

    Raises:
        WMProxyClientError: ``ProxyError`` naming the file and what is wrong: missing,
            unreadable, no certificate or key, not a proxy, not yet valid, expired,
            less than ``min_lifetime`` left.
    """
    from wmproxy.errors import WMProxyError
    from wmproxy.security.chain import is_proxy
    from wmproxy.security.proxy import load_credential

    if not os.path.exists(proxy_file):
        raise _error(f"no proxy file {proxy_file}: {_FIX}")
    if not os.access(proxy_file, os.R_OK):
        raise _error(f"the proxy file {proxy_file} is not readable")
    try:
        cred = load_credential(proxy_file)
    except WMProxyError as exc:
        raise _error(f"{proxy_file} is not a proxy file ({exc}): {_FIX}") from None
    if cred.key is None:
        raise _error(f"{proxy_file} holds no private key, so it is not a proxy file: {_FIX}")
    if not is_proxy(cred.cert):
        raise _error(f"{proxy_file} holds a certificate that is not a proxy: {_FIX}")
    moment = now or datetime.now(UTC)
    if cred.cert.not_valid_before_utc > moment:
        start = cred.cert.not_valid_before_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
        raise _error(f"the proxy {proxy_file} is not valid before {start} (check the clock)")
    left = (cred.cert.not_valid_after_utc - moment).total_seconds()
    end = cred.cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    if left <= 0:
        raise _error(f"the proxy {proxy_file} expired at {end}: {_FIX.split(', or')[0]}")
    if left < min_lifetime:
        raise _error(
            f"the proxy {proxy_file} has {int(left // 60)} minutes left (until {end}); the service needs at "
            f"least {min_lifetime // 60} minutes: renew it with voms-proxy-init or grid-proxy-init"
        )
    return left


def _error(text: str) -> WMProxyClientError:
    return WMProxyClientError("ProxyError", text, None, "local proxy check")
