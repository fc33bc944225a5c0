"""When a proxy is renewed (``anchors.md`` §2; issue 4).

A proxy is renewed when less than ``renewal.threshold`` seconds are left (default 35 min:
the original's 30 min Condor limit + 5 min clock skew), or earlier, when a quarter of
``renewal.lifetime`` is left (the original's planned renewal at three quarters of a
renewed proxy's lifetime: a 10 h proxy is renewed when 2.5 h remain). A failed attempt
(MyProxy down or refusing, or a proxy not extended) is tried again when
:func:`retry_delay` says, from the proxy's remaining lifetime: a few times with more than
the threshold left (at 2.5 h, about 64, 42 and 37 min), then on each cycle; never more than
once per cycle whatever the number of workers (the claim of
:func:`wmproxy.services.renewal.attempt.begin_renewal`).

The shortest of the X.509 and VOMS AC end times drives the schedule (anchors.md §2.2): a
credential delegated with VOMS attributes whose AC ends within the threshold (usually a 12 h AC
on a longer proxy) is renewed too, so that its attributes are refreshed
(:func:`refresh_due`, with ``[renewal] voms_refresh``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import MutableMapping

from wmproxy.config import RenewalSettings
from wmproxy.errors import ProxyError
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.voms import voms_attributes
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork
from wmproxy.store.renewals import RenewalCandidate

#: Earliest AC end of a credential's stored proxy, by (owner DN, delegation id, the delegation's
#: ``updated_at``): a worker keeps one across passes so each stored proxy is read once.
AcEnds = MutableMapping[tuple[str, str, dt.datetime | None], dt.datetime | None]

#: Fraction of a proxy's lifetime after which a planned renewal is due.
PLANNED_FRACTION = 0.75


def renewal_margin(threshold: float, lifetime: float, not_after: dt.datetime | None = None,
                   renewed_at: dt.datetime | None = None) -> float:
    """Seconds before its end at which a proxy is renewed.

    The ``threshold`` (seconds; renew as soon as possible), or earlier, a quarter of the
    ``lifetime`` (seconds) asked of MyProxy: the original's planned renewal, which lets a
    job gain three quarters of a new lifetime (a 10 h proxy is renewed when 2.5 h remain).
    When the stored proxy came from MyProxy (``renewed_at``, aware UTC) and MyProxy granted
    less than asked (``not_after`` earlier), the quarter is of what it granted, so a short
    grant is not renewed on every cycle. The proxy's own start is not used: delegated
    proxies are back-dated for clock skew.
    """
    granted = float(lifetime)
    if renewed_at is not None and not_after is not None:
        granted = min(granted, max((not_after - renewed_at).total_seconds(), 0.0))
    return max(float(threshold), granted * (1 - PLANNED_FRACTION))


def retry_delay(left: float, threshold: float, margin: float) -> float:
    """Seconds to wait after an attempt that did not renew (failed, or not extended) before
    the next one, for a proxy with ``left`` seconds to live; 0 (the next cycle) once ``left``
    is at most the ``threshold`` (seconds).

    The reference's rescheduling after a failed renewal (``anchors.md`` §2.2 "MyProxy
    outage": CESNET proxyrenewal ``src/commands.c``, ``set_renewal_times`` on the unchanged
    proxy, ``get_delta``): the renewal is planned when ``threshold + step`` seconds remain,
    where ``step`` starts as what the planned renewal keeps beyond the threshold (``margin -
    threshold``, ``margin`` of :func:`renewal_margin`, seconds) and shrinks to a quarter
    (``1 - PLANNED_FRACTION``) as long as that point has passed, or is now (the reference
    tests "passed" only, and retries at once on the boundary). With the defaults (35 min
    threshold, 10 h retrieved) a proxy failing at 2.5 h left is tried again at about 64 min,
    42 min and 37 min left, then on each cycle until it expires.
    """
    if left <= threshold:
        return 0.0
    step = max(margin - threshold, 0.0)
    while left <= threshold + step:
        step *= 1 - PLANNED_FRACTION
    return left - (threshold + step)


def renewal_due(not_after: dt.datetime, now: dt.datetime, margin: float) -> bool:
    """Whether to renew now (aware UTC times, ``margin`` in seconds); an expired proxy
    cannot be renewed (MyProxy refuses it)."""
    return now < not_after and not_after - now <= dt.timedelta(seconds=margin)


def ac_end(pem: bytes) -> dt.datetime | None:
    """The earliest end (aware UTC) of the VOMS ACs the proxy ``pem`` carries; None without
    any, or when they cannot be read. Not verified: it only brings a renewal forward."""
    try:
        ends = [ac.not_after for ac in voms_attributes(load_pem_chain(pem))]
    except ProxyError:
        return None
    return min(ends) if ends else None


def refresh_due(settings: RenewalSettings, not_after: dt.datetime, ac_not_after: dt.datetime | None,
                now: dt.datetime) -> bool:
    """Whether a credential delegated with VOMS attributes is due for their refresh at ``now``
    (aware UTC): its AC ends (``ac_not_after``, :func:`ac_end`) within ``threshold`` seconds or
    has ended, while its X.509 proxy (``not_after``) is still valid, and ``voms_refresh`` is on."""
    return (settings.voms_refresh and ac_not_after is not None and now < not_after
            and ac_not_after - now <= dt.timedelta(seconds=settings.threshold))


def due_renewals(uow: UnitOfWork, rt: Runtime, now: dt.datetime, ac_ends: AcEnds | None = None) -> list[int]:
    """Ids of the renewal records to try at ``now`` (aware UTC): proxy due, or its VOMS
    attributes (:func:`refresh_due`), not claimed by a worker, not tried this cycle. Read-only,
    in the caller's transaction; ``ac_ends`` keeps the AC ends read (:data:`AcEnds`).

    The proxy ending first comes first (then the older record): when a pass is long (many
    due proxies, slow or unreachable servers, each exchange up to ``renewal.timeout``), the
    proxies closest to expiry are tried before the others. Owners take turns: each owner's
    first record (the one ending first) before any owner's second, and so on, so that one
    user's many records on a server that never answers (red team: each holds a thread for the
    timeout, and short proxies come first) delay another user's renewal by one exchange per
    thread, not by all of them.
    """
    settings = rt.settings.renewal
    due: list[tuple[dt.datetime, int, str]] = []
    for c in uow.renewals.candidates():
        if c.not_after is None:
            continue  # delegation destroyed: nothing to renew
        if c.claimed_until is not None and c.claimed_until > now:
            continue
        if c.next_attempt_at is not None and c.next_attempt_at > now:
            continue
        margin = renewal_margin(settings.threshold, settings.lifetime, c.not_after, c.last_renewed_at)
        if renewal_due(c.not_after, now, margin) or (
                settings.voms_refresh and c.fqans
                and refresh_due(settings, c.not_after, _ac_end_of(uow, rt, c, ac_ends), now)):
            due.append((c.not_after, c.id, c.owner_dn))
    turns: dict[str, int] = {}
    ordered: list[tuple[int, dt.datetime, int]] = []
    for not_after, record_id, owner_dn in sorted(due):
        turn = turns[owner_dn] = turns.get(owner_dn, -1) + 1
        ordered.append((turn, not_after, record_id))
    return [record_id for _, _, record_id in sorted(ordered)]


def _ac_end_of(uow: UnitOfWork, rt: Runtime, c: RenewalCandidate, ac_ends: AcEnds | None) -> dt.datetime | None:
    key = (c.owner_dn, c.delegation_id, c.updated_at)
    if ac_ends is not None and key in ac_ends:
        return ac_ends[key]
    row = uow.delegations.get(c.owner_dn, c.delegation_id)
    end = ac_end(rt.sealer.open(row.sealed_proxy)) if row is not None else None
    if ac_ends is not None:
        if len(ac_ends) > 100_000:  # credentials come and go: forget the old ones at times
            ac_ends.clear()
        ac_ends[key] = end
    return end
