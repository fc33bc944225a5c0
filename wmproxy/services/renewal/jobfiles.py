"""The proxy copies of running jobs: ``<work root>/<job>/user.proxy`` gets each renewed
proxy (issue 4; the copy lives in the job's work dir since issue 8, 0600 and owned by
the job's mapped account, written by :func:`wmproxy.execution.identity.install_proxy`).

The renewal worker therefore needs what the execution worker needs to write there when
mapping is on: CAP_CHOWN and CAP_DAC_OVERRIDE (or to run as the same privileged user).

After a renewal the worker rewrites the proxy file of every job a worker holds
(:func:`push_job_proxy`); each pass also rewrites the files that ended up older than the
stored proxy (:func:`stale_job_proxies`: a push lost to a crash, a job staged with the
proxy read just before a renewal, a re-delegation).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from wmproxy.domain import JobState, to_filename
from wmproxy.errors import SandboxError
from wmproxy.execution.identity import PROXY_NAME, Account, IdentityError, install_proxy
from wmproxy.security.renewed import proxy_end
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork

#: States of jobs a worker holds; their proxy copy gets the renewed proxy.
HELD_STATES = (JobState.READY.value, JobState.SCHEDULED.value, JobState.RUNNING.value)


def job_proxy_path(rt: Runtime, job_id: str) -> Path:
    """The job's proxy copy in its work dir (``[execution] work_dir``), what the job sees
    as ``X509_USER_PROXY``."""
    return Path(rt.settings.execution.work_dir) / to_filename(job_id) / PROXY_NAME


def push_job_proxy(rt: Runtime, job_id: str, pem: bytes) -> bool:
    """Replace the job's proxy copy with ``pem`` (PEM, grid file layout), atomically, 0600
    and owned by the job's account, never following a link the job planted
    (:func:`install_proxy`). The account is the owner of the job's work dir, which the
    execution worker gave to the mapped account (``jobs.local_account``) and the job
    cannot give away.

    A job without a copy (not started yet, or already ended and cleaned up, even while
    this call runs) is left alone: it gets the stored proxy when it starts. Returns
    whether the copy was written.

    Raises:
        SandboxError: the copy could not be written (the old one is then intact).
    """
    path = job_proxy_path(rt, job_id)
    try:
        if not os.path.lexists(path):
            return False
        owner = os.lstat(path.parent)
        account = None if owner.st_uid == os.geteuid() else Account(owner.st_uid, owner.st_gid, str(owner.st_uid))
        install_proxy(path.parent, pem, account)
    except (OSError, IdentityError) as exc:
        if not os.path.lexists(path.parent):
            return False  # the job ended and its work dir was removed meanwhile
        raise SandboxError(f"Unable to write the proxy of job {job_id}: {exc}") from None
    return True


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
