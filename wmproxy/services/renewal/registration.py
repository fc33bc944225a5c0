"""Registration for renewal: which MyProxy server renews a job's proxy (issue 4).

A delegated credential, (owner DN, delegation id), gets **one** renewal record shared by
all the jobs that use it (:func:`register_for_renewal`). The server comes from the JDL's
``MyProxyServer``, else from the configured defaults (:func:`myproxy_server_for`), the
analogue of the original's ``MYPROXY_SERVER``. A server a JDL names is the record's from
then on (the latest one named); a default only makes a record, never replaces the server
of one (the user named a server where the credential is stored; the default is a guess).
The original kept one renewal per subject, server and FQAN set, so jobs of one credential
naming two servers were each renewed from their own.

The original let a JDL name any host and port, so the renewal worker connected wherever a
user asked, from inside the site. Here a JDL may name only the configured defaults and the
servers ``[renewal] myproxy_allowed_servers`` lists (:func:`server_allowed`); the renewal
worker checks a record's server again before each attempt, as the list may have changed.
"""

from __future__ import annotations

import datetime as dt
import logging

import classad2

from wmproxy.config import RenewalSettings, canonical_host, parse_host_port
from wmproxy.errors import InvalidJdlAttributeError
from wmproxy.store import UnitOfWork

log = logging.getLogger(__name__)


def parse_server(value: str) -> tuple[str, int]:
    """``host[:port]`` → ``(host, port)``; the port defaults to 7512.

    Raises:
        InvalidJdlAttributeError: not a host name with an optional port in 1-65535.
    """
    try:
        return parse_host_port(value)
    except ValueError:
        raise InvalidJdlAttributeError(f"MyProxyServer: {value!r} is not host[:port]") from None


def server_allowed(settings: RenewalSettings, server: str) -> bool:
    """Whether the renewal worker may connect to ``server`` (``host[:port]``).

    Allowed: the configured defaults (``renewal.myproxy_server`` and the values of
    ``renewal.myproxy_servers_by_vo``), and what ``renewal.myproxy_allowed_servers`` lists:
    the same host and port, a host under a ``*.domain`` with the port, or ``*`` (any).
    Host names compare without case and trailing dot; the port defaults to 7512 on both
    sides. A value that is not ``host[:port]`` is not allowed.
    """
    try:
        host, port = parse_host_port(server)
    except ValueError:
        return False
    host = canonical_host(host)
    if (host, port) in settings.default_servers:
        return True
    for pattern, pattern_port in settings.allowed_server_patterns:
        if pattern == "*":
            return True
        if pattern_port != port:
            continue
        if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
            return True
    return False


def server_listed(settings: RenewalSettings, host: str, port: int) -> bool:
    """Whether the site names the server ``host``:``port`` itself: a configured default, or a
    ``host[:port]`` entry of ``renewal.myproxy_allowed_servers`` (not ``*`` nor ``*.domain``).
    The renewal worker reaches a server allowed only through a wildcard at public addresses
    only, and tells the user no detail of a failed connection to it
    (:func:`~wmproxy.renewal.myproxy.renew_proxy`'s ``listed``)."""
    host = canonical_host(host)
    if (host, port) in settings.default_servers:
        return True
    return any(pattern == host and pattern_port == port for pattern, pattern_port in settings.allowed_server_patterns)


def myproxy_server_for(settings: RenewalSettings, ad: classad2.ClassAd, vo: str | None) -> str | None:
    """The MyProxy server (``host[:port]``) the job's proxy is renewed from, or None.

    A ``MyProxyServer`` of the JDL wins. Without the attribute, the default of the job's VO
    (``renewal.myproxy_servers_by_vo``) or else the global default
    (``renewal.myproxy_server``). An empty value, in the JDL or as the default, means no
    renewal (None). ``ad`` is not modified.

    Raises:
        InvalidJdlAttributeError: ``MyProxyServer`` is not a string of the form host[:port],
            or names a server the site does not allow (:func:`server_allowed`).
    """
    if "MyProxyServer" in ad:
        value = ad.get("MyProxyServer")
        if not isinstance(value, str):
            raise InvalidJdlAttributeError("MyProxyServer: a string host[:port] is expected")
        value = value.strip()
        if value:
            parse_server(value)
            if not server_allowed(settings, value):
                raise InvalidJdlAttributeError(
                    f"MyProxyServer: {value!r} is not a MyProxy server this service renews proxies from "
                    "(the site lists them in [renewal] myproxy_allowed_servers)")
    elif vo is not None and vo in settings.myproxy_servers_by_vo:
        value = settings.myproxy_servers_by_vo[vo]
    else:
        value = settings.myproxy_server
    value = value.strip()
    if not value:
        return None
    parse_server(value)
    return value


def register_for_renewal(
    uow: UnitOfWork, owner_dn: str, delegation_id: str, server: str | None, now: dt.datetime, *,
    named: bool = True, settings: RenewalSettings | None = None,
) -> None:
    """Attach the delegation of (DN, id) to renewal from ``server`` (one record per credential).

    Runs in the caller's transaction (the job registration). A server the JDL ``named``
    (``MyProxyServer``) replaces the record's: the latest one named is used for the
    credential. A default (``named`` False) makes the record if there is none and leaves an
    existing record's server alone, so that jobs naming a server are not renewed from the
    default once a job without the attribute shares their credential, unless the site's
    ``settings`` no longer allow that server (:func:`server_allowed`: the site moved its
    MyProxy, and every attempt from the old one would be refused). None (no renewal asked)
    leaves an existing record alone, since the jobs share one proxy. ``now`` is aware UTC.
    """
    if server is None:
        return

    def replace(current: str) -> bool:
        return named or (settings is not None and not server_allowed(settings, current))

    record = uow.renewals.register(owner_dn, delegation_id, server, now, replace=replace)
    log.info("proxy %s (%s) of %s registered for renewal from %s", delegation_id, record.id, owner_dn, server)
