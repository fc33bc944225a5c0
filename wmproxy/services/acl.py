"""Per-job access lists: getACLItems, addACLItems, removeACLItem (``wmproxy-behaviour.md`` §6.4).

The owner always has full access and cannot be removed. An ACL item is a DN or a VOMS
FQAN; a caller whose DN equals an item, or one of whose FQANs equals an item or lies
below it (``/atlas`` admits ``/atlas/Role=production/Capability=NULL``), gains READ
access to the job: its status, JDL, output file list, proxy info, perusal files and its
sandbox over HTTPS (GET). Changing the job (start, cancel, purge, uploads, the ACL
itself) stays with the owner, as the reference granted added entries read only.

addACLItems and removeACLItem lock the job's row (a node's after its compound job's, the one
lock order of :meth:`wmproxy.store.jobs.SqlJobStore.get`) before they read its items: concurrent
changes of one job's ACL take turns, so a second add of an item is refused as present (1209),
not a unique-constraint error, and a second remove finds no such item (1207).

Every node of a compound job has its own ACL, as each sub-job had its own ``.gacl``:
addACLItems on a node grants access to that node only. A node also inherits its compound
job's items: one added on the compound job grants access to the job and all its nodes. What
getACLItems lists is what grants access (:func:`wmproxy.services.access.acl_items`): for a
node, its own items, then the inherited ones; an inherited item is removed on the compound job.
"""

from __future__ import annotations

from wmproxy.domain import Principal
from wmproxy.errors import AuthorizationError, InvalidArgumentError, OperationNotAllowedError
from wmproxy.services.access import acl_items, live_job
from wmproxy.services.runtime import Runtime

#: Error code of the reference's GACL failures (WMS_GACL_ERROR).
GACL_ERROR = 1209


class AclError(AuthorizationError):
    code = GACL_ERROR


def get_acl_items(rt: Runtime, principal: Principal, job_id: str) -> list[str]:
    """getACLItems: the owner's DN first, then the items that grant read access (a node's own,
    then its compound job's)."""
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id, access="read")
        return [job.owner_dn, *acl_items(uow, job)]


def add_acl_items(rt: Runtime, principal: Principal, job_id: str, items: list[str]) -> None:
    """addACLItems: grant read access to each DN or FQAN in ``items``, all of them or none.

    A job (or node) holds at most ``[limits] max_acl_items`` items of its own (a node's
    inherited ones not counted), each at most ``max_acl_item_length`` characters: the reference
    set no bound, and a user's tens of thousands of items slowed every listJobs.

    Raises:
        InvalidArgumentError: an empty list, an empty item or one longer than
            ``max_acl_item_length``.
        AclError: an item is already present (1209, as the reference), on the job itself or,
            for a node, inherited from its compound job.
        OperationNotAllowedError: the job's own items would be more than ``max_acl_items``.
    """
    limits = rt.settings.limits
    cleaned = [item.strip() for item in items]
    if not cleaned or any(not item for item in cleaned):
        raise InvalidArgumentError("Invalid Argument: empty ACL item")
    if any(len(item) > limits.max_acl_item_length for item in cleaned):
        raise InvalidArgumentError(f"Invalid Argument: ACL item longer than {limits.max_acl_item_length} characters")
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id, for_update=True)  # a node: its compound job locked first
        own = uow.jobs.acl_items(job.id)
        present = {job.owner_dn, *acl_items(uow, job)}
        for item in cleaned:
            if item in present:
                raise AclError(f"unable to add the new credential entry {item}: the entry already exists")
            present.add(item)
        if len(own) + len(cleaned) > limits.max_acl_items:
            raise OperationNotAllowedError(
                f"The maximum number of ACL items is reached ({limits.max_acl_items} per job)")
        for item in cleaned:
            uow.jobs.add_acl_item(job.id, item)


def remove_acl_item(rt: Runtime, principal: Principal, job_id: str, item: str) -> None:
    """removeACLItem.

    Raises:
        OperationNotAllowedError: removing the owner (1226).
        AuthorizationError: the item is not in the job's own list (1207); a node's item
            inherited from its compound job is removed there.
    """
    with rt.uow() as uow:
        job = live_job(uow, rt, principal, job_id, for_update=True)
        if item == job.owner_dn:
            raise OperationNotAllowedError(
                "Removal of the item representing user that has registered the job is not allowed"
            )
        if not uow.jobs.remove_acl_item(job.id, item):
            if job.parent_id is not None and item in uow.jobs.acl_items(job.parent_id):
                raise AuthorizationError(f"Removal of the gacl item failed:\n{item} is granted by the compound job "
                                         f"{job.parent_id}: remove it there")
            raise AuthorizationError(f"Removal of the gacl item failed:\nno such item {item}")
