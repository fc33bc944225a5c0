"""jobListMatch: which CEs of the site's catalogue match a job (``wmproxy-behaviour.md`` §3.7).

The catalogue (``[jobs] ce_catalogue``) is a file of ClassAds, one per CE, each with
``GlueCEUniqueID`` and whatever Glue attributes the site publishes. A CE matches when the
job's ``Requirements`` hold with ``other`` = the CE and the CE's own ``Requirements`` (if
any) hold with ``other`` = the job, both evaluated by classad2. ``Rank`` (default 0) is
evaluated in the job with ``other`` = the CE; results are sorted by rank, highest first,
and the rank is sent as a whole number (the reference's ``atol``). No match is an empty
list, not a fault.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import classad2

from wmproxy.domain import Principal, utcnow
from wmproxy.errors import InvalidArgumentError, OperationNotAllowedError, SandboxError
from wmproxy.jdl import describe, parse_jdl
from wmproxy.services.delegation import resolve_delegation_id, usable_proxy
from wmproxy.services.runtime import Runtime

#: Seconds the delegated proxy must still be valid for a list-match.
LISTMATCH_MIN_PROXY_LIFETIME = 60


@lru_cache(maxsize=4)
def _catalogue(path: str, mtime: float) -> tuple[classad2.ClassAd, ...]:
    with open(path, encoding="utf-8") as handle:
        ads = tuple(classad2.parseAds(handle.read()))
    for ad in ads:
        if not isinstance(ad.get("GlueCEUniqueID"), str):
            raise SandboxError(f"CE catalogue {path}: an entry has no GlueCEUniqueID")
    return ads


def ce_catalogue(path: str) -> tuple[classad2.ClassAd, ...]:
    """The CE ClassAds of ``path`` (re-read when the file changes); () when unset."""
    if not path:
        return ()
    try:
        return _catalogue(path, os.stat(path).st_mtime)
    except OSError as exc:
        raise SandboxError(f"Error during matchmaking: CE catalogue unreadable: {exc.strerror}") from exc


def match(job: classad2.ClassAd, ces: tuple[classad2.ClassAd, ...]) -> list[tuple[str, int]]:
    """``(CE id, rank)`` of the CEs that match ``job``, best rank first."""
    rank_expr = job.lookup("Rank") if "Rank" in job else None
    found: list[tuple[str, float]] = []
    for ce in ces:
        if not _holds(job, ce) or ("Requirements" in ce and not _holds(ce, job)):
            continue
        rank = rank_expr.eval(scope=job, target=ce) if rank_expr is not None else 0
        value = float(rank) if isinstance(rank, (int, float)) and not isinstance(rank, bool) else 0.0
        found.append((ce["GlueCEUniqueID"], value if math.isfinite(value) else 0.0))
    found.sort(key=lambda item: (-item[1], item[0]))
    return [(ce_id, int(rank)) for ce_id, rank in found]


def _holds(ad: classad2.ClassAd, other: classad2.ClassAd) -> bool:
    """``ad.Requirements`` evaluated with ``other`` as the target is exactly true."""
    if "Requirements" not in ad:
        return True
    return ad.lookup("Requirements").eval(scope=ad, target=other) is True


def list_match(rt: Runtime, principal: Principal, jdl: str, delegation_id: str) -> list[tuple[str, int]]:
    """jobListMatch.

    Raises:
        InvalidArgumentError: empty delegation id ("Delegation id not valid"), bad JDL.
        DelegationNotFoundError, ProxyExpiredError: no usable delegated proxy.
        OperationNotAllowedError: not a normal job ("Operation permitted only for normal job").
    """
    if not delegation_id:
        raise InvalidArgumentError("Delegation id not valid")
    delegation_id = resolve_delegation_id(principal, delegation_id)
    with rt.uow() as uow:
        delegation = usable_proxy(uow, principal.dn, delegation_id, utcnow(), LISTMATCH_MIN_PROXY_LIFETIME)
        fqans = [f for f in delegation.fqans.split("\n") if f]
    ad = parse_jdl(jdl)
    try:
        description = describe(ad)
    except InvalidArgumentError as exc:
        raise OperationNotAllowedError("Operation permitted only for normal job") from exc
    if description.type != "job" or description.job_type == "parametric":
        raise OperationNotAllowedError("Operation permitted only for normal job")
    ad["CertificateSubject"] = principal.dn
    if fqans:
        ad["VOMS_FQAN"] = fqans[0]
        ad.setdefault("VirtualOrganisation", fqans[0].lstrip("/").split("/", 1)[0])
    return match(ad, ce_catalogue(rt.settings.jobs.ce_catalogue))
