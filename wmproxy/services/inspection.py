"""Live inspection of running jobs (JobMon; issue 13, ``docs/inspection.md``).

A user asks for a command to be run inside a running job (:func:`ask`) and waits for the
outcome (:func:`result`, bounded long-poll). The job's agent
(``wmproxy/execution/inspection_agent.py``, started by the job wrapper) learns of requests
through an outgoing HTTPS long-poll (:func:`agent_next`), authenticated with the job's own
proxy (the owner's DN) plus a per-job secret (:func:`agent_token`, handed to the wrapper
in its spec), runs the command as the job's account in its work dir with a time limit
and an output cap, and posts the outcome (:func:`agent_post`).

Rules: only the job's owner may inspect it. An ACL entry the owner granted
(:func:`wmproxy.services.access.job_for`, read access) grants read access to the job's data
(status, JDL, output, perusal), never a command in the job: the job's work dir holds the
owner's delegated proxy (``user.proxy``, key included), which ``cat`` would print (§6.4: ACL
entries grant read access only). ``[inspection] mode``
turns it off, limits it to ``allowed_commands`` or allows any command. A job that has
ended answers at once with its final state, and stores nothing (the request id it gets names
the job and the command: :func:`ended_request_id`). Every other request is logged and recorded
as a job event ("inspection: <command>"), within ``max_requests_per_job`` and
``max_requests_per_user`` requests kept (:class:`~wmproxy.errors.InspectionLimitError` past
them); a request is deleted ``retention`` seconds after it was asked (the purger, or an ask
that finds a cap reached: :func:`retention_cutoff`). A request never waits for ever: it fails when the agent
does not take it within ``pickup_timeout`` seconds, when the command has not answered
``time_limit + ANSWER_MARGIN`` seconds after it was taken, or when the job stops running.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import secrets
import shlex
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from wmproxy.config import Settings
from wmproxy.domain import InspectionResult, JobState, Principal
from wmproxy.errors import (
    AuthorizationError,
    InspectionLimitError,
    InvalidArgumentError,
    LimitedProxyError,
    OperationNotAllowedError,
)
from wmproxy.services.access import job_for
from wmproxy.services.authz import is_limited
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork
from wmproxy.store.inspections import (
    DONE,
    ENDED,
    FAILED,
    FINISHED,
    PENDING,
    RUNNING,
    InspectionRequest,
    SqlInspectionStore,
)
from wmproxy.store.schema import Job
from wmproxy.text import log_text

log = logging.getLogger(__name__)

#: URL path below which the job agents talk to the service (``wmproxy.inspection_http``).
AGENT_PATH = "/wmproxy-inspection/agent"
#: Variables of the job wrapper's spec (``base_environment``) that start the agent; the
#: wrapper keeps them out of the payload's environment.
ENV_URL, ENV_TOKEN, ENV_CA_DIR = "WMPROXY_INSPECTION_URL", "WMPROXY_INSPECTION_TOKEN", "WMPROXY_INSPECTION_CA_DIR"
#: The wrapper's delay before it starts the agent (``[inspection] agent_delay``, seconds).
ENV_DELAY = "WMPROXY_INSPECTION_DELAY"
#: Longest wait, in seconds, of one :func:`result` or :func:`agent_next` call.
MAX_WAIT = 30.0
#: Seconds after ``time_limit`` a taken request may still be answered (transfer, clocks).
ANSWER_MARGIN = 30.0
#: Seconds between two looks at the database while waiting.
POLL_INTERVAL = 0.25
MAX_ARGS, MAX_ARGV_BYTES = 256, 4096
#: Characters of the command kept in a job event's reason.
EVENT_COMMAND_CHARS = 200
#: Largest time limit or wait, in seconds, a caller may give (a year): a larger integer is
#: refused as invalid (a 400-digit one overflowed ``float``: GenericFault 1201 and a traceback).
MAX_SECONDS = 366 * 86400


def seconds_argument(value: float | None, what: str) -> float:
    """``value`` (an integer or number from the caller; None = 0) as seconds.

    Raises:
        InvalidArgumentError: negative, not a number, or more than :data:`MAX_SECONDS`.
    """
    if value is None:
        return 0.0
    if value < 0:
        raise InvalidArgumentError(f"Invalid Argument: negative {what}")
    if not value <= MAX_SECONDS:  # compared as given, no float() of a huge integer first; NaN too
        raise InvalidArgumentError(f"Invalid Argument: {what} out of range (0 to {MAX_SECONDS} seconds)")
    return float(value)


@dataclass(frozen=True)
class AgentTask:
    """A request handed to a job's agent: run ``argv`` for ``time_limit`` seconds at most,
    keep ``output_cap`` bytes."""

    request_id: str
    argv: list[str]
    time_limit: float
    output_cap: int


@dataclass(frozen=True)
class AgentOutcome:
    """What an agent posts: the exit status (None if the command could not start), the
    run's UTC times, the output and the flags (``error``: why it could not run)."""

    exit_code: int | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
    output: bytes
    timed_out: bool = False
    truncated: bool = False
    error: str | None = None


class AgentStopError(OperationNotAllowedError):
    """The job's agent must stop (HTTP 410, which every agent understands as "stop")."""


class JobNotRunningError(AgentStopError):
    """The job's agent asked for work while the job is not running (the agent stops)."""


class InspectionOffError(AgentStopError):
    """The job's agent asked for work while ``[inspection] mode`` is ``off`` (the agent stops)."""


#: Fraction of a process's request threads that job agents' long-polls may hold.
AGENT_WAIT_SHARE = 0.5
#: Fraction of the slots held waits may take (threads - 1) that one user's (DN's) waits may hold.
USER_WAIT_SHARE = 0.5


class HeldWaits:
    """The request threads of one service process that held inspection waits may take.

    A held wait (a user's :func:`result`, an agent's :func:`agent_next`) keeps its request
    thread for up to :data:`MAX_WAIT` seconds. Together they may hold all threads but one, so
    a SOAP call, an upload or another inspection call always finds a thread; agents' long-polls
    at most :data:`AGENT_WAIT_SHARE` of them (at least one, when any may be held), and one
    user's waits (by DN) at most :data:`USER_WAIT_SHARE` of them (at least one), so one user
    waiting on many requests at once leaves slots to the others. A wait that finds no free slot
    is not held: it looks once and answers (the current state; no work, with ``Retry-After``,
    for an agent).

    Args:
        threads: the process's request threads (``[service] threads``).
    """

    def __init__(self, threads: int) -> None:
        self.total = max(0, threads - 1)
        self.agents = min(self.total, max(1, int(threads * AGENT_WAIT_SHARE)))
        self.per_user = min(self.total, max(1, int(self.total * USER_WAIT_SHARE)))
        self._lock = threading.Lock()
        self.held = 0
        self.held_by_agents = 0
        self._held_by_user: dict[str, int] = {}

    @contextmanager
    def hold(self, *, agent: bool, dn: str = "") -> Iterator[bool]:
        """Whether this wait may hold its thread (True while inside, the slot then taken).

        Args:
            agent: a job agent's long-poll (else a user's wait for a result).
            dn: the user's DN (a user's wait): counted against :attr:`per_user`.
        """
        user = not agent
        with self._lock:
            taken = (self.held < self.total and (not agent or self.held_by_agents < self.agents)
                     and (agent or self._held_by_user.get(dn, 0) < self.per_user))
            if taken:
                self.held += 1
                self.held_by_agents += agent
                if user:
                    self._held_by_user[dn] = self._held_by_user.get(dn, 0) + 1
        try:
            yield taken
        finally:
            if taken:
                with self._lock:
                    self.held -= 1
                    self.held_by_agents -= agent
                    if user:
                        left = self._held_by_user.pop(dn) - 1
                        if left:
                            self._held_by_user[dn] = left


#: Per runtime, by its id: (a weak reference to it, its HeldWaits). The reference tells a
#: runtime from a later one that got the id of a runtime gone (tests make many).
_held_waits: dict[int, tuple[weakref.ref[Runtime], HeldWaits]] = {}
_held_waits_lock = threading.Lock()


def held_waits(rt: Runtime) -> HeldWaits:
    """The :class:`HeldWaits` of this process's runtime (one per runtime)."""
    with _held_waits_lock:
        entry = _held_waits.get(id(rt))
        if entry is None or entry[0]() is not rt:
            entry = _held_waits[id(rt)] = (weakref.ref(rt), HeldWaits(rt.settings.service.threads))
        return entry[1]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _store(uow: UnitOfWork) -> SqlInspectionStore:
    return SqlInspectionStore(uow.session)


# --- the user's side ---------------------------------------------------------------


def check_command(settings: Settings, argv: list[str]) -> list[str]:
    """The command, checked against ``[inspection]``.

    Raises:
        OperationNotAllowedError: inspection is off, or the program is not allowed.
        InvalidArgumentError: an empty command, a NUL, more than 256 words or 4096 bytes.
    """
    conf = settings.inspection
    if conf.mode == "off":
        raise OperationNotAllowedError("Job inspection is disabled on this service")
    if not argv or not argv[0]:
        raise InvalidArgumentError("Invalid Argument: empty inspection command")
    if len(argv) > MAX_ARGS or sum(len(a.encode()) for a in argv) > MAX_ARGV_BYTES or any("\0" in a for a in argv):
        raise InvalidArgumentError(f"Invalid Argument: an inspection command has at most {MAX_ARGS} words, "
                                   f"{MAX_ARGV_BYTES} bytes and no NUL")
    if conf.mode == "allow-list" and argv[0] not in conf.commands:
        allowed = ", ".join(sorted(conf.commands)) or "none"
        raise OperationNotAllowedError(f"The command {argv[0][:64]!r} is not allowed for job inspection "
                                       f"on this service (allowed: {allowed})")
    return list(argv)


#: Why an ACL reader may not inspect (AuthorizationFault).
OWNER_ONLY = ("Authorization error: only the job's owner may inspect it; an ACL entry grants read access "
              "to the job's data (status, output), not commands in the job")


def _job_to_inspect(uow: UnitOfWork, principal: Principal, job_id: str) -> Job:
    job = job_for(uow, principal, job_id, access="read")  # a stranger: the usual "user not authorized"
    if job.owner_dn != principal.dn:
        raise AuthorizationError(OWNER_ONLY)
    if uow.jobs.children(job.id):
        raise OperationNotAllowedError("A compound job cannot be inspected: inspect one of its nodes")
    return job


def ask(rt: Runtime, principal: Principal, job_id: str, argv: list[str], time_limit: float | None = None) -> str:
    """Ask the job ``job_id`` to run ``argv`` (no shell) in its work dir.

    Args:
        time_limit: seconds the command may run; None, 0 or more than
            ``[inspection] time_limit`` means the site's limit.

    Returns:
        The request id, for :func:`result`. A job that has ended gets an ``ended``
        request at once, not stored (:func:`ended_request_id`).

    Raises:
        InvalidArgumentError: malformed job id or command, a negative time limit or one over
            :data:`MAX_SECONDS`.
        JobNotFoundError: no such job.
        AuthorizationError: not the job's owner (an ACL reader gets :data:`OWNER_ONLY`).
        LimitedProxyError: a limited proxy (it grants data access only; a command runs in the job).
        OperationNotAllowedError: inspection off, program not allowed, a compound job, or
            a job that has not started running yet.
        InspectionLimitError: ``[inspection] max_requests_per_job`` or ``max_requests_per_user``
            reached.
    """
    conf = rt.settings.inspection
    command = check_command(rt.settings, argv)
    if is_limited(principal):
        raise LimitedProxyError("Authorization error: a limited proxy cannot inspect jobs (inspectJob); "
                                "limited proxies grant data access only")
    asked = seconds_argument(time_limit, "inspection time limit")
    limit = conf.time_limit if not asked else min(asked, conf.time_limit)
    now = _now()
    with rt.uow() as uow:
        job = _job_to_inspect(uow, principal, job_id)
        state = JobState(job.state)
        if not state.is_final and state != JobState.RUNNING:
            raise OperationNotAllowedError(f"The job is not running yet (state {state.value}): nothing to inspect")
        text = shlex.join(command)
        if state.is_final:  # nothing stored: asking again and again must not fill the database
            request_id = ended_request_id(job.id, command, now)
            log.info("inspection of job %s by %s (ended, not stored): %s", job_id, principal.dn,
                     log_text(text[:500]))
            return request_id
        _within_caps(rt.settings, _store(uow), job.id, principal.dn, now)
        request = InspectionRequest(
            id=secrets.token_urlsafe(18), job_id=job.id, requester_dn=principal.dn, argv=json.dumps(command),
            time_limit=limit, output_cap=conf.output_cap, state=PENDING, asked_at=now,
            timed_out=False, truncated=False,
        )
        _store(uow).add(request)
        _store(uow).add_event(job.id, job.state, f"inspection: {text[:EVENT_COMMAND_CHARS]}", now)
    log.info("inspection %s of job %s by %s (%s): %s", request.id, job_id, principal.dn, request.state,
             log_text(text[:500]))
    return request.id


def retention_cutoff(settings: Settings, now: dt.datetime) -> dt.datetime:
    """Requests asked before this are deleted: ``[inspection] retention`` ago, or longer when
    a request asked then could still be answered (``pickup_timeout + time_limit +``
    :data:`ANSWER_MARGIN`)."""
    conf = settings.inspection
    keep = max(conf.retention, conf.pickup_timeout + conf.time_limit + ANSWER_MARGIN)
    return now - dt.timedelta(seconds=keep)


def _within_caps(settings: Settings, store: SqlInspectionStore, job_id: str, requester_dn: str,
                 now: dt.datetime) -> None:
    """Refuse a request over ``max_requests_per_job`` or ``max_requests_per_user``; at a cap,
    the job's and the requester's expired requests are deleted first (with the request's
    transaction: a refusal deletes nothing, the purger does). The caps are exact: the count
    and the caller's insert run under the store's locks of the job and of the requester's DN,
    held to the commit (:meth:`~wmproxy.store.inspections.SqlInspectionStore.lock_counts`:
    PostgreSQL advisory locks; SQLite's ``BEGIN IMMEDIATE`` serialises writers). The DN's
    lock is the one the per-user cap needs (it spans jobs); the job's keeps the per-job cap
    exact whoever asks. Before, asks at the same instant all passed the count below a cap on
    PostgreSQL (12 of 12 asks at a cap of 3: ``tests/store/test_inspection_caps_race.py``).

    Raises:
        InspectionLimitError: a cap is reached.
    """
    conf = settings.inspection
    store.lock_counts(job_id, requester_dn)  # before the count: PostgreSQL reads it anew (READ COMMITTED)

    def over() -> str | None:
        kept, mine = store.counts(job_id, requester_dn)
        if kept >= conf.max_requests_per_job:
            return f"this job keeps {kept} inspection requests, at most {conf.max_requests_per_job}"
        if mine >= conf.max_requests_per_user:
            return f"you keep {mine} inspection requests, at most {conf.max_requests_per_user}"
        return None

    if over() is None:
        return
    store.remove_expired_of(job_id, requester_dn, retention_cutoff(settings, now))
    reason = over()
    if reason is not None:
        raise InspectionLimitError(f"Too many inspection requests: {reason} (each kept "
                                   f"{settings.inspection.retention:g} s after it was asked); ask again later")


#: Prefix of the request id an ended job's request gets (:func:`ended_request_id`).
ENDED_PREFIX = "ended."
#: Longest :func:`ended_request_id` decoded: the longest the service makes (a job id, a command of
#: :data:`MAX_ARGV_BYTES` control characters, each ``\u00XX`` in JSON, base64) fits with room to
#: spare; a longer one is refused before it is decoded (a forged one of nested JSON took
#: ``json.loads`` past the recursion limit: GenericFault and a traceback).
MAX_ENDED_ID_CHARS = 64 * 1024


def ended_request_id(job_id: str, command: list[str], asked_at: dt.datetime) -> str:
    """The id of a request asked of a job that had ended: nothing is stored, the id holds the
    job id, the command and the time asked (URL-safe base64 of JSON), and :func:`result`
    answers it from the job. It holds nothing the caller did not give: a forged one names a
    job :func:`result` checks as for any request (the owner's, and ended)."""
    text = json.dumps([job_id, command, asked_at.timestamp()], separators=(",", ":"))
    return ENDED_PREFIX + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _ended_request(request_id: str) -> tuple[str, list[str], dt.datetime]:
    """(job id, command, time asked) of an :func:`ended_request_id`.

    Raises:
        InvalidArgumentError: not one.
    """
    coded = request_id[len(ENDED_PREFIX):]
    try:
        if len(request_id) > MAX_ENDED_ID_CHARS:
            raise ValueError("too long")
        job_id, command, asked = json.loads(base64.urlsafe_b64decode(coded + "=" * (-len(coded) % 4)))
        if not (isinstance(job_id, str) and isinstance(command, list) and all(isinstance(w, str) for w in command)):
            raise TypeError("not an ended request")
        return job_id, command, dt.datetime.fromtimestamp(float(asked), dt.UTC)
    except (ValueError, TypeError, OverflowError, OSError, binascii.Error, RecursionError):
        raise InvalidArgumentError("Invalid Argument: unknown inspection request") from None


def _look_ended(rt: Runtime, principal: Principal, request_id: str) -> InspectionResult:
    job_id, command, asked_at = _ended_request(request_id)
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        if job is None or job.owner_dn != principal.dn or not JobState(job.state).is_final:
            raise InvalidArgumentError("Invalid Argument: unknown inspection request")  # as for a stored one gone
        return InspectionResult(
            request_id=request_id, job_id=job.id, state=ENDED, command=command, asked_at=asked_at,
            started_at=None, ended_at=asked_at, exit_code=None, timed_out=False, truncated=False, output=b"",
            message=_ended_message(job), job_state=job.state)


def _ended_message(job: Job) -> str:
    text = f"The job has ended: {job.state}"
    if job.exit_code is not None and job.state == JobState.DONE.value:
        text += f", exit code {job.exit_code}"
    if job.reason:
        text += f" ({job.reason})"
    return text


def result(rt: Runtime, principal: Principal, request_id: str, timeout: float | None) -> InspectionResult:
    """The request's outcome, waiting up to ``timeout`` seconds (at most :data:`MAX_WAIT`)
    for it to finish; returns the current state when it has not, once the service stops
    (``rt.stopping``), or at once when the process's held waits already take every thread
    they may (:class:`HeldWaits`).

    Raises:
        InvalidArgumentError: unknown request id (or its job was purged), a negative timeout or
            one over :data:`MAX_SECONDS`.
        AuthorizationError: the caller did not ask this request, or is not the job's owner
            (an ACL reader's request asked before only owners could inspect).
    """
    timeout = seconds_argument(timeout, "timeout")
    if request_id.startswith(ENDED_PREFIX):
        return _look_ended(rt, principal, request_id)
    with held_waits(rt).hold(agent=False, dn=principal.dn) as may_hold:
        deadline = time.monotonic() + (min(timeout, MAX_WAIT) if may_hold else 0.0)
        while True:
            found = _look(rt, principal, request_id)
            if found.finished or time.monotonic() >= deadline:
                return found
            if rt.stopping.wait(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic()))):
                return found


def _look(rt: Runtime, principal: Principal, request_id: str) -> InspectionResult:
    with rt.uow() as uow:
        request = _store(uow).get(request_id)
        if request is None:
            raise InvalidArgumentError("Invalid Argument: unknown inspection request")
        if request.requester_dn != principal.dn:
            raise AuthorizationError("Authorization error: user not authorized")
        job = uow.jobs.get(request.job_id)
        if job is not None and job.owner_dn != principal.dn:  # an ACL reader's, asked before owners only
            raise AuthorizationError(OWNER_ONLY)
        job_state = job.state if job is not None else JobState.CLEARED.value
        if request.state not in FINISHED:
            reason = _stuck(rt.settings, request, job, _now())
            if reason is not None:
                request = _store(uow).get(request_id, for_update=True) or request
                if request.state not in FINISHED:
                    request.state, request.ended_at, request.message = FAILED, _now(), reason
                    log.info("inspection %s of job %s failed: %s", request.id, request.job_id, reason)
        return _result_of(request, job_state)


def _stuck(settings: Settings, request: InspectionRequest, job: Job | None, now: dt.datetime) -> str | None:
    """Why a pending or running request can no longer be answered, or None."""
    if job is None or job.state != JobState.RUNNING.value:
        state = job.state if job is not None else JobState.CLEARED.value
        return f"The job stopped running (now {state}) before answering the inspection"
    if request.state == PENDING and (now - request.asked_at).total_seconds() > settings.inspection.pickup_timeout:
        return (f"The job did not pick up the inspection request within {settings.inspection.pickup_timeout:g} s "
                "(its agent is not running or cannot reach the service)")
    started = request.started_at
    if request.state == RUNNING and started is not None and \
            (now - started).total_seconds() > request.time_limit + ANSWER_MARGIN:
        return f"The job took the inspection request but did not answer within {request.time_limit:g} s"
    return None


def _result_of(request: InspectionRequest, job_state: str) -> InspectionResult:
    return InspectionResult(
        request_id=request.id, job_id=request.job_id, state=request.state, command=json.loads(request.argv),
        asked_at=request.asked_at, started_at=request.started_at, ended_at=request.ended_at,
        exit_code=request.exit_code, timed_out=bool(request.timed_out), truncated=bool(request.truncated),
        output=request.output or b"", message=request.message or "", job_state=job_state,
    )


# --- the job's side ----------------------------------------------------------------


@functools.cache
def _token_key(store_key_file: str) -> bytes:
    return hashlib.sha256(b"wmproxy inspection agent\0" + Path(store_key_file).read_bytes().strip()).digest()


def agent_token(settings: Settings, job_id: str, *, attempt: int) -> str:
    """The secret of the agent of the job's attempt ``attempt`` (0 for the first run, n for the
    n-th resubmission, shallow or deep: ``Job.attempt``, the worker's
    ``StartOrder.attempt``): HMAC-SHA256 under a key derived from the store key (``[security]
    store_key_file``), so the service and every worker derive it without storing it. Hex, 64
    characters.

    The first attempt's covers the job id alone, as every secret did before they were bound to
    attempts (the agents of jobs running through that upgrade keep working); a later one's the
    job id, a NUL and the attempt, so an agent left over from an earlier attempt (a wrapper the
    worker lost, the job resubmitted since) is refused (:func:`_agent_job`).

    Raises:
        OSError: the store key cannot be read.
    """
    message = job_id if attempt == 0 else f"{job_id}\0attempt {attempt}"
    return hmac.new(_token_key(settings.security.store_key_file), message.encode(), hashlib.sha256).hexdigest()


def agent_environment(settings: Settings, job_id: str, *, attempt: int) -> dict[str, str]:
    """The variables the execution worker puts in the wrapper spec's ``base_environment``
    to start the agent of the job's attempt ``attempt`` (:func:`agent_token`): the agent URL
    (``[service] host``/``port``), the secret, the
    CA directory to verify the service with and the seconds the job must still run before
    its wrapper starts the agent (``[inspection] agent_delay``, as ``repr`` of a float).
    Empty when inspection is off (no agent starts)."""
    if settings.inspection.mode == "off":
        return {}
    svc = settings.service
    return {
        ENV_URL: f"https://{svc.host}:{svc.port}{AGENT_PATH}",
        ENV_TOKEN: agent_token(settings, job_id, attempt=attempt),
        ENV_CA_DIR: settings.security.ca_dir,
        ENV_DELAY: repr(float(settings.inspection.agent_delay)),
    }


def _agent_job(rt: Runtime, uow: UnitOfWork, principal: Principal, job_id: str, token: str) -> Job:
    """The job whose agent is calling: the owner's credential and the secret of the job's
    current attempt (an earlier attempt's agent is refused)."""
    job = uow.jobs.get(job_id)
    expected = agent_token(rt.settings, job_id, attempt=job.attempt if job is not None else 0)
    if job is None or job.owner_dn != principal.dn or not hmac.compare_digest(token.encode(), expected.encode()):
        raise AuthorizationError("Authorization error: not the agent of this job")
    return job


def agent_check(rt: Runtime, principal: Principal, job_id: str, token: str) -> None:
    """That the caller is the job's agent (the owner's credential and the job's secret), before
    anything it sent is read (the HTTP edge reads a result's body only then).

    Raises:
        AuthorizationError: not the job owner's credential, or a wrong secret.
    """
    with rt.uow() as uow:
        _agent_job(rt, uow, principal, job_id, token)


def agent_next(rt: Runtime, principal: Principal, job_id: str, token: str, wait: float) -> AgentTask | None:
    """The next request for the job's agent, taken (``running``); None after ``wait``
    seconds (at most :data:`MAX_WAIT`) without one, or once the service stops
    (``rt.stopping``: the agent asks again, of the service restarted).

    A request is handed out with the smaller of its own time limit and output cap and the
    site's of now (:func:`_current_limits`: a request asked before the operator lowered them
    ran with the old ones). A pending request is handed out only if it could still be asked now: one asked by another
    than the owner, one pending longer than ``pickup_timeout``, or one whose command
    ``[inspection]`` now refuses (a narrower allow-list) fails instead, with the reason
    (:func:`_unfit`). With ``mode = off`` the job's pending requests fail and the agent is
    told to stop.

    Raises:
        AuthorizationError: not the job owner's credential, or a wrong secret.
        JobNotRunningError: the job is not running (the agent should stop).
        InspectionOffError: ``[inspection] mode`` is ``off`` (the agent should stop).
    """
    deadline = time.monotonic() + max(0.0, min(wait, MAX_WAIT))
    while True:
        with rt.uow() as uow:
            job = _agent_job(rt, uow, principal, job_id, token)
            if job.state != JobState.RUNNING.value:
                raise JobNotRunningError(f"The job is not running (state {job.state})")
            request = _store(uow).next_pending(job_id)
            while request is not None:
                reason = _unfit(rt.settings, request, job)
                if reason is None:
                    break
                request.state, request.ended_at, request.message = FAILED, _now(), reason
                log.info("inspection %s of job %s by %s failed before the agent took it: %s", request.id, job_id,
                         request.requester_dn, log_text(reason))
                uow.session.flush()
                request = _store(uow).next_pending(job_id)
            if request is not None:
                request.state, request.started_at = RUNNING, _now()
                _current_limits(rt.settings, request)
                return AgentTask(request.id, json.loads(request.argv), request.time_limit, request.output_cap)
            off = rt.settings.inspection.mode == "off"
        if off:  # once what was pending has failed (committed: raising inside would roll it back)
            raise InspectionOffError("Job inspection is disabled on this service")
        if time.monotonic() >= deadline or rt.stopping.wait(min(POLL_INTERVAL * 2,
                                                                  max(0.0, deadline - time.monotonic()))):
            return None


def _current_limits(settings: Settings, request: InspectionRequest) -> None:
    """Hold a request being handed out to the site's limits of now: the smaller of its own
    ``time_limit`` and ``output_cap`` (asked under the settings of then) and
    ``[inspection]``'s (lowered since, the service restarted). Stored, so the service waits
    for the limit the agent was given (:func:`_stuck`) and :func:`agent_post` cuts at it."""
    conf = settings.inspection
    request.time_limit = min(request.time_limit, conf.time_limit)
    request.output_cap = min(request.output_cap, conf.output_cap)


def _unfit(settings: Settings, request: InspectionRequest, job: Job) -> str | None:
    """Why the pending ``request`` of the running ``job`` must fail rather than be handed to
    its agent, or None: asked by another than the owner (an ACL reader's, asked before only
    owners could), not taken within ``pickup_timeout`` (nobody may have polled since: the
    agent would run it late), or a command ``[inspection]`` refuses now (``mode = off``, a
    program taken off the allow-list)."""
    if request.requester_dn != job.owner_dn:
        return OWNER_ONLY
    stuck = _stuck(settings, request, job, _now())
    if stuck is not None:
        return stuck
    try:
        argv = json.loads(request.argv)
        check_command(settings, argv if isinstance(argv, list) else [])
    except (OperationNotAllowedError, InvalidArgumentError) as exc:
        return f"The service's inspection policy refuses this command now, before the job took it: {exc.args[0]}"
    except ValueError:
        return "Invalid Argument: the stored inspection command is not readable"
    return None


def agent_post(rt: Runtime, principal: Principal, job_id: str, token: str, request_id: str,
               outcome: AgentOutcome) -> None:
    """Record the outcome the job's agent posts for a request it took; the output is cut
    at the request's cap, or ``[inspection] output_cap`` if lowered since it was taken. A
    request already finished (failed meanwhile) is left alone. The times the agent gives are
    kept within what the service saw (:func:`_run_times`).

    Raises:
        AuthorizationError: not the job owner's credential, or a wrong secret.
        InvalidArgumentError: no such request of this job.
        OperationNotAllowedError: a request the agent was not handed (still pending).
    """
    with rt.uow() as uow:
        _agent_job(rt, uow, principal, job_id, token)
        request = _store(uow).get(request_id, for_update=True)
        if request is None or request.job_id != job_id:
            raise InvalidArgumentError("Invalid Argument: unknown inspection request")
        if request.state in FINISHED:
            log.info("inspection %s of job %s: late answer ignored (%s)", request_id, job_id, request.state)
            return
        if request.state != RUNNING:
            raise OperationNotAllowedError(f"the inspection request is {request.state}: the job's agent was not "
                                           "handed it, so there is nothing to answer")
        request.state = DONE if outcome.error is None else FAILED
        request.started_at, request.ended_at = _run_times(request, outcome, _now())
        request.exit_code = outcome.exit_code
        request.timed_out = outcome.timed_out
        cap = min(request.output_cap, rt.settings.inspection.output_cap)  # lowered since it was taken
        request.output = outcome.output[:cap]
        request.truncated = outcome.truncated or len(outcome.output) > cap
        request.message = outcome.error or ("killed at the time limit" if outcome.timed_out else None)
    log.info("inspection %s of job %s: %s, exit code %s%s", request_id, job_id, request.state, outcome.exit_code,
             ", timed out" if outcome.timed_out else "")


def _run_times(request: InspectionRequest, outcome: AgentOutcome, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """(started, ended) of a taken request as recorded: the agent's, within what the service saw.
    It started no sooner than it was handed out (``started_at`` at the claim; the agent's clock
    may be behind) and no later than ``now``; it ended between its start and ``now`` (a result
    once posted with ``0001-01-01`` to ``9999-12-31`` was recorded as it was). A time not given
    is the claim, or ``now``."""
    claimed = request.started_at or request.asked_at
    started = min(max(outcome.started_at or claimed, claimed), now)
    ended = min(max(outcome.ended_at or now, started), now)
    return started, ended
