"""Matchmaking: which CEs of the site match a job (``wmproxy-behaviour.md`` §3.7), for
jobListMatch and for the broker that places started jobs (:mod:`wmproxy.services.brokering`).

The site's CEs are the catalogue (``[jobs] ce_catalogue``), a file of ClassAds, one per CE,
each with ``GlueCEUniqueID``, the Glue attributes the site publishes and the backend that
runs its jobs: ``WMProxyBackend = "local"`` (the default) or ``"slurm"`` with
``SlurmPartition = "<partition>"``. Without a catalogue the site has one built-in local CE
(:func:`builtin_ce`). The dynamic state recorded for a CE (``ce_states``, e.g. refreshed
from Slurm) is laid over its catalogue ad while it is fresher than
``[brokering] ce_state_max_age``.

A CE matches when the job's ``Requirements`` hold with ``other`` = the CE and the CE's own
``Requirements`` (if any) hold with ``other`` = the job as the CE sees it (:func:`ce_view`: its
VO and FQAN are the proxy's only, where the job's own expressions see the JDL's VO when the
proxy has no VOMS attributes), both evaluated by classad2 (so
``member``, ``anyCompare``, ``RegExp`` and the other ClassAd functions
:data:`wmproxy.jdl.expressions.FUNCTIONS` allows work; gLite's ``anyMatch``/``allMatch``, which
classad2 does not have, are evaluated where the job's ``Requirements`` and ``Rank`` write them:
:mod:`wmproxy.jdl.glite_functions`; :func:`no_match_cause` says why when a call leaves no CE
matching). Evaluating a job's ``Requirements`` and ``Rank`` against the CEs, calls or not, is under a
budget per job and match pass (:class:`~wmproxy.jdl.glite_functions.CallBudget`: thread CPU time,
and the calls' list elements): once it runs out, the CEs left are not tried.
``Rank`` (default 0) is evaluated in the job with ``other`` = the CE; matches are sorted
by rank, highest first. jobListMatch sends the rank as a whole number (the reference's
``atol``), clamped to the range of an ``xsd:long`` (:func:`whole_rank`). No match is an
empty list, not a fault, unless the job's matchmaking budget ran out (the list would be cut
short) or its ``anyMatch``/``allMatch`` calls are an error against every CE: then jobListMatch
answers a fault that says so (:func:`no_match_cause`).

An evaluation classad2 cannot carry out (it raises, e.g. on references nested deeper than it
evaluates) is the job's fault when it is the job's ``Requirements`` or ``Rank``: a
:class:`~wmproxy.errors.JdlExpressionError` for that job alone (jobListMatch answers it as
an InvalidArgumentFault, the execution worker aborts the job). When it is a CE's own
``Requirements``, that CE does not match (logged: the catalogue is the site's).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import classad2

from wmproxy.config import Settings
from wmproxy.domain import JobState, Principal, fqan_vo, utcnow
from wmproxy.errors import InvalidArgumentError, JdlExpressionError, OperationNotAllowedError, SandboxError
from wmproxy.jdl import check_expressions, check_virtual_organisation, describe, parse_jdl
from wmproxy.jdl.attributes import delete, is_number
from wmproxy.jdl.glite_functions import GliteCalls
from wmproxy.services.delegation import resolve_delegation_id, usable_proxy
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork

log = logging.getLogger(__name__)

#: Seconds the delegated proxy must still be valid for a list-match.
LISTMATCH_MIN_PROXY_LIFETIME = 60
#: CE attribute naming the backend that runs the CE's jobs, and the backends known.
BACKEND_ATTRIBUTE = "WMProxyBackend"
BACKENDS = ("local", "slurm")
#: CE attribute naming the Slurm partition of a Slurm CE.
PARTITION_ATTRIBUTE = "SlurmPartition"
#: The built-in CE's ``GlueCEPolicyMaxWallClockTime``: the Glue convention for "no limit".
GLUE_UNLIMITED = 999_999_999
#: The range of jobListMatch's ranks (the WSDL's ``size`` is an ``xsd:long``).
RANK_MIN = -(2**63)
RANK_MAX = 2**63 - 1
#: Comments of a catalogue, as the new ClassAd syntax has them.
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
#: Blanks and comments (of either syntax) before a catalogue's first ad.
_LEADING_COMMENTS = re.compile(r"(?:\s+|//[^\n]*|/\*.*?\*/|#[^\n]*)*", re.DOTALL)
#: An attribute name (of an old-syntax line).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
#: States of a job that occupies a CPU of its CE.
_OCCUPYING = (JobState.READY.value, JobState.SCHEDULED.value, JobState.RUNNING.value)


@dataclass(frozen=True)
class Match:
    """A CE that matches a job.

    Attributes:
        ce_id: its ``GlueCEUniqueID``.
        rank: the job's ``Rank`` evaluated against it (0.0 when absent or not a number).
        ce: its ClassAd (with the dynamic state laid over it).
    """

    ce_id: str
    rank: float
    ce: classad2.ClassAd


@lru_cache(maxsize=4)
def _catalogue(path: str, mtime: float) -> tuple[classad2.ClassAd, ...]:
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SandboxError(f"CE catalogue {path}: not valid ClassAds: not UTF-8 text ({exc.reason} "
                           f"at byte {exc.start})") from exc
    ads = parse_catalogue(text, path)
    for ad in ads:
        ce_id = ad.get("GlueCEUniqueID")
        if not isinstance(ce_id, str) or not ce_id:
            raise SandboxError(f"CE catalogue {path}: an entry has no GlueCEUniqueID")
        backend = ad.get(BACKEND_ATTRIBUTE, "local")
        if backend not in BACKENDS:
            raise SandboxError(f"CE catalogue {path}: CE {ce_id}: {BACKEND_ATTRIBUTE} must be one of "
                               f"{', '.join(BACKENDS)}, not {backend!r}")
        partition = ad.get(PARTITION_ATTRIBUTE)
        if backend == "slurm" and (not isinstance(partition, str) or not partition):
            raise SandboxError(f"CE catalogue {path}: Slurm CE {ce_id} names no {PARTITION_ATTRIBUTE}")
    return ads


def parse_catalogue(text: str, path: str) -> tuple[classad2.ClassAd, ...]:
    """The ClassAds of a catalogue's ``text``, every character of it, in the syntax its first
    character that is neither blank nor in a comment says (as classad2 detects it):

    * ``[`` (or none: a file of comments and blanks, no CE): the new ClassAd syntax,
      ``[ Name = value; ... ]`` per CE, ``//`` and ``/* */`` comments (:func:`_parse_new`);
    * anything else: the old syntax, as ``condor_status -long`` writes it: one ``Name = value``
      per line, the ads separated by a blank line, ``#`` comment lines (:func:`_parse_old`).

    classad2 raises ``ValueError`` on some syntax errors (a ``#`` comment in the new syntax) and
    silently stops at others (an ad cut short, text that is not an ad; in the old syntax, a line
    it cannot read and every line after it in the ad): all are refused here, with the line of
    the first ad (or old-syntax line) it could not read.

    Raises:
        SandboxError: "CE catalogue <path>: not valid ClassAds: ...".
    """
    head = _LEADING_COMMENTS.match(text)
    first = text[head.end() if head else 0:][:1]
    if first in ("[", ""):
        return _parse_new(text, path)
    return _parse_old(text, path)


def _parse_new(text: str, path: str) -> tuple[classad2.ClassAd, ...]:
    stream = io.StringIO(text)
    ads: list[classad2.ClassAd] = []
    read = 0  # characters of the ads parsed so far
    try:
        for ad in classad2.parseAds(stream, classad2.ParserType.New):
            ads.append(ad)
            read = stream.tell()
    except ValueError as exc:
        raise SandboxError(f"CE catalogue {path}: not valid ClassAds: {_line_after(text, read)}: {exc}") from exc
    if _COMMENTS.sub("", text[stream.tell():]).strip():
        raise SandboxError(f"CE catalogue {path}: not valid ClassAds: {_line_after(text, stream.tell())}: "
                           "not a complete ClassAd")
    return tuple(ads)


def _parse_old(text: str, path: str) -> tuple[classad2.ClassAd, ...]:
    """The old-syntax ads of ``text``, read by classad2's old parser, one blank-line separated
    block at a time, after each ``Name = value`` line of the block has been read on its own (the
    old parser drops a line it cannot read and the rest of its ad without a word)."""
    ads: list[classad2.ClassAd] = []
    block: list[str] = []
    for number, line in enumerate([*text.splitlines(), ""], 1):
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if stripped:
            name, equals, value = stripped.partition("=")
            if not equals or not _NAME.fullmatch(name.strip()) or not _is_expression(value):
                raise SandboxError(f"CE catalogue {path}: not valid ClassAds: from line {number}: "
                                   "not a complete 'Name = value' line (old ClassAd syntax)")
            block.append(line)
        elif block:
            found = list(classad2.parseAds("\n".join(block) + "\n", classad2.ParserType.Old))
            if len(found) != 1:  # not seen: every line of the block has been read
                raise SandboxError(f"CE catalogue {path}: not valid ClassAds: the ad ending at line {number - 1} "
                                   "cannot be read (old ClassAd syntax)")
            ads.extend(found)
            block = []
    return tuple(ads)


def _is_expression(value: str) -> bool:
    """Whether ``value`` is one whole ClassAd expression (classad2 refuses anything after it)."""
    try:
        classad2.ExprTree(value)
    except Exception:  # noqa: BLE001 - classad2 raises ClassAdException (or ValueError) on bad text
        return False
    return True


def _line_after(text: str, offset: int) -> str:
    """"from line <n>", n being the line of the first character after ``offset`` that is not blank
    (where the ad classad2 could not read begins)."""
    rest = text[offset:]
    start = offset + len(rest) - len(rest.lstrip())
    return f"from line {text.count(chr(10), 0, start) + 1}"


def ce_catalogue(path: str) -> tuple[classad2.ClassAd, ...]:
    """The CE ClassAds of ``path`` (re-read when the file changes); () when unset.

    The ads are shared: never modify them (:func:`site_ces` copies those it changes).

    Raises:
        SandboxError: the file cannot be read, is not ClassAds (:func:`parse_catalogue`), or a
            CE has no ``GlueCEUniqueID``, an unknown ``WMProxyBackend`` or (Slurm) no
            ``SlurmPartition``.
    """
    if not path:
        return ()
    try:
        return _catalogue(path, os.stat(path).st_mtime)
    except OSError as exc:
        raise SandboxError(f"Error during matchmaking: CE catalogue {path} unreadable: {exc.strerror}") from exc


class MatchingFailures:
    """The execution worker's log of a matching that fails at every cycle (the CE catalogue
    unreadable or broken: the started jobs stay queued): the failure is logged (ERROR) when it
    starts and when its text changes, again every :attr:`REMIND_EVERY` seconds while it lasts,
    never once per cycle (the worker cycles every ``[execution] poll_interval``); its end is
    logged (INFO). ``/readyz`` and ``wmproxy-admin check`` report the catalogue's problem too.
    """

    #: Seconds between two ERROR lines of the same failure.
    REMIND_EVERY = 600.0

    def __init__(self, logger: logging.Logger) -> None:
        self.log = logger
        self.last: str | None = None
        self.logged_at = 0.0

    def failed(self, exc: Exception, now: float) -> None:
        """Matching failed with ``exc`` at ``now`` (monotonic seconds)."""
        text = str(exc)
        if text != self.last or now - self.logged_at >= self.REMIND_EVERY:
            again = " (still)" if text == self.last else ""
            self.log.error("cannot match the next job%s: %s; the started jobs stay queued (logged again when "
                           "the error changes, or in %.0f s)", again, text, self.REMIND_EVERY)
            self.last, self.logged_at = text, now

    def passed(self) -> None:
        """Matching ran (whether or not a job matched)."""
        if self.last is not None:
            self.log.info("matching works again (the error logged before is gone)")
            self.last = None


def builtin_ce_id(settings: Settings) -> str:
    """``GlueCEUniqueID`` of the built-in local CE: ``<service host>:<port>/wmproxy-local``."""
    return f"{settings.service.host}:{settings.service.port}/wmproxy-local"


def builtin_ce(settings: Settings, running: int, waiting: int) -> classad2.ClassAd:
    """The one CE of a site without catalogue: the execution workers' own hosts.

    It is in production, has ``[execution] max_running`` CPUs of which ``running`` are
    taken, ``waiting`` jobs queued, no wall-clock limit (``GLUE_UNLIMITED`` minutes), the
    service host's memory, and the local backend: what a default site publishes, so the
    usual ``other.GlueCEStateStatus == "Production"`` matches and ``Requirements = false``
    never does.
    """
    cpus = settings.execution.max_running
    free = max(cpus - running, 0)
    ad = classad2.ClassAd()
    ad["GlueCEUniqueID"] = builtin_ce_id(settings)
    ad["GlueCEInfoHostName"] = settings.service.host
    ad["GlueCEInfoLRMSType"] = "local"
    ad["GlueCEStateStatus"] = "Production"
    ad["GlueCEInfoTotalCPUs"] = cpus
    ad["GlueCEStateFreeCPUs"] = free
    ad["GlueCEStateRunningJobs"] = running
    ad["GlueCEStateWaitingJobs"] = waiting
    ad["GlueCEStateTotalJobs"] = running + waiting
    ad["GlueCEStateEstimatedResponseTime"] = 0 if free else 60 * (waiting // cpus + 1)
    ad["GlueCEPolicyMaxWallClockTime"] = GLUE_UNLIMITED
    ad["GlueHostMainMemoryRAMSize"] = _host_memory_mb()
    ad[BACKEND_ATTRIBUTE] = "local"
    return ad


def _host_memory_mb() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    except (OSError, ValueError):
        return 0


def site_ces(rt: Runtime, uow: UnitOfWork, now: dt.datetime | None = None) -> tuple[classad2.ClassAd, ...]:
    """The CEs jobs are matched against: the catalogue (or the built-in CE, with its
    running and waiting counts from the jobs table) with the fresh dynamic states laid over.

    Raises:
        SandboxError: see :func:`ce_catalogue`.
    """
    return SiteView(rt, uow, now or utcnow()).ces()


class SiteView:
    """The site's CEs as :func:`site_ces` gives them, read once for a claim batch (one
    transaction claiming several jobs) instead of once per claimed job.

    The catalogue and the fresh dynamic states are read when the view is made: they change
    at most at a catalogue edit or a state refresh (``[brokering] ce_state_max_age``, the
    Slurm refresh interval), so a batch, which lasts well under a second, sees what a
    per-job read would have seen except for a change committed by another process during
    the batch. The built-in CE's running and waiting counts are read once too and then
    kept up to date by the batch itself (:meth:`claimed`, :meth:`ended_waiting`): its own
    claims are the only changes of its transaction, so Rank and Requirements see the counts
    a per-job query would have returned, except for jobs other processes queue, claim or
    end during the batch (on PostgreSQL a per-job query would see those; the bound is the
    batch's duration).

    Args:
        rt: settings (the catalogue path, ``ce_state_max_age``, the built-in CE).
        uow: the batch's unit of work (two queries at most, here).
        now: the batch's time (UTC), for the states' freshness.

    Raises:
        SandboxError: see :func:`ce_catalogue`.
    """

    def __init__(self, rt: Runtime, uow: UnitOfWork, now: dt.datetime) -> None:
        self.settings = rt.settings
        self.catalogue = ce_catalogue(self.settings.jobs.ce_catalogue)
        self.builtin_id = None if self.catalogue else builtin_ce_id(self.settings)
        self.running = self.waiting = 0
        if self.builtin_id is not None:
            self.running, self.waiting = uow.jobs.count_at_ce_and_waiting(
                _OCCUPYING, self.builtin_id, (JobState.WAITING.value,))
        self.states = uow.ce_states.fresh(now - dt.timedelta(seconds=self.settings.brokering.ce_state_max_age))
        self._ces: tuple[classad2.ClassAd, ...] | None = None

    def ces(self) -> tuple[classad2.ClassAd, ...]:
        """The CEs to match against now (the same ads until a count changes)."""
        if self._ces is None:
            ces = self.catalogue or (builtin_ce(self.settings, self.running, self.waiting),)
            self._ces = tuple(with_state(ce, self.states[ce["GlueCEUniqueID"]])
                              if ce["GlueCEUniqueID"] in self.states else ce for ce in ces)
        return self._ces

    def claimed(self, ce_id: str) -> None:
        """A Waiting job of the batch became Ready at ``ce_id``."""
        if self.builtin_id is not None:
            self.waiting = max(self.waiting - 1, 0)
            self.running += ce_id == self.builtin_id
            self._ces = None

    def ended_waiting(self) -> None:
        """A Waiting job of the batch ended (its request expired)."""
        if self.builtin_id is not None:
            self.waiting = max(self.waiting - 1, 0)
            self._ces = None


def with_state(ce: classad2.ClassAd, attributes: Mapping[str, int | float | str]) -> classad2.ClassAd:
    """A copy of ``ce`` with ``attributes`` set (the catalogue's ad is left alone)."""
    copy = classad2.ClassAd(str(ce))
    for name, value in attributes.items():
        copy[name] = value
    return copy


def matching_ad(ad: classad2.ClassAd, dn: str, fqan: str | None) -> classad2.ClassAd:
    """Give the job ad what the job's own ``Requirements`` and ``Rank`` see besides the JDL, as
    the reference's jobListMatch and WM do: ``CertificateSubject``, and with a VOMS proxy its
    primary FQAN as ``VOMS_FQAN`` and its VO as ``VirtualOrganisation`` (registration and
    :func:`list_match` refuse a JDL VO other than the proxy's). Without VOMS attributes the
    JDL's ``VirtualOrganisation`` stays: ``member(VirtualOrganisation, other.SupportedVOs)``
    matches as it did. The CEs' ``Requirements`` see :func:`ce_view` of this ad instead.
    Changes and returns ``ad``."""
    ad["CertificateSubject"] = dn
    if fqan:
        ad["VOMS_FQAN"] = fqan
        vo = fqan_vo(fqan)
        if vo:
            ad["VirtualOrganisation"] = vo
    return ad


def ce_view(job: classad2.ClassAd, fqan: str | None) -> classad2.ClassAd:
    """The job as the CEs' own ``Requirements`` see it: a copy of :func:`matching_ad`'s ad whose
    ``VOMS_FQAN`` and ``VirtualOrganisation`` are the proxy's only, neither when it has no VOMS
    attributes (the JDL's claim proves nothing: a CE reserved to a VO does not take the job).
    Made once per job, for all the CEs it is matched against."""
    view = classad2.ClassAd(str(job))
    for name, value in (("VOMS_FQAN", fqan), ("VirtualOrganisation", fqan_vo(fqan) if fqan else None)):
        delete(view, name)
        if value:
            view[name] = value
    return view


def matches(job: classad2.ClassAd, ces: Sequence[classad2.ClassAd],
            for_ces: classad2.ClassAd | None = None, calls: GliteCalls | None = None) -> list[Match]:
    """The CEs that match ``job``, best rank first (ties by CE id).

    The job's ``Requirements`` and ``Rank`` are looked up once and evaluated per CE with
    ``job`` as their scope (with ``anyMatch``/``allMatch`` calls: ``calls``' rewritten
    expressions in its scope, the calls evaluated against each CE first). Each evaluation, the
    calls' included, is in ``calls``' budget (thread CPU time, for every job): once it has run out
    the CEs left are not tried (logged; :func:`no_match_cause` says so). A CE's own
    ``Requirements`` are evaluated with ``other`` = ``for_ces`` (:func:`ce_view`;
    ``job`` itself when None, for a job without proxy attributes).

    Args:
        calls: the job's calls for this match pass (a new :class:`GliteCalls` of ``job`` when
            None); pass the same to :func:`no_match_cause` to say why nothing matched.

    Raises:
        JdlExpressionError: classad2 fails to evaluate the job's ``Requirements`` or
            ``Rank`` (or an argument of a call in them) against a CE (whatever the other CEs
            give). A CE whose own ``Requirements`` fail to evaluate against the job does not
            match it.
    """
    calls = GliteCalls(job) if calls is None else calls
    seen = job if for_ces is None else for_ces
    requirements = calls.expression("Requirements")
    rank_expr = calls.expression("Rank")
    found: list[Match] = []
    cut: int | None = None  # the CE (counted from 1) the budget ran out at
    for index, ce in enumerate(ces):
        if not calls.budget.within():  # the CEs from here on are not tried
            cut = index
            break
        if requirements is not None:
            value = _job_value(requirements, "Requirements", calls, ce)
            calls.observe(value)
            if value is not True:
                continue
        with calls.budget.running():  # the CE's own Requirements read the job's attributes, which the JDL writes
            accepted = ce_accepts(ce, seen)
        if not accepted:
            continue
        found.append(Match(ce["GlueCEUniqueID"], _rank(rank_expr, calls, ce), ce))
    if cut is None and calls.budget.exhausted:
        cut = len(ces)
    if cut is not None:
        log.warning("job %s: its Requirements and Rank ran out of their evaluation budget (%s) at CE %d of %d: the "
                    "CEs after it were not tried (and its anyMatch()/allMatch() calls from there on were errors), so "
                    "the %d CEs matched and their ranks may be cut short",
                    calls.job_id or "(jobListMatch)", calls.budget.exhausted, cut, len(ces), len(found))
    found.sort(key=lambda m: (-m.rank, m.ce_id))
    return found


def no_match_cause(calls: GliteCalls) -> str | None:
    """Why no CE matched a job whose ``anyMatch``/``allMatch`` calls are the reason, from what
    :func:`matches` recorded in ``calls`` (nothing is evaluated again: a second pass would get
    no budget of its own); None when they are not. For the reason of a job left waiting and
    jobListMatch's fault (an empty list would not say why).

    * the budget ran out: "the job's matchmaking was cut short: ...";
    * else, when the job's ``Requirements`` evaluate to error against every CE (one at least):
      the first reason a call was an error, or the attributes calling them where the service
      does not evaluate them (:attr:`GliteCalls.elsewhere`), or the Rank the Requirements read
      (:attr:`GliteCalls.reading_rank`: its calls are an error there).
    """
    if calls.budget.exhausted:
        return (f"the job's matchmaking was cut short: the evaluation budget of its Requirements and Rank for a "
                f"match ran out ({calls.budget.exhausted}; the CEs after that point are not tried, and an "
                "anyMatch()/allMatch() call is then an error)")
    if not calls.tried or calls.errors < calls.tried:
        return None
    if calls.reasons:
        return f"the job's Requirements evaluate to error against every CE: {calls.reasons[0]}"
    if calls.elsewhere:
        named = ", ".join(calls.elsewhere)
        return (f"the job's Requirements evaluate to error against every CE: the JDL calls anyMatch() or "
                f"allMatch() in {named}, where the service does not evaluate them (a call is an error there); "
                "write the calls in Requirements or Rank")
    if calls.reading_rank:
        return ("the job's Requirements evaluate to error against every CE: they read Rank, whose anyMatch() or "
                "allMatch() calls the service evaluates for the Rank only (a call reached through a reference is an "
                "error); write the calls in Requirements")
    return None


def _job_value(expr: classad2.ExprTree, attribute: str, calls: GliteCalls, ce: classad2.ClassAd) -> object:
    """The job's ``attribute`` (``expr``) evaluated in ``calls.scope`` with ``other`` = ``ce``,
    after its ``anyMatch``/``allMatch`` calls (:meth:`GliteCalls.bind`).

    Raises:
        JdlExpressionError: classad2 raises (ClassAdException "failed to evaluate
            expression", or anything else): the job's expression, so the job's fault.
    """
    try:
        with calls.budget.running():  # the whole evaluation, in the pass's budget
            calls.bind(attribute, ce)
            return expr.eval(scope=calls.scope, target=ce)
    except Exception as exc:  # whatever classad2 raises fails this job, never its caller
        raise JdlExpressionError(f"the job's {attribute} cannot be evaluated against CE "
                                 f"{ce['GlueCEUniqueID']}: {exc}") from exc


def ce_accepts(ce: classad2.ClassAd, job: classad2.ClassAd) -> bool:
    """Whether the CE's own ``Requirements`` hold with ``other`` = the job (True for a CE
    without them); False (logged) when classad2 cannot evaluate them."""
    if "Requirements" not in ce:
        return True
    try:
        return ce.lookup("Requirements").eval(scope=ce, target=job) is True
    except Exception as exc:  # noqa: BLE001 - the site's expression: the CE does not match, no job fails
        log.warning("CE %s: its Requirements cannot be evaluated against a job (%s): it does not match",
                    ce["GlueCEUniqueID"], exc)
        return False


def _rank(rank_expr: classad2.ExprTree | None, calls: GliteCalls, ce: classad2.ClassAd) -> float:
    if rank_expr is None:
        return 0.0
    rank = _job_value(rank_expr, "Rank", calls, ce)
    value = float(rank) if is_number(rank) else 0.0  # undefined/error are ints to Python: they count 0
    return value if math.isfinite(value) else 0.0


def match(job: classad2.ClassAd, ces: Sequence[classad2.ClassAd], for_ces: classad2.ClassAd | None = None,
          calls: GliteCalls | None = None) -> list[tuple[str, int]]:
    """``(CE id, rank as a whole number)`` of the CEs that match ``job`` (:func:`matches`), best
    rank first."""
    return [(m.ce_id, whole_rank(m.rank)) for m in matches(job, ces, for_ces, calls)]


def whole_rank(rank: float) -> int:
    """``rank`` as jobListMatch sends it: truncated to a whole number and clamped to
    :data:`RANK_MIN` .. :data:`RANK_MAX`, the range of the WSDL's ``size`` (``xsd:long``;
    the reference's ``atol`` gives a C ``long``). NaN (which :func:`matches` never gives)
    counts 0."""
    if math.isnan(rank):
        return 0
    if rank >= RANK_MAX:
        return RANK_MAX
    if rank <= RANK_MIN:
        return RANK_MIN
    return int(rank)


def list_match(rt: Runtime, principal: Principal, jdl: str, delegation_id: str) -> list[tuple[str, int]]:
    """jobListMatch: the site's CEs (with their dynamic state) that match ``jdl``.

    Raises:
        InvalidArgumentError: empty delegation id ("Delegation id not valid"), bad JDL.
        DelegationNotFoundError, ProxyExpiredError: no usable delegated proxy.
        OperationNotAllowedError: not a normal job ("Operation permitted only for normal job").
        InvalidJdlAttributeError: the JDL's ``VirtualOrganisation`` is not the delegated proxy's
            VO (1220, as jobRegister: :func:`wmproxy.jdl.check_virtual_organisation`).
        SandboxError: the CE catalogue cannot be read.
        JdlExpressionError: the JDL's expressions could cost far more to evaluate than it is
            long (:func:`wmproxy.jdl.check_expressions`, nothing evaluated), the job's
            ``Requirements`` or ``Rank`` cannot be evaluated (:func:`matches`), the budget of the
            job's ``anyMatch``/``allMatch`` calls ran out (whether or not CEs matched: the list
            and its ranks would be cut short, silently), or no CE matches because the calls make
            the Requirements an error against every CE (:func:`no_match_cause`: an empty list
            would not say why).
    """
    if not delegation_id:
        raise InvalidArgumentError("Delegation id not valid")
    delegation_id = resolve_delegation_id(principal, delegation_id)
    with rt.uow() as uow:
        delegation = usable_proxy(uow, principal.dn, delegation_id, utcnow(), LISTMATCH_MIN_PROXY_LIFETIME)
        fqans = [f for f in delegation.fqans.split("\n") if f]
        ces = site_ces(rt, uow)
    ad = parse_jdl(jdl)
    check_expressions(ad)
    try:
        description = describe(ad)
    except InvalidArgumentError as exc:
        raise OperationNotAllowedError("Operation permitted only for normal job") from exc
    if description.type != "job" or description.job_type == "parametric":
        raise OperationNotAllowedError("Operation permitted only for normal job")
    fqan = fqans[0] if fqans else None
    check_virtual_organisation(description.virtual_organisation, fqan_vo(fqan) if fqan else None)
    job = matching_ad(ad, principal.dn, fqan)
    calls = GliteCalls(job)
    found = match(job, ces, ce_view(job, fqan), calls)
    # a list cut by the budget is no answer (a CE may be missing, a rank wrong): said, as for no CE
    cause = None if found and not calls.budget.exhausted else no_match_cause(calls)
    if cause is not None:
        raise JdlExpressionError(cause)
    return found
