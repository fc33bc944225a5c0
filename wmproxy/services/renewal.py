"""Proxy renewal registration (``wmproxy-behaviour.md`` §3.5; issue: renewal from MyProxy).

Hooks called by registration; the renewal worker lives in ``wmproxy.renewal``.
"""

from __future__ import annotations

import datetime as dt

import classad2

from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork


def choose_myproxy_server(rt: Runtime, ad: classad2.ClassAd, vo: str | None) -> str | None:
    """The MyProxy server (``host[:port]``) the job's proxy is renewed from, or None.

    Sets ``MyProxyServer`` in ``ad`` (the registered JDL) when a default applies and
    removes it when empty. Not implemented yet: returns what the JDL names.
    """
    value = ad.get("MyProxyServer")
    return value if isinstance(value, str) and value else None


def register_for_renewal(
    uow: UnitOfWork, rt: Runtime, owner_dn: str, delegation_id: str, server: str | None, now: dt.datetime
) -> None:
    """Attach the delegation of (DN, id) to renewal from ``server`` (one record per credential)."""
