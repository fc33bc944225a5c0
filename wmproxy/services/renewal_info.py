"""getProxyRenewalInfo (a WMProxy extension, issue 4): the MyProxy renewal of a job's proxy.

The reference ``ProxyInfoStructType`` of getJobProxyInfo cannot carry the renewal state,
so this extension operation reports it: whether the job's delegated credential is
registered for renewal (one record per credential, shared by all the jobs that use it,
:mod:`wmproxy.services.renewal`), from which MyProxy server, the last attempt and its
result, how many renewals succeeded, and the end of the stored (possibly renewed) proxy.
Access is that of getJobProxyInfo: the owner, or a reader of the job's ACL.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from wmproxy.domain import Principal
from wmproxy.errors import DelegationNotFoundError, InvalidArgumentError
from wmproxy.services.access import live_job
from wmproxy.services.renewal import renewal_status
from wmproxy.services.runtime import Runtime


@dataclass(frozen=True)
class ProxyRenewalInfo:
    """``ProxyRenewalInfoStructType``.

    Attributes:
        myproxy_server: ``host:port`` the credential is renewed from; None when not registered.
        registered: whether the job's credential has a renewal record.
        last_attempt: start of the last MyProxy exchange (aware UTC), None if never tried.
        last_result: ``renewed``, ``not-extended``, ``unreachable``, ``refused``, ``failed`` or
            ``not-allowed`` (the server is not allowed here: no connection was made).
        last_error: the reason of the last failure (None after a success).
        renewals: MyProxy exchanges that gave a longer proxy.
        proxy_end_time: notAfter of the stored proxy (aware UTC); the SOAP port sends it
            as decimal UNIX epoch seconds, as ``ProxyInfoStructType.EndTime``.
    """

    myproxy_server: str | None
    registered: bool
    last_attempt: dt.datetime | None
    last_result: str | None
    last_error: str | None
    renewals: int
    proxy_end_time: dt.datetime


def proxy_renewal_info(rt: Runtime, principal: Principal, job_id: str) -> ProxyRenewalInfo:
    """getProxyRenewalInfo: the renewal state of the proxy the job runs with.

    Raises:
        InvalidArgumentError: empty id ("Provided Job Id not valid") or malformed id.
        JobNotFoundError: no such job (or purged).
        AuthorizationError: neither the owner nor in the job's ACL.
        DelegationNotFoundError: the job's delegation has been destroyed.
    """
    if not job_id:
        raise InvalidArgumentError("Provided Job Id not valid")
    with rt.uow() as uow:
        uow.one_snapshot()  # the proxy's end and the renewal record as one renewal left them
        job = live_job(uow, rt, principal, job_id, access="read")
        delegation = uow.delegations.get(job.owner_dn, job.delegation_id)
        if delegation is None:
            raise DelegationNotFoundError("Unable to get the job's delegated Proxy")
        status = renewal_status(uow, job.owner_dn, job.delegation_id)
        end = delegation.not_after
    if status is None:
        return ProxyRenewalInfo(None, False, None, None, None, 0, end)
    return ProxyRenewalInfo(
        myproxy_server=status.myproxy_server,
        registered=True,
        last_attempt=status.last_attempt_at,
        last_result=status.last_result,
        last_error=status.last_error,
        renewals=status.renewals or 0,
        proxy_end_time=end,
    )
