"""The broker: which CE a started job goes to, and how long it may wait for one
(``docs/brokering.md``; the reference's Workload Manager and BrokerHelper).

* ``SubmitTo`` (``glite-wms-job-submit --resource``) names the CE: it is taken without
  matchmaking when it is one of the site's CEs; any other name matches nothing.
* Otherwise the job is matched as jobListMatch does (:func:`matchmaking.matches`) and
  the best rank wins; CEs of equal best rank are chosen between at random, as the
  reference's ``maxRankSelector``. With ``FuzzyRank = true`` the choice is stochastic
  (the reference's ``stochastic_selector``, :func:`fuzzy_choice`).
* A job nothing matches waits ``[brokering] match_retry_period`` and is matched again,
  until its ``ExpiryTime`` (JDL, seconds since the epoch) or, without one,
  ``expiry_period`` seconds after its matching began: then it is Aborted
  "request expired" (:func:`deadline`).
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import classad2

from wmproxy.config import Settings
from wmproxy.domain import utcnow
from wmproxy.errors import InvalidArgumentError
from wmproxy.jdl.attributes import EXPIRY_TIME_END, EXPIRY_TIME_MIN, is_number
from wmproxy.jdl.glite_functions import GliteCalls
from wmproxy.services.matchmaking import (
    BACKEND_ATTRIBUTE,
    GLUE_UNLIMITED,
    PARTITION_ATTRIBUTE,
    Match,
    ce_accepts,
    ce_catalogue,
    matches,
)
from wmproxy.services.runtime import Runtime

#: Why a job waits: the reference BrokerHelper's NoCompatibleCEs message.
NO_MATCH = "BrokerHelper: no compatible resources"
#: Why a job that waited past its expiry is Aborted (the reference WM's wording).
REQUEST_EXPIRED = "request expired"
#: CE attribute: MB of memory a job of the CE asks the batch system for.
MEMORY_ATTRIBUTE = "WMProxyMemoryMB"
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Destination:
    """Where a matched job runs.

    Attributes:
        ce_id: the CE's ``GlueCEUniqueID``.
        backend: the backend kind that runs it, ``"local"`` or ``"slurm"``.
        queue: the Slurm partition (``SlurmPartition``), None for a local CE.
        wall_time: seconds the batch system may let the job run: the CE's
            ``GlueCEPolicyMaxWallClockTime`` (minutes) × 60, else for a Slurm CE
            ``[slurm] default_wall_time``; None for no limit.
        memory_mb: MB of memory to ask for: the CE's ``WMProxyMemoryMB``, else for a
            Slurm CE ``[slurm] default_memory_mb``; None for the batch system's default.
    """

    ce_id: str
    backend: str = "local"
    queue: str | None = None
    wall_time: int | None = None
    memory_mb: int | None = None


def destination_of(ce: classad2.ClassAd, settings: Settings) -> Destination:
    """The :class:`Destination` a CE ad describes (a catalogue entry, so already checked)."""
    backend = ce.get(BACKEND_ATTRIBUTE, "local")
    slurm = backend == "slurm"
    minutes = _positive(ce.get("GlueCEPolicyMaxWallClockTime"))
    wall_time = minutes * 60 if minutes is not None and minutes < GLUE_UNLIMITED else None
    if wall_time is None and slurm:
        wall_time = settings.slurm.default_wall_time or None
    memory = _positive(ce.get(MEMORY_ATTRIBUTE))
    if memory is None and slurm:
        memory = settings.slurm.default_memory_mb or None
    partition = ce.get(PARTITION_ATTRIBUTE)
    return Destination(ce_id=ce["GlueCEUniqueID"], backend=str(backend),
                       queue=partition if slurm and isinstance(partition, str) else None,
                       wall_time=wall_time, memory_mb=memory)


def _positive(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    return int(value)


def choose_ce(job: classad2.ClassAd, ces: Sequence[classad2.ClassAd], rng: random.Random, *,
              fuzzy_factor: float = 1.0, for_ces: classad2.ClassAd | None = None,
              calls: GliteCalls | None = None) -> Match | None:
    """The CE ``job`` goes to, None when none is possible.

    ``SubmitTo`` names the CE directly: the job's ``Requirements`` and ``Rank`` are not
    evaluated, but the CE's own ``Requirements`` must accept the job
    (:func:`matchmaking.ce_accepts`); an unknown CE, or one that refuses the job, is no
    match. Otherwise the matching CEs compete: the best rank wins (ties at random), or with
    ``FuzzyRank = true`` :func:`fuzzy_choice` picks one.

    Args:
        job: the job ad, as :func:`matchmaking.matching_ad` completes it.
        ces: the site's CEs (:func:`matchmaking.site_ces`).
        rng: the random source for ties and ``FuzzyRank``.
        fuzzy_factor: ``[brokering] fuzzy_factor``.
        for_ces: the job as the CEs' own ``Requirements`` see it (:func:`matchmaking.ce_view`;
            ``job`` when None).
        calls: the job's ``anyMatch``/``allMatch`` calls for this claim
            (:func:`matchmaking.matches`; for :func:`matchmaking.no_match_cause` after it).

    Raises:
        JdlExpressionError: the job's ``Requirements`` or ``Rank`` cannot be evaluated
            (:func:`matchmaking.matches`).
    """
    submit_to = job.get("SubmitTo")
    if isinstance(submit_to, str):
        seen = job if for_ces is None else for_ces
        named = [ce for ce in ces if ce["GlueCEUniqueID"] == submit_to and ce_accepts(ce, seen)]
        return Match(submit_to, 0.0, named[0]) if named else None
    found = matches(job, ces, for_ces, calls)
    if not found:
        return None
    if job.get("FuzzyRank") is True:
        return fuzzy_choice(found, rng, fuzzy_factor)
    best = [m for m in found if m.rank == found[0].rank]
    return best[0] if len(best) == 1 else rng.choice(best)


def fuzzy_choice(found: Sequence[Match], rng: random.Random, factor: float = 1.0) -> Match:
    """``FuzzyRank``: a matching CE drawn with weight ``atan(factor × (rank − mean)) + π/2``.

    The reference's ``stochastic_selector``: every matching CE has a chance, a better
    rank a bigger one; the weights flatten as ``factor`` goes to 0 (uniform choice) and
    sharpen as it grows (ranks below the mean then almost never win).

    The mean and the differences are taken on the ranks scaled by the largest magnitude
    (ranks near the float limit, ``1e308``, would overflow a plain sum to infinity);
    ``atan`` then sees the difference scaled back (±infinity where that overflows, which
    ``atan`` takes as ±π/2, the weights the difference tends to). When the weights are not
    usable (a NaN, from a factor that is not finite) the best ranks are chosen between
    uniformly.

    Args:
        found: the matching CEs (not empty).
        rng: the random source.
        factor: the fuzzy factor (``[brokering] fuzzy_factor``, 1.0).
    """
    scale = max(abs(m.rank) for m in found) or 1.0
    mean = statistics.fmean(m.rank / scale for m in found)
    weights = [math.atan(factor * (m.rank / scale - mean) * scale) + math.pi / 2 for m in found]
    if all(math.isfinite(w) for w in weights) and sum(weights) > 0:
        return rng.choices(list(found), weights=weights)[0]
    top = max(m.rank for m in found)
    return rng.choice([m for m in found if m.rank == top])


def deadline(job: classad2.ClassAd, since: dt.datetime, settings: Settings) -> dt.datetime:
    """When a job still waiting for a match expires: its ``ExpiryTime`` (seconds since the
    epoch, used as given) or else ``since`` (when its matching began) plus
    ``[brokering] expiry_period``.

    Registration refuses an ``ExpiryTime`` outside the range of
    :func:`wmproxy.jdl.attributes.expiry_time`; one stored before that check is clamped
    into it (a negative one counts as the epoch: expired; one past the range as its end,
    2106), never an error: an error here would end every claim batch the job's request
    is in (a datetime holds only years 1 to 9999). A value that is no number (classad2's
    ``undefined`` included) counts as none."""
    expiry = job.get("ExpiryTime")
    if is_number(expiry) and math.isfinite(expiry):
        clamped = min(max(expiry, EXPIRY_TIME_MIN), EXPIRY_TIME_END - 1)
        return dt.datetime.fromtimestamp(clamped, dt.UTC)
    return since + dt.timedelta(seconds=settings.brokering.expiry_period)


def record_ce_state(rt: Runtime, ce_id: str, attributes: Mapping[str, int | float | str],
                    now: dt.datetime | None = None) -> None:
    """Record the dynamic state of CE ``ce_id`` (e.g. ``GlueCEStateFreeCPUs`` from Slurm);
    matching lays it over the CE's catalogue ad for ``[brokering] ce_state_max_age`` seconds.

    Args:
        ce_id: the CE's ``GlueCEUniqueID``.
        attributes: Glue attribute name → int, float or string (replaces the previous state).
        now: when the state was read (UTC), default now.

    Raises:
        InvalidArgumentError: an empty CE id, a name that is not a ClassAd attribute
            name, or a value that is not an int, a finite float or a string.
    """
    if not ce_id:
        raise InvalidArgumentError("a CE state needs a CE id")
    for name, value in attributes.items():
        if not _ATTRIBUTE_NAME.match(name):
            raise InvalidArgumentError(f"CE state of {ce_id}: {name!r} is not an attribute name")
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (isinstance(value, str) or (numeric and math.isfinite(value))):
            raise InvalidArgumentError(f"CE state of {ce_id}: {name} = {value!r} is not an int, float or string")
    with rt.uow() as uow:
        uow.ce_states.put(ce_id, attributes, now or utcnow())


def batch_queues(settings: Settings, backend: str) -> dict[str, str]:
    """The catalogue's CEs of ``backend`` (e.g. ``"slurm"``): CE id → its queue
    (``SlurmPartition``). The built-in CE is local and never listed.

    Raises:
        SandboxError: the catalogue cannot be read (:func:`matchmaking.ce_catalogue`).
    """
    return {ce["GlueCEUniqueID"]: str(ce[PARTITION_ATTRIBUTE])
            for ce in ce_catalogue(settings.jobs.ce_catalogue)
            if ce.get(BACKEND_ATTRIBUTE, "local") == backend and PARTITION_ATTRIBUTE in ce}


def refresh_ce_states(rt: Runtime, backend: str,
                      read: Callable[[list[str]], Mapping[str, Mapping[str, int | float | str]]]) -> int:
    """Record the dynamic state of every CE of ``backend`` from ``read``.

    Args:
        backend: the backend kind (``"slurm"``).
        read: queue names → queue name → Glue attributes (the Slurm backend's
            ``partition_states``); a queue it leaves out keeps its previous state, which
            matching ignores once older than ``[brokering] ce_state_max_age``.

    Returns:
        How many CEs were refreshed.
    """
    queues = batch_queues(rt.settings, backend)
    if not queues:
        return 0
    states = read(sorted(set(queues.values())))
    now = utcnow()
    refreshed = 0
    for ce_id, queue in queues.items():
        if queue in states:
            record_ce_state(rt, ce_id, states[queue], now)
            refreshed += 1
    return refreshed
