"""Expired credentials and unused renewal records (``wmproxy-behaviour.md`` §3.5; issue 4).

* :func:`abort_expired_credential`: once a credential has expired, jobs not yet running are
  Aborted and running jobs stopped (a ``cancel`` request) and Aborted, with the reason
  "the user proxy expired", whether or not the credential was registered for renewal. A job
  a worker holds runs on while its own proxy copy is valid (a shorter proxy delegated again
  under the same id ended first), and is aborted once that copy has ended too; a copy
  that is not a valid proxy of the owner (the job's account can rewrite it) counts as ended.
  A destroyed delegation is not renewed any more: its running jobs run on with their copies
  and are aborted the same way once those end; jobs not started wait for a proxy delegated
  again under the id (its renewal record stays while jobs use it, so renewal resumes then).
* :func:`abort_ended_copies`: the same for held jobs the valid stored proxy does not fit
  (another VOMS FQAN), once their own copies have ended.
* :func:`deregister_unused`: a record no non-final job uses any more is removed.
"""

from __future__ import annotations

import datetime as dt
import logging

from wmproxy.domain import FINAL_STATES, JobState
from wmproxy.services.compound import on_node_ended
from wmproxy.services.renewal.jobfiles import HELD_STATES, ProxyFit, job_proxy_end
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job

log = logging.getLogger(__name__)

#: The abort reason of jobs whose proxy expired (the original's Globus error 131).
PROXY_EXPIRED_REASON = "the user proxy expired"
#: The abort reason of running jobs whose copy ended after their delegation was destroyed.
DESTROYED_REASON = f"{PROXY_EXPIRED_REASON} (its delegation was destroyed: it was not renewed)"
#: States of jobs that still need their credential (registration → deregistration).
NON_FINAL_STATES = tuple(s.value for s in JobState if s not in FINAL_STATES)


def expired_credentials(uow: UnitOfWork, now: dt.datetime) -> list[tuple[str, str]]:
    """(DN, delegation id) of the delegations expired at ``now`` (aware UTC) that non-final
    jobs still use, and of the destroyed ones that jobs a worker holds still use."""
    return uow.renewals.expired_credentials(now, NON_FINAL_STATES, HELD_STATES)


def abort_expired_credential(
    uow: UnitOfWork, rt: Runtime, owner_dn: str, delegation_id: str, now: dt.datetime
) -> list[str]:
    """Abort the non-final jobs of an expired credential with "the user proxy expired", or
    the held jobs of a destroyed one (no delegation row) with :data:`DESTROYED_REASON`.

    Runs in the caller's transaction, which it locks the delegation in. Jobs a worker holds
    are aborted only once their own proxy copy has ended too (or is missing, unreadable or not
    a valid proxy of the owner, :func:`~wmproxy.services.renewal.jobfiles.job_proxy_end`): after a shorter proxy
    delegated again under the same id, the copy they run with may outlive the stored proxy
    by hours, and they run on until it ends (a later pass aborts them). They also get a
    ``cancel`` request (the worker stops the process and keeps the Aborted state). Nodes go
    first, so DAG dependents and parents follow their rules
    (:func:`wmproxy.services.compound.on_node_ended`). Nothing happens if the delegation
    was renewed or replaced meanwhile. Returns the ids of the aborted jobs.
    """
    delegation = uow.renewals.lock_delegation(owner_dn, delegation_id)
    if delegation is not None and delegation.not_after > now:
        return []
    # Destroyed (no row): only held jobs, once their copies end. A job not started yet waits
    # for a proxy delegated again under the id (the execution worker's claim), until it expires.
    states = NON_FINAL_STATES if delegation is not None else HELD_STATES
    reason = PROXY_EXPIRED_REASON if delegation is not None else DESTROYED_REASON
    aborted: list[str] = []
    for job in uow.renewals.jobs_of(owner_dn, delegation_id, states, jobs=uow.jobs):
        state = JobState(job.state)
        if state in FINAL_STATES or _follows_its_nodes(uow, job):
            continue  # ended as a consequence of an earlier node (DAG, parent)
        if state.value in HELD_STATES and _copy_valid(rt, job, now):
            continue
        _abort_for_expired_proxy(uow, job, now, reason)
        aborted.append(job.id)
    if aborted and delegation is not None:
        log.warning("proxy %s of %s expired at %s: %d job(s) aborted (%s)", delegation_id, owner_dn,
                    delegation.not_after.isoformat(), len(aborted), reason)
    elif aborted:
        log.warning("proxy %s of %s: %d running job(s) aborted, their own proxy copies ended and the delegation "
                    "was destroyed (%s)", delegation_id, owner_dn, len(aborted), reason)
    return aborted


def abort_ended_copies(
    uow: UnitOfWork, rt: Runtime, owner_dn: str, delegation_id: str, job_ids: list[str], now: dt.datetime
) -> list[str]:
    """Abort, as :func:`abort_expired_credential` does, the held jobs among ``job_ids`` that the
    still valid stored proxy of (DN, id) does not fit (their VOMS FQAN,
    :class:`~wmproxy.services.renewal.jobfiles.ProxyFit`: it is never written into them) and
    whose own proxy copy has ended at ``now`` (aware UTC), or is not a valid proxy of the
    owner (:func:`~wmproxy.services.renewal.jobfiles.job_proxy_end`).

    Nothing else stops them: the credential does not expire while renewals (which they may
    trigger themselves, their jobs use the record) keep it valid for the jobs it fits. The
    renewal worker passes the jobs :func:`~wmproxy.services.renewal.jobfiles.stale_job_proxies`
    found; each is checked again here, with the delegation locked (the one lock order), in
    the caller's transaction. A job the stored proxy fits by now (delegated again meanwhile)
    is left to the next pass, which writes it into its copy. Returns the ids of the aborted
    jobs.
    """
    delegation = uow.renewals.lock_delegation(owner_dn, delegation_id)
    if delegation is None or delegation.not_after <= now:
        return []  # gone, or expired: abort_expired_credential's
    fit = ProxyFit.stored(rt, delegation, now)
    aborted: list[str] = []
    for job_id in job_ids:
        job = uow.jobs.get(job_id)
        if (job is None or job.owner_dn != owner_dn or job.delegation_id != delegation_id
                or job.state not in HELD_STATES or _follows_its_nodes(uow, job)):
            continue
        if fit.reason(job) is None:
            continue  # fits by now: the next pass writes the stored proxy into its copy
        end = job_proxy_end(rt, job.id, owner_dn, now)
        if end is None or end > now:
            continue
        _abort_for_expired_proxy(uow, job, now)
        aborted.append(job.id)
    if aborted:
        log.warning("proxy %s of %s: %d running job(s) aborted, their own proxy copies ended (%s); the stored "
                    "proxy, valid until %s, has another VOMS FQAN than they were registered with", delegation_id,
                    owner_dn, len(aborted), PROXY_EXPIRED_REASON, delegation.not_after.isoformat())
    return aborted


def _follows_its_nodes(uow: UnitOfWork, job: Job) -> bool:
    """Whether ``job`` is a started compound job, whose state follows its nodes."""
    return job.parent_id is None and bool(uow.jobs.children(job.id)) and job.state != JobState.SUBMITTED.value


def _abort_for_expired_proxy(uow: UnitOfWork, job: Job, now: dt.datetime, reason: str = PROXY_EXPIRED_REASON) -> None:
    """Abort ``job`` with ``reason``: a job a worker holds also gets a
    ``cancel`` request (the worker stops the process and keeps the Aborted state); nodes go
    through :func:`~wmproxy.services.compound.on_node_ended`, so DAG dependents and parents
    follow their rules."""
    uow.jobs.get(job.id, for_update=True)  # its compound job first: the one lock order
    if job.state in HELD_STATES:
        uow.queue.enqueue(job.id, "cancel", now)
    uow.jobs.set_state(job, JobState.ABORTED.value, now, reason=reason)
    on_node_ended(uow, job, now)


def _copy_valid(rt: Runtime, job: Job, now: dt.datetime) -> bool:
    """Whether the job's own proxy copy is still a valid proxy of its owner at ``now``."""
    end = job_proxy_end(rt, job.id, job.owner_dn, now)
    return end is not None and end > now


def deregister_unused(uow: UnitOfWork, now: dt.datetime) -> int:
    """Remove the records of credentials that no non-final job uses any more; returns how many.

    Each record is locked before the check, so a registration running at the same time
    either has already committed its job (seen here) or waits and re-creates the record.
    Records a worker has claimed (lease after ``now``, aware UTC) wait for the next pass.
    """
    removed = 0
    for candidate in uow.renewals.candidates():
        if candidate.claimed_until is not None and candidate.claimed_until > now:
            continue  # a worker is renewing it; next pass
        record = uow.renewals.get(candidate.owner_dn, candidate.delegation_id, for_update=True)
        if record is None:
            continue
        if not uow.renewals.has_jobs(record.owner_dn, record.delegation_id, NON_FINAL_STATES):
            log.info("proxy %s of %s deregistered from renewal: no job uses it any more",
                     record.delegation_id, record.owner_dn)
            uow.renewals.delete(record)
            removed += 1
    return removed
