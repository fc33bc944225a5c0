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
import os
from pathlib import Path

from wmproxy.domain import JOB_PROXY_NAME, JobState
from wmproxy.errors import SandboxError
from wmproxy.sandbox.confined import open_confined
from wmproxy.security.renewed import proxy_end
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork

#: States of jobs a worker holds; their proxy copy gets the renewed proxy.
HELD_STATES = (JobState.READY.value, JobState.SCHEDULED.value, JobState.RUNNING.value)


def job_proxy_path(rt: Runtime, job_id: str) -> Path:
    """The job's proxy copy in its work dir (the job area's ``proxy_file``), what the job
    sees as ``X509_USER_PROXY``."""
    return rt.storage.job_area(job_id).proxy_file


#: Bytes of a job's proxy copy read to learn its end (a proxy file is a few kB).
MAX_PROXY_BYTES = 64 * 1024


def job_proxy_end(rt: Runtime, job_id: str) -> dt.datetime | None:
    """The end (aware UTC) of the job's proxy file (None: no file, unreadable, not a regular
    file of its own, or over :data:`MAX_PROXY_BYTES`).

    The file is in the job's work dir, which the job's account owns: it is read without
    trusting it (:func:`~wmproxy.sandbox.confined.open_confined`: no link followed, a FIFO
    not waited for, a hard link refused) and at most :data:`MAX_PROXY_BYTES` of it. Read by
    path, a FIFO there blocked the renewal worker for good inside its transaction, and a
    link made it read any file (``/dev/zero``: all of it).
    """
    try:
        fd = open_confined(rt.storage.job_area(job_id).work_dir, JOB_PROXY_NAME)
    except SandboxError:
        return None
    try:
        with os.fdopen(fd, "rb") as copy:
            data = copy.read(MAX_PROXY_BYTES + 1)
    except OSError:
        return None
    return None if len(data) > MAX_PROXY_BYTES else proxy_end(data)


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
