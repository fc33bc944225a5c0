"""Writing renewed proxies into the work dirs of running jobs (the renewal worker's edge).

The copy is 0600 and owned by the job's mapped account (issue 8), so the renewal worker
needs what the execution worker needs to write there when mapping is on: CAP_CHOWN and
CAP_DAC_OVERRIDE (or to run as the same privileged user). Which jobs get a copy is decided
in :mod:`wmproxy.services.renewal.jobfiles`.
"""

from __future__ import annotations

import os

from wmproxy.errors import SandboxError
from wmproxy.execution.identity import IdentityError, renew_proxy
from wmproxy.services.renewal import job_proxy_path
from wmproxy.services.runtime import Runtime


def push_job_proxy(rt: Runtime, job_id: str, pem: bytes) -> bool:
    """Replace the job's proxy copy with ``pem`` (PEM, grid file layout), atomically, 0600
    and owned by the job's account, never following a link the job planted
    (:func:`renew_proxy`). The account is the owner of the job's work dir, which the
    execution worker gave to the mapped account (``jobs.local_account``) and the job
    cannot give away.

    A job without a copy (not started yet, or already ended and cleaned up, even while
    this call runs) is left alone: it gets the stored proxy when it starts. So is a job whose
    work dir the execution worker recycled for another job meanwhile (reuse_work_dirs): the
    copy is written under the work dir's lock, only while the directory is still at the job's
    name. Returns whether the copy was written.

    Raises:
        SandboxError: the copy could not be written (the old one is then intact), or the work
            dir was locked by another process (the next pass tries again).
    """
    path = job_proxy_path(rt, job_id)
    try:
        return renew_proxy(path.parent, pem, path.name)
    except (OSError, IdentityError) as exc:
        if not os.path.lexists(path.parent):
            return False  # the job ended and its work dir was removed meanwhile
        raise SandboxError(f"Unable to write the proxy of job {job_id}: {exc}") from None
