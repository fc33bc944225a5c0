"""Bounds on the matchmaking CPU time an execution worker spends, per cycle and per job owner
(``docs/brokering.md``, "Matchmaking time: per cycle and per owner").

Each claimed job's ``Requirements`` and ``Rank`` are evaluated against the CEs under a budget of
their own (:class:`~wmproxy.jdl.glite_functions.CallBudget`, 3 s of thread CPU time). Without more,
a claim batch of 20 such jobs held the worker's cycle about 80 s (no job of anyone started or
ended meanwhile), and one owner with many such jobs, each matched again every
``[brokering] match_retry_period``, kept the worker matching their jobs alone. So:

* :class:`MatchCycle`: one claim batch (a worker cycle's claims) spends at most
  ``[brokering] cycle_match_cpu`` seconds matching; once spent (checked between jobs: one job's
  budget past it at most) the batch ends and the requests it has not reached stay queued,
  unchanged, for the next cycle or another worker.
* :class:`OwnerShares`: the worker remembers, in memory, the matchmaking CPU each owner's jobs
  spent over the last ``match_retry_period``; while other owners' start requests are due, the
  worker's claims pass over those of an owner past ``[brokering] owner_match_cpu`` (their jobs
  stay Waiting, not evaluated, their requests as they were) until enough of that time is older
  than the window; when no other owner's request is due, theirs are claimed (work-conserving).

gLite's WMS met the same problem with its task queue and the matchmaker's own threads; here the
worker matches in its loop, so the bounds are on that loop. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections import deque

from wmproxy.config import BrokeringSettings


class OwnerShares:
    """The matchmaking CPU time each owner's jobs spent on one execution worker over the last
    ``window`` seconds, kept in memory (a worker that restarts forgets it; each worker counts its
    own, so with N workers an owner may take N shares).

    Args:
        allowance: CPU seconds an owner may spend per window (``[brokering] owner_match_cpu``)
            before other owners' jobs go first; 0 for no bound.
        window: seconds (``[brokering] match_retry_period``), positive.
    """

    def __init__(self, allowance: float, window: float) -> None:
        self.allowance = allowance
        self.window = dt.timedelta(seconds=window)
        self._allowance_ns = _nanoseconds(allowance)
        #: each owner's charges within the window, oldest first: (time, nanoseconds of CPU)
        self._spent: dict[str, deque[tuple[dt.datetime, int]]] = {}
        #: each owner's total of :attr:`_spent`, kept with it: a claim asks every job's owner
        #: whether they are within their share, and a busy worker keeps one charge per claim
        #: batch of the window (about 6,000 at 20 batches a second over 300 s), which a sum at
        #: each question read twice a job. Integers: the running total never drifts from the sum.
        self._totals: dict[str, int] = {}
        self._sweep_at: dt.datetime | None = None  # when the owners without recent charges are forgotten next

    @classmethod
    def of(cls, settings: BrokeringSettings) -> OwnerShares:
        """The shares ``[brokering]`` sets: ``owner_match_cpu`` per ``match_retry_period``."""
        return cls(settings.owner_match_cpu, settings.match_retry_period)

    def held(self, now: dt.datetime) -> tuple[str, ...]:
        """The owners (DNs) whose jobs spent their allowance within the window ending at ``now``
        (UTC, :meth:`free_at` not None): a claim passes their requests over while another
        owner's request is due (``wmproxy.services.execution._claim_rows``)."""
        return tuple(owner for owner in list(self._spent) if self.free_at(owner, now) is not None)

    def charge(self, owner: str, now: dt.datetime, seconds: float) -> None:
        """Count ``seconds`` of CPU spent matching a job of ``owner`` (DN) at ``now`` (UTC).

        The charges of one time (a claim batch's jobs share it) are kept as one, and once per
        window the owners with none left in it are forgotten: the memory kept is one entry per
        owner and batch within the last window."""
        if self.allowance <= 0 or seconds <= 0:
            return
        spent = _nanoseconds(seconds)
        charges = self._spent.setdefault(owner, deque())
        if charges and charges[-1][0] == now:
            charges[-1] = (now, charges[-1][1] + spent)
        else:
            charges.append((now, spent))
        self._totals[owner] = self._totals.get(owner, 0) + spent
        if self._sweep_at is None or now >= self._sweep_at:
            for name in list(self._spent):
                self._recent(name, now)
            self._sweep_at = now + self.window

    def spent(self, owner: str, now: dt.datetime) -> float:
        """CPU seconds ``owner``'s jobs spent within the window ending at ``now`` (UTC)."""
        self._recent(owner, now)
        return self._totals.get(owner, 0) / 1e9

    def free_at(self, owner: str, now: dt.datetime) -> dt.datetime | None:
        """None when ``owner``'s jobs may be matched at ``now`` (UTC): they spent less than the
        allowance within the window. Else the time (UTC, after ``now``) from which they spent less
        again, the oldest of that time having left the window."""
        recent = self._recent(owner, now)
        left = self._totals.get(owner, 0)
        if self.allowance <= 0 or left < self._allowance_ns:
            return None
        for at, spent in recent:
            left -= spent
            if left < self._allowance_ns:
                return at + self.window
        return None  # not reached: left is 0 after the last, below a positive allowance

    def _recent(self, owner: str, now: dt.datetime) -> deque[tuple[dt.datetime, int]]:
        """``owner``'s charges within the window ending at ``now``, the older ones forgotten
        (and taken off their total)."""
        charges = self._spent.get(owner)
        if charges is None:
            return deque()
        while charges and charges[0][0] <= now - self.window:
            self._totals[owner] -= charges.popleft()[1]
        if not charges:
            del self._spent[owner]
            del self._totals[owner]
        return charges


def _nanoseconds(seconds: float) -> int:
    """``seconds`` of CPU as whole nanoseconds (what the shares count in)."""
    return round(seconds * 1e9)


class MatchCycle:
    """The matchmaking of one claim batch: the CPU time it spent, against ``[brokering]
    cycle_match_cpu``, each job's charged to its owner's :class:`OwnerShares` too.

    Args:
        limit: CPU seconds the batch may spend matching (0: no bound).
        shares: the worker's shares (kept across its cycles).
    """

    def __init__(self, limit: float, shares: OwnerShares) -> None:
        self.limit = limit
        self.shares = shares
        self.spent = 0.0
        self.matched = 0  # jobs whose Requirements and Rank were evaluated
        #: False once the batch found no due request but those of owners past their share: it
        #: matches theirs (the bound orders the owners, it never leaves the worker idle)
        self.others_waiting = True

    @classmethod
    def of(cls, settings: BrokeringSettings, shares: OwnerShares | None) -> MatchCycle:
        """A batch's cycle under ``[brokering]``'s bound; new shares (this batch only) when None."""
        return cls(settings.cycle_match_cpu, shares if shares is not None else OwnerShares.of(settings))

    def spent_out(self) -> bool:
        """Whether the batch spent its matchmaking time: no further job is matched in it."""
        return 0 < self.limit <= self.spent

    def charge(self, owner: str, now: dt.datetime, seconds: float) -> None:
        """Count one job's matchmaking: ``seconds`` of CPU, for ``owner`` (DN), at ``now`` (UTC)."""
        self.spent += seconds
        self.matched += 1
        self.shares.charge(owner, now, seconds)
