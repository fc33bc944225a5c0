"""Proxy renewal from MyProxy (``wmproxy-behaviour.md`` §3.5; ``anchors.md`` §2; issue 4).

A delegated credential, (owner DN, delegation id), is renewed from one MyProxy server for
all the jobs that use it. The renewal worker (``wmproxy.renewal.worker``) owns the loop,
the threads and the MyProxy exchange; the decisions are here, one concept per module:

* :mod:`.registration`: which server (:func:`myproxy_server_for`), whether the site allows
  it (:func:`server_allowed`) and the record
  (:func:`register_for_renewal`);
* :mod:`.schedule`: when a proxy is due (:func:`renewal_margin`, :func:`due_renewals`) and
  when a failed attempt is tried again (:func:`retry_delay`);
* :mod:`.attempt`: one attempt (:func:`begin_renewal`, :func:`finish_renewal`);
* :mod:`.voms`: the VOMS refresh after a renewal (:func:`voms_requests`,
  :func:`settle_voms_refresh`);
* :mod:`.jobfiles`: which ``user.proxy`` copies of running jobs need the stored proxy, and
  which it fits (their VOMS FQAN);
* :mod:`.expiry`: expired credentials abort their jobs, unused records go;
* :mod:`.status`: what users see (:func:`renewal_status`).

Pure crypto checks on the proxies are in :mod:`wmproxy.security.renewed`.
"""

from __future__ import annotations

from wmproxy.config import DEFAULT_MYPROXY_PORT
from wmproxy.security.renewed import expired_voms_attributes
from wmproxy.services.renewal.attempt import (
    LEASE_MARGIN,
    RETRY_FRACTION,
    RenewalOrder,
    RenewalOutcome,
    begin_renewal,
    finish_renewal,
)
from wmproxy.services.renewal.expiry import (
    DESTROYED_REASON,
    NON_FINAL_STATES,
    PROXY_EXPIRED_REASON,
    abort_ended_copies,
    abort_expired_credential,
    deregister_unused,
    expired_credentials,
)
from wmproxy.services.renewal.jobfiles import (
    COPY_NOT_VALID,
    HELD_STATES,
    ProxyFit,
    ProxyRefresh,
    job_proxy_end,
    job_proxy_path,
    stale_copies,
    stale_job_proxies,
)
from wmproxy.services.renewal.registration import (
    myproxy_server_for,
    parse_server,
    register_for_renewal,
    server_allowed,
    server_listed,
)
from wmproxy.services.renewal.schedule import (
    PLANNED_FRACTION,
    AcEnds,
    due_renewals,
    refresh_due,
    renewal_due,
    renewal_margin,
    retry_delay,
)
from wmproxy.services.renewal.status import RenewalStatus, renewal_status
from wmproxy.services.renewal.voms import VomsRequest, ac_problem, proves_delegated, settle_voms_refresh, voms_requests

__all__ = [
    "COPY_NOT_VALID",
    "DEFAULT_MYPROXY_PORT",
    "DESTROYED_REASON",
    "HELD_STATES",
    "LEASE_MARGIN",
    "NON_FINAL_STATES",
    "PLANNED_FRACTION",
    "PROXY_EXPIRED_REASON",
    "RETRY_FRACTION",
    "AcEnds",
    "ProxyFit",
    "ProxyRefresh",
    "RenewalOrder",
    "RenewalOutcome",
    "RenewalStatus",
    "VomsRequest",
    "abort_ended_copies",
    "abort_expired_credential",
    "ac_problem",
    "begin_renewal",
    "deregister_unused",
    "due_renewals",
    "expired_credentials",
    "expired_voms_attributes",
    "finish_renewal",
    "job_proxy_end",
    "job_proxy_path",
    "myproxy_server_for",
    "parse_server",
    "proves_delegated",
    "refresh_due",
    "register_for_renewal",
    "renewal_due",
    "renewal_margin",
    "renewal_status",
    "retry_delay",
    "server_allowed",
    "server_listed",
    "settle_voms_refresh",
    "stale_copies",
    "stale_job_proxies",
    "voms_requests",
]
