"""Registration for renewal: which MyProxy server renews a job's proxy (issue 4).

A delegated credential, (owner DN, delegation id), gets **one** renewal record shared by
all the jobs that use it (:func:`register_for_renewal`). The server comes from the JDL's
``MyProxyServer``, else from the configured defaults (:func:`myproxy_server_for`), the
analogue of the original's ``MYPROXY_SERVER``.
"""

from __future__ import annotations

import datetime as dt
import logging

import classad2

from wmproxy.config import RenewalSettings, parse_host_port
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


def myproxy_server_for(settings: RenewalSettings, ad: classad2.ClassAd, vo: str | None) -> str | None:
    """The MyProxy server (``host[:port]``) the job's proxy is renewed from, or None.

    A ``MyProxyServer`` of the JDL wins. Without the attribute, the default of the job's VO
    (``renewal.myproxy_servers_by_vo``) or else the global default
    (``renewal.myproxy_server``). An empty value, in the JDL or as the default, means no
    renewal (None). ``ad`` is not modified.

    Raises:
        InvalidJdlAttributeError: ``MyProxyServer`` is not a string of the form host[:port].
    """
    if "MyProxyServer" in ad:
        value = ad.get("MyProxyServer")
        if not isinstance(value, str):
            raise InvalidJdlAttributeError("MyProxyServer: a string host[:port] is expected")
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
    uow: UnitOfWork, owner_dn: str, delegation_id: str, server: str | None, now: dt.datetime
) -> None:
    """Attach the delegation of (DN, id) to renewal from ``server`` (one record per credential).

    Runs in the caller's transaction (the job registration). The latest registration's
    server is used for the credential; None (no renewal asked) leaves an existing record
    alone, since the jobs share one proxy. ``now`` is aware UTC.
    """
    if server is None:
        return
    record = uow.renewals.register(owner_dn, delegation_id, server, now)
    log.info("proxy %s (%s) of %s registered for renewal from %s", delegation_id, record.id, owner_dn, server)
