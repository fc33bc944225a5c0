"""The user's proxy checked before any connection, with reasons a person understands.

Without this check a missing, expired or wrong credential surfaces as an OpenSSL error
from the TLS handshake (``[SSL] PEM lib (_ssl.c:3905)``,
``SSLV3_ALERT_CERTIFICATE_EXPIRED``): issue 12.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from wmproxy.client.faults import WMProxyClientError

#: RFC 3820 proxyCertInfo (as :data:`wmproxy.security.chain.PROXY_CERT_INFO_OID`, whose module
#: pulls in pyasn1: too slow to import for a check made at every CLI start)
PROXY_CERT_INFO_OID = "1.3.6.1.5.5.7.1.14"
_FIX = "create one with voms-proxy-init or grid-proxy-init, or set X509_USER_PROXY"


def check_proxy(proxy_file: str, min_lifetime: int = 0, now: datetime | None = None) -> float:
    """Check that ``proxy_file`` holds a usable proxy (an RFC 3820 proxy certificate first, its
    key matching it) with at least ``min_lifetime`` seconds left.

    Args:
        proxy_file: ``X509_USER_PROXY`` or ``/tmp/x509up_u<uid>``.
        min_lifetime: seconds the proxy must still be valid (0: only not expired).
        now: the current time (aware, UTC), for tests.

    Returns:
        The seconds left.

    Raises:
        WMProxyClientError: ``ProxyError`` naming the file and what is wrong: missing, a link,
            not a regular file, not the user's or open to others (:func:`read_own_proxy`),
            unreadable, no certificate or key, not a proxy, not yet valid, expired, less than
            ``min_lifetime`` left.
    """
    import ssl

    pem = read_own_proxy(proxy_file)
    facts = _certificate_facts(pem)
    if facts is None:
        raise _error(f"{proxy_file} is not a proxy file (no readable certificate): {_FIX}")
    if b"PRIVATE KEY-----" not in pem:
        raise _error(f"{proxy_file} holds no private key, so it is not a proxy file: {_FIX}")
    try:
        # OpenSSL checks that the key is readable and belongs to the certificate, without the
        # slow RSA consistency check of loading the key with cryptography (issue 14).
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(proxy_file)
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise _error(f"{proxy_file} is not a usable proxy file ({reason}): {_FIX}") from None
    proxy, not_before, not_after = facts
    if not proxy:
        raise _error(f"{proxy_file} holds a certificate that is not a proxy: {_FIX}")
    moment = now or datetime.now(UTC)
    if not_before > moment:
        start = not_before.strftime("%Y-%m-%d %H:%M:%S UTC")
        raise _error(f"the proxy {proxy_file} is not valid before {start} (check the clock)")
    left = (not_after - moment).total_seconds()
    end = not_after.strftime("%Y-%m-%d %H:%M:%S UTC")
    if left <= 0:
        raise _error(f"the proxy {proxy_file} expired at {end}: {_FIX.split(', or')[0]}")
    if left < min_lifetime:
        raise _error(
            f"the proxy {proxy_file} has {int(left // 60)} minutes left (until {end}); at least "
            f"{min_lifetime // 60} minutes are needed: renew it with voms-proxy-init or grid-proxy-init"
        )
    return left


def read_own_proxy(proxy_file: str) -> bytes:
    """The bytes of ``proxy_file``, once it is known to be the user's own private file.

    The rule is Globus' for a proxy or a key (``globus_gsi_sysconfig_check_keyfile_unix``, which
    voms-proxy-init and grid-proxy-init apply): owned by the real uid, no permission for the group
    or others and no execute bit for the owner (``mode & 0o177 == 0``), not empty. Besides, the file
    is opened with ``O_NOFOLLOW`` (a link is refused, not followed) and ``O_NONBLOCK`` (a FIFO
    cannot hold the open), and checked with ``fstat`` on what was opened, so nothing can be swapped
    between the check and the read. Without it, another local user could plant their own proxy
    as ``/tmp/x509up_u<uid>`` and the user's jobs would run as, and belong to, that user.

    Later opens of the same path (the TLS handshake, the delegation signer) read the checked file:
    only the user can replace their own file in a sticky directory such as ``/tmp``.

    Raises:
        WMProxyClientError: ``ProxyError`` naming the file, what is wrong and the fix.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(proxy_file, flags)
    except FileNotFoundError:
        raise _error(f"no proxy file {proxy_file}: {_FIX}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _error(f"the proxy file {proxy_file} is a symbolic link, which is not followed (another user "
                         "may have planted it): remove the link and create a proxy with voms-proxy-init or "
                         "grid-proxy-init, or set X509_USER_PROXY to the file itself") from None
        raise _error(f"the proxy file {proxy_file} is not readable: {exc.strerror}") from None
    try:
        problem = _not_private(os.fstat(fd))
        if problem:
            raise _error(f"the proxy file {proxy_file} {problem}")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise _error(f"the proxy file {proxy_file} is not readable: {exc.strerror}") from None
    finally:
        os.close(fd)


def _not_private(info: os.stat_result) -> str:
    """Why a proxy file of this ``fstat`` is not used (Globus' rule, :func:`read_own_proxy`), or ``""``."""
    if not stat.S_ISREG(info.st_mode):
        return f"is not a regular file: {_FIX}"
    uid = os.getuid()
    if info.st_uid != uid:
        return (f"belongs to {user_label(info.st_uid)}, not to you ({user_label(uid)}): it is not used, since its "
                "owner would act as you (another user may have planted it); remove it, or ask the administrator to, "
                "and create your own proxy with voms-proxy-init or grid-proxy-init, or set X509_USER_PROXY")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o177:
        return (f"has mode {mode:04o}: a proxy must be readable and writable by its owner only, as Globus "
                "requires (no permission for the group or others, no execute bit): chmod 600 the file, or "
                "remove it and create a new proxy")
    if info.st_size == 0:
        return f"is empty: {_FIX}"
    return ""


def user_label(uid: int) -> str:
    """``uid 1000 (alice)``, or ``uid 1000`` when the account has no name."""
    import pwd

    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def _certificate_facts(pem: bytes) -> tuple[bool, datetime, datetime] | None:
    """``(is an RFC 3820 proxy, notBefore, notAfter)`` of the first certificate of ``pem``, or
    None when there is none. Remembered per certificate (SHA-256 of its PEM block) in
    ``$XDG_CACHE_HOME/wmproxy/proxy-certificates.json`` (0600, dates only), so that a CLI start
    with a proxy already seen does not import cryptography (issue 14)."""
    begin = pem.find(b"-----BEGIN CERTIFICATE-----")
    finish = pem.find(b"-----END CERTIFICATE-----", begin)
    if begin < 0 or finish < 0:
        return None
    block = pem[begin:finish + 25]
    digest = hashlib.sha256(block).hexdigest()
    cache = _cache_file()
    known = _read_cache(cache)
    entry = known.get(digest)
    if isinstance(entry, list) and len(entry) == 3:
        return bool(entry[0]), datetime.fromtimestamp(entry[1], UTC), datetime.fromtimestamp(entry[2], UTC)
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(block)
        proxy = any(ext.oid.dotted_string == PROXY_CERT_INFO_OID for ext in cert.extensions)
    except ValueError:
        return None
    facts = (proxy, cert.not_valid_before_utc, cert.not_valid_after_utc)
    recent = dict(list(known.items())[-(_CACHE_ENTRIES - 1):])
    recent[digest] = [proxy, facts[1].timestamp(), facts[2].timestamp()]
    _write_cache(cache, recent)
    return facts


_CACHE_ENTRIES = 16


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "wmproxy", "proxy-certificates.json")


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, data: dict[str, Any]) -> None:
    """Best effort: a cache that cannot be written only costs time."""
    import tempfile

    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".proxy-certificates.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, path)
    except OSError:
        return


def _error(text: str) -> WMProxyClientError:
    return WMProxyClientError("ProxyError", text, None, "local proxy check")
