"""Who may act on a job: the owner for everything, ACL items for reading (§6.4): a node's
own items and its compound job's (:func:`acl_items`)."""

from __future__ import annotations

from typing import Literal

from wmproxy.domain import JobState, Principal, parse_job_id
from wmproxy.errors import AuthorizationError, JobNotFoundError
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job

Access = Literal["read", "write"]


def grants(items: list[str], principal: Principal) -> bool:
    """Does one of the ACL ``items`` name this caller, by DN or by FQAN?

    An FQAN item admits the caller's FQANs equal to it or below it: ``/atlas``
    admits ``/atlas/Role=production/Capability=NULL`` and ``/atlas/uk/...``.
    """
    for item in items:
        if item == principal.dn:
            return True
        if item.startswith("/") and "=" not in item.split("/")[1]:
            prefix = item.rstrip("/") + "/"
            if any(fqan == item or fqan.startswith(prefix) for fqan in principal.fqans):
                return True
    return False


def grant_keys(principal: Principal) -> set[str]:
    """What an ACL item that :func:`grants` this caller access is, without its trailing ``/``:
    the caller's DN, each FQAN, and each FQAN cut before one of its ``/`` (``/atlas/uk`` gives
    ``/atlas`` and ``""``, the item ``/``). listJobs looks items up by these keys in SQL
    (``ix_job_acl_trimmed_item``), then asks :func:`grants` of each item it found: the keys may
    find an item that does not grant (a DN-like one, ``/C=XX/``), never miss one that does.
    """
    keys = {principal.dn.rstrip("/")}
    for fqan in principal.fqans:
        keys.add(fqan.rstrip("/"))
        keys.update(fqan[:cut] for cut, char in enumerate(fqan) if char == "/")
    return keys


def job_for(uow: UnitOfWork, principal: Principal, job_id: str, *, access: Access = "write",
            for_update: bool = False) -> Job:
    """The job ``job_id`` if ``principal`` may act on it with ``access``.

    Raises:
        InvalidArgumentError: malformed job id.
        JobNotFoundError: no such job.
        AuthorizationError: "Authorization error: user not authorized".
    """
    parse_job_id(job_id)
    job = uow.jobs.get(job_id, for_update=for_update)
    if job is None:
        raise JobNotFoundError(job_id)
    if job.owner_dn == principal.dn:
        return job
    if access == "read" and grants(acl_items(uow, job), principal):
        return job
    raise AuthorizationError("Authorization error: user not authorized")


def live_job(uow: UnitOfWork, rt: Runtime, principal: Principal, job_id: str, *, access: Access = "write",
             for_update: bool = False) -> Job:
    """:func:`job_for`, refusing purged jobs as unknown (as the reference, whose area is gone)."""
    job = job_for(uow, principal, job_id, access=access, for_update=for_update)
    if job.state == JobState.CLEARED.value:
        raise JobNotFoundError(job_id, rt.settings.service.endpoint)
    return job


def acl_items(uow: UnitOfWork, job: Job) -> list[str]:
    """The ACL items that grant read access to ``job`` (what getACLItems lists after the owner):
    its own, oldest first, then for a node those of its compound job it does not hold itself.

    A node has its own ACL (addACLItems on a node grants access to that node only) and inherits
    its compound job's: an item added on the compound job grants access to all its nodes.
    """
    items = uow.jobs.acl_items(job.id)
    if job.parent_id is not None:
        items += [item for item in uow.jobs.acl_items(job.parent_id) if item not in items]
    return items
