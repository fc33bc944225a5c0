"""Which proxy copies of running jobs need the stored proxy (issue 4): the copy lives in
the job's work dir, ``<work root>/<job>/user.proxy`` (issue 8: 0600, owned by the job's
mapped account).

After a renewal the renewal worker rewrites the copy of every job a worker holds
(:func:`wmproxy.renewal.jobfiles.push_job_proxy`, the edge that writes as the account);
each pass also rewrites the copies that ended up older than the stored proxy
(:func:`stale_job_proxies`: a push lost to a crash, a job staged with the proxy read just
before a renewal, a re-delegation).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from wmproxy.domain import JobState
from wmproxy.security.renewed import proxy_end
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork

#: States of jobs a worker holds; their proxy copy gets the renewed proxy.
HELD_STATES = (JobState.READY.value, JobState.SCHEDULED.value, JobState.RUNNING.value)


def job_proxy_path(rt: Runtime, job_id: str) -> Path:
    """The job's proxy copy in its work dir (the job area's ``proxy_file``), what the job
    sees as ``X509_USER_PROXY``."""
    return rt.storage.job_area(job_id).proxy_file


def job_proxy_end(rt: Runtime, job_id: str) -> dt.datetime | None:
    """notAfter (aware UTC) of the job's proxy file (None: no file or unreadable)."""
    try:
        return proxy_end(job_proxy_path(rt, job_id).read_bytes())
    except OSError:
        return None


def stale_job_proxies(uow: UnitOfWork, rt: Runtime) -> dict[tuple[str, str], list[str]]:
    """Jobs a worker holds whose proxy file ends before the stored proxy of their credential
    (by more than a second): ``{(DN, delegation id): [job ids]}``."""
    stale: dict[tuple[str, str], list[str]] = {}
    for target in uow.renewals.held_jobs(HELD_STATES):
        end = job_proxy_end(rt, target.job_id)
        if end is not None and end < target.not_after - dt.timedelta(seconds=1):
            stale.setdefault((target.owner_dn, target.delegation_id), []).append(target.job_id)
    return stale


def stored_proxy(uow: UnitOfWork, rt: Runtime, owner_dn: str, delegation_id: str) -> bytes | None:
    """The stored (unsealed) proxy PEM of (DN, id), None when the delegation is gone."""
    row = uow.delegations.get(owner_dn, delegation_id)
    return None if row is None else rt.sealer.open(row.sealed_proxy)
