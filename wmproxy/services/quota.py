"""getTotalQuota and getFreeQuota: per-user limits on sandbox bytes (``wmproxy-behaviour.md`` §4.4).

The reference asked the Linux disk quota of the mapped user's home; this service keeps
its own per-user limits on the bytes a user's job areas hold (``[jobs] quota_soft_limit``
and ``quota_hard_limit``). Uploads beyond the hard limit are refused (HTTP 413).
"""

from __future__ import annotations

from wmproxy.domain import JobState, Principal
from wmproxy.errors import QuotaExceededError
from wmproxy.services.runtime import Runtime


class QuotaManagementError(QuotaExceededError):
    """Quotas are not enabled on this service (GetQuotaManagementFault)."""


def _limits(rt: Runtime) -> tuple[int, int]:
    jobs = rt.settings.jobs
    if jobs.quota_hard_limit <= 0:
        raise QuotaManagementError("Quota management is not enabled on this service")
    return jobs.quota_soft_limit or jobs.quota_hard_limit, jobs.quota_hard_limit


def used_bytes(rt: Runtime, owner_dn: str) -> int:
    """Bytes held by the sandbox areas of ``owner_dn``'s jobs."""
    with rt.uow() as uow:
        job_ids = [job.id for job in uow.jobs.owned_by(owner_dn) if job.state != JobState.CLEARED.value]
    return sum(rt.storage.area_bytes(job_id) for job_id in job_ids)


def total_quota(rt: Runtime, principal: Principal) -> tuple[int, int]:
    """getTotalQuota: ``(soft, hard)`` limits in bytes.

    Raises:
        QuotaManagementError: quotas are off.
    """
    return _limits(rt)


def free_quota(rt: Runtime, principal: Principal) -> tuple[int, int]:
    """getFreeQuota: ``(soft − used, hard − used)`` in bytes (negative when over the soft limit)."""
    soft, hard = _limits(rt)
    used = used_bytes(rt, principal.dn)
    return soft - used, hard - used


def upload_room(rt: Runtime, owner_dn: str) -> int | None:
    """Bytes ``owner_dn`` may still upload under the hard quota; None when quotas are off."""
    if rt.settings.jobs.quota_hard_limit <= 0:
        return None
    return max(0, rt.settings.jobs.quota_hard_limit - used_bytes(rt, owner_dn))
