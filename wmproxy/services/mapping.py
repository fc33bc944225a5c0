"""Mapping grid identities to local accounts at registration: the LCMAPS analogue
(``wmproxy-behaviour.md`` §6.3; site configuration in ``docs/mapping.md``).

The policy files are read on every call, so a site's edits apply to the next request
without a restart, as LCMAPS rereads its grid-mapfile. A pool ``.wmpatl`` is the set of
existing Unix accounts named ``wmpatl<digits>`` (``pwd``, so local files, LDAP or SSSD
alike), handed out in name order; a pool account is leased in the database
(``uow.leases``), so an identity keeps it across jobs, restarts and service nodes, and
no account ever serves two identities: a pool account the policy also maps statically
is never leased, and a static mapping to an account leased from a pool is refused.

The execution worker does not trust the account stored with a job (``jobs.local_account``:
whoever writes the database could name root): before it runs a job it asks
:func:`unmappable_account` whether the current policy can map anyone to that account at all,
besides the identity switch's own refusal of root and the service's identities
(:func:`wmproxy.execution.identity.check_account`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import pwd
import re
from collections.abc import Collection

from wmproxy.config import MappingSettings
from wmproxy.domain import LocalAccount
from wmproxy.security.gridmap import (
    MappingDecision,
    MappingError,
    MappingNotAllowedError,
    decide,
    pool_members,
    read_policy,
)
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork

log = logging.getLogger(__name__)


def map_identity(
    uow: UnitOfWork, rt: Runtime, dn: str, fqans: tuple[str, ...], now: dt.datetime
) -> LocalAccount | None:
    """Map a caller to its local account, leasing a pool account when the policy says so.

    Runs inside the caller's unit of work (jobRegister/jobSubmit), so a refused or
    failed registration also gives back a lease it just took. The caller stores
    ``account.name`` in ``jobs.local_account``.

    Args:
        dn: the caller's DN (slash form).
        fqans: the caller's FQANs, primary first; only the first one selects a VOMS
            rule, every one is checked against the ban list.
        now: UTC time of the request (lease times).

    Returns:
        The account, or None when ``[mapping] mode = none``.

    Raises:
        MappingError: 1207 "LCMAPS failed to map user credential: ..." — banned DN or
            FQAN, no mapping, pool without accounts, pool exhausted, account missing,
            static account currently leased from a pool, unreadable policy file.
        MappingNotAllowedError: 1208 "Mapping not allowed: ..." — the account is root
            (uid 0), has primary group 0, or has the service's own uid or primary group.
    """
    settings = rt.settings.mapping
    if settings.mode == "none":
        return None
    policy = read_policy(settings.gridmap_file, settings.voms_rules_file, settings.ban_file)
    decision = decide(dn, fqans, policy)
    if decision.pool is not None:
        static = {entry.target for entry in (*policy.gridmap, *policy.voms_rules) if entry.pool is None}
        account = _resolve(_lease(uow, dn, decision.pool, decision, static, now), decision.pool, decision)
    elif decision.account is not None:
        lease = uow.leases.for_account(decision.account)
        if lease is not None:
            raise MappingError(f"account {decision.account} ({decision.source}) is leased from pool .{lease.pool}"
                               " to another identity")
        account = _resolve(decision.account, None, decision)
    else:  # decide() names a static account or a pool
        raise MappingError(f"no account and no pool ({decision.source})")
    log.info("mapped %s (%s) to %s by %s", dn, fqans[0] if fqans else "no FQAN", account.name, decision.source)
    return account


def unmappable_account(settings: MappingSettings, name: str) -> str | None:
    """Why no identity can be mapped to the account ``name`` under the current policy (None: one
    can): the mapping is off, ``name`` is neither an account the grid-mapfile or the VOMS rules
    name nor a member of a pool they name (``<pool><digits>``), or a policy file cannot be read.
    Who may be mapped to it (the ban list, the leases) is not looked at: the worker calls it for
    a job's stored account, to run no job as an account the site never hands out.

    The files are read again only when one of them changed (size, times, inode): the worker
    asks for every job it starts.
    """
    if settings.mode == "none":
        return "the mapping is off ([mapping] mode = none)"
    try:
        static, pools = _policy_accounts(settings)
    except MappingError as exc:
        return str(exc)
    if name in static or (pools is not None and pools.fullmatch(name)):
        return None
    return "no account or pool of the grid-mapfile or the VOMS rules is this account"


#: What :func:`_policy_accounts` found last, with the files' signatures it was read at.
_policy_read: tuple[tuple[object, ...], tuple[frozenset[str], re.Pattern[str] | None]] | None = None


def _policy_accounts(settings: MappingSettings) -> tuple[frozenset[str], re.Pattern[str] | None]:
    """(The static accounts of the grid-mapfile and the VOMS rules, a pattern matching the
    members of their pools or None without pools), read again when a file's signature (inode,
    size, times) changed since the last read.

    Raises:
        MappingError: a configured file cannot be read (:func:`read_policy`).
    """
    global _policy_read  # noqa: PLW0603 - a cache per process, as the files are one per site
    paths = (settings.gridmap_file, settings.voms_rules_file, settings.ban_file)
    signature = (paths, *(_signature(path) for path in paths))
    if _policy_read is None or _policy_read[0] != signature:
        policy = read_policy(*paths)
        entries = (*policy.gridmap, *policy.voms_rules)
        pools = sorted({entry.pool for entry in entries if entry.pool is not None})
        member = re.compile("|".join(f"{re.escape(pool)}[0-9]+" for pool in pools)) if pools else None
        _policy_read = (signature, (frozenset(entry.target for entry in entries if entry.pool is None), member))
    return _policy_read[1]


def _signature(path: str) -> tuple[int, ...] | None:
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None  # read_policy says why
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def release_idle_leases(uow: UnitOfWork, rt: Runtime, now: dt.datetime, keep: Collection[str] = ()) -> int:
    """Release the pool leases idle for ``[mapping] lease_idle_time`` seconds whose account
    has no live job (none in a non-final state, none changed within the idle time).

    The analogue of a gridmapdir cleanup (``lcg-expiregridmapdir``); the execution worker runs
    it every ``[purge] interval`` (``wmproxy.execution.purging``), an operator may too.

    Args:
        now: UTC time; leases last used before ``now - lease_idle_time`` are candidates.
        keep: accounts not released whatever their leases say (the worker's: accounts that
            still run processes on its host, which the next user of the account could reach).

    Returns:
        How many leases were released.
    """
    cutoff = now - dt.timedelta(seconds=rt.settings.mapping.lease_idle_time)
    released = uow.leases.release_idle(cutoff, keep)
    if released:
        log.info("released idle pool leases: %s", ", ".join(released))
    return len(released)


def _lease(uow: UnitOfWork, dn: str, pool: str, decision: MappingDecision, static: set[str], now: dt.datetime) -> str:
    """Lease an account of ``pool`` (the decision's); accounts the policy maps statically are not handed out."""
    members = [name for name in pool_members(pool, [entry.pw_name for entry in pwd.getpwall()])
               if name not in static]
    if not members:
        raise MappingError(f"pool .{pool} ({decision.source}) has no accounts")
    lease = uow.leases.acquire(pool, dn, decision.group, members, now)
    if lease is None:
        raise MappingError(f"pool .{pool} is exhausted: all {len(members)} accounts are leased")
    return lease.account


def _resolve(name: str, pool: str | None, decision: MappingDecision) -> LocalAccount:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise MappingError(f"account {name} ({decision.source}) does not exist") from None
    if entry.pw_uid == 0 or entry.pw_uid == os.getuid():
        raise MappingNotAllowedError(f"account {name} (uid {entry.pw_uid}) is privileged or the service's own")
    if entry.pw_gid == os.getgid():
        raise MappingNotAllowedError(f"account {name} (gid {entry.pw_gid}) is in the service's own group")
    if entry.pw_gid == 0:  # the execution worker would refuse it (wmproxy.execution.identity.check_account)
        raise MappingNotAllowedError(f"account {name} (gid 0) is in the root group")
    return LocalAccount(name=name, uid=entry.pw_uid, gid=entry.pw_gid, pool=pool)
