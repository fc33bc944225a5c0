"""What ``status`` and ``logging-info`` share: ``--from/--to`` times, ``--user-tag``, the job
states of ``--status/--exclude`` (:class:`JobFilter`), the job ids of a batch, running a batch
past its failures, and the jobs-1 extension client."""

from __future__ import annotations

import datetime as dt
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from wmproxy.cli import common, jobids
from wmproxy.cli.errors import unreadable
from wmproxy.cli.render import JobError, error_line
from wmproxy.client import WMProxyClient, WMProxyClientError
from wmproxy.domain import JobState, JobSummary

if TYPE_CHECKING:  # zeep is imported only by the verbs that call the jobs-1 port
    from wmproxy.client.jobs_ext import JobsClient

T = TypeVar("T")

#: glite-wms-job-status/logging-info ``--from/--to`` forms (wmsui_checks.checkFromTo): ``hh:mm``
#: (today), ``MM:DD:hh:mm`` (this year), ``MM:DD:hh:mm:YYYY`` (or ``YY``).
_GLITE_TIME = re.compile(r"^\d{1,2}:\d{1,2}(?::\d{1,2}:\d{1,2}(?::(?:\d{2}|\d{4}))?)?$")


#: The time of day of an ISO 8601 value, to tell how precise it is (:func:`parse_time`).
_ISO_TIME = re.compile(r"[T ]\d{2}(?P<minute>:?\d{2})?(?P<second>:?\d{2})?(?P<fraction>[.,]\d+)?")


def parse_time(value: str | None, option: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """A ``--from``/``--to`` value as an aware UTC time, None when not given.

    Accepts ISO 8601 (``2026-12-02T13:00:00Z``, ``2026-12-02 13:00``; no zone = UTC, as the
    times printed) and the gLite forms ``hh:mm`` (today), ``MM:DD:hh:mm`` and
    ``MM:DD:hh:mm:YYYY``, in local time as gLite reads them (``time.mktime`` in
    wmsui_checks.checkFromTo) and as ``submit --to`` does; the date and year default to the
    current local ones, a two-digit year is read as ``strptime("%y")`` does.

    A ``--to`` bound ("at or before TIME") covers the whole of the last unit it gives: the
    times printed (to the second) are stored with microseconds, so ``--to 2026-12-02T13:05:09Z``
    is 13:05:09.999999, ``--to 12:02:13:05`` (gLite) and ``--to "2026-12-02 13:05"`` the end of
    that minute, a bare date the end of that day. A ``--from`` bound is the time as given.

    Raises:
        click.BadParameter: neither form.
    """
    if value is None:
        return None
    text = value.strip()
    unit = dt.timedelta(minutes=1)
    try:
        if _GLITE_TIME.match(text):
            parsed: dt.datetime | None = _glite_time(text, now or dt.datetime.now(dt.UTC))
        else:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            unit = _iso_unit(text)
    except ValueError:
        parsed = None
    if parsed is None:
        raise click.BadParameter(f"{value!r} is not a time: use YYYY-MM-DDThh:mm[:ss][Z] (no zone: UTC) or "
                                 "[MM:DD:]hh:mm[:YYYY] (local time)", param_hint=option)
    if option == "--to":
        try:
            parsed += unit - dt.timedelta(microseconds=1)
        except OverflowError:  # the end of year 9999
            parsed = dt.datetime.max.replace(tzinfo=parsed.tzinfo)
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _glite_time(text: str, now: dt.datetime) -> dt.datetime:
    """A gLite ``[MM:DD:]hh:mm[:YYYY]`` local time, the missing fields taken from ``now``'s
    local date (``now`` is aware).

    Raises:
        ValueError: a field out of range.
    """
    fields = text.split(":")
    today = now.astimezone()
    month, day, year = today.month, today.day, today.year
    if len(fields) >= 4:
        month, day = int(fields[0]), int(fields[1])
        fields = fields[2:]
    if len(fields) == 3:
        year = int(fields[2]) if len(fields[2]) == 4 else time.strptime(fields[2], "%y").tm_year
    # naive, then the local zone's offset on that date (as mktime: daylight saving included)
    return dt.datetime(year, month, day, int(fields[0]), int(fields[1])).astimezone()


def _iso_unit(text: str) -> dt.timedelta:
    """The finest unit an ISO 8601 value gives: a day (date only) down to a microsecond."""
    found = _ISO_TIME.search(text)
    if found is None:
        return dt.timedelta(days=1)
    if found["fraction"]:
        return dt.timedelta(microseconds=1)
    if found["second"]:
        return dt.timedelta(seconds=1)
    return dt.timedelta(minutes=1) if found["minute"] else dt.timedelta(hours=1)


def parse_user_tags(values: Sequence[str]) -> dict[str, str]:
    """``--user-tag name=value`` (repeatable) as a dict.

    Raises:
        click.BadParameter: a value without ``=`` or with an empty name.
    """
    tags: dict[str, str] = {}
    for value in values:
        name, sep, tag = value.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{value!r}: expected <tag name>=<tag value>", param_hint="--user-tag")
        tags[name.strip()] = tag.strip()
    return tags


#: The L&B job states, each at the index of its code (``JobStatus::Code``: 0 Undefined ... 11 Purged),
#: as ``glite-wms-job-status --status/--exclude`` take them: a name (any case) or a code.
LB_STATES = ("Undefined", "Submitted", "Waiting", "Ready", "Scheduled", "Running", "Done", "Cleared", "Aborted",
             "Cancelled", "Unknown", "Purged")

#: The states a job of this service can be in (the others of :data:`LB_STATES` match none).
SERVICE_STATES = frozenset(s.value for s in JobState)


def parse_states(values: Sequence[str], option: str) -> tuple[str, ...]:
    """``--status``/``--exclude`` values as L&B state names, each once: a name in any case
    (``DONE``, ``done``) or its L&B code (``6``), as gLite's ``checkExclude``.

    Raises:
        click.BadParameter: neither a state name nor a code from 0 to 11.
    """
    known = {name.lower(): name for name in LB_STATES}
    states: list[str] = []
    for value in values:
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            code = int(text)
            if not 0 <= code < len(LB_STATES):
                raise click.BadParameter(f"{value!r}: a state code is 0 to {len(LB_STATES) - 1}", param_hint=option)
            name = LB_STATES[code]
        elif text.lower() in known:
            name = known[text.lower()]
        else:
            codes = ", ".join(f"{n} {name}" for n, name in enumerate(LB_STATES))
            raise click.BadParameter(f"{value!r} is not a job state; the states (name or code): {codes}",
                                     param_hint=option)
        if name not in states:
            states.append(name)
    return tuple(states)


#: The L&B event types of its gLite flesh, each at the index of its code (``edg_wll_EventCode``,
#: ``org.glite.lb.types/events.T``: 1 Transfer ... 17 RegJob ... 32 DisconnectJob; 0 is no
#: event), as ``glite-wms-job-logging-info --event/--exclude`` take them: a name or a code.
LB_EVENTS = ("Undefined", "Transfer", "Accepted", "Refused", "EnQueued", "DeQueued", "HelperCall", "HelperReturn",
             "Running", "Resubmission", "Done", "Cancel", "Abort", "Clear", "Purge", "Match", "Pending", "RegJob",
             "Chkpt", "Listener", "CurDescr", "UserTag", "ChangeACL", "Notification", "ResourceUsage",
             "ReallyRunning", "Suspend", "Resume", "CollectionState", "GrantPayloadOwnership",
             "TakePayloadOwnership", "ConnectJob", "DisconnectJob")


def event_kinds(values: Sequence[str], option: str) -> list[str]:
    """The event kinds ``--event``/``--exclude`` values select
    (:func:`wmproxy.cli.render_history.kinds_for`): a kind, an L&B event name, or an L&B event
    code (``15`` is ``Match``), as gLite's ``checkExclude``.

    Raises:
        click.BadParameter: a code that is no L&B event (not 1 to 32).
    """
    from wmproxy.cli.render_history import kinds_for

    names: list[str] = []
    for value in values:
        if not re.fullmatch(r"[+-]?\d+", value.strip()):
            names.append(value)
            continue
        code = int(value)
        if not 1 <= code < len(LB_EVENTS):
            raise click.BadParameter(f"{value!r}: an L&B event code is 1 to {len(LB_EVENTS) - 1}", param_hint=option)
        names.append(LB_EVENTS[code])
    return kinds_for(names)


@dataclass(frozen=True)
class JobFilter:
    """What ``status --status/--exclude/--from/--to/--user-tag`` keep: the jobs in one of
    ``states`` (any when empty), in none of ``excluded``, registered within ``since``..``until``
    (inclusive), whose JDL ``UserTags`` hold every one of ``user_tags``."""

    states: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    user_tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, states: Sequence[str], excluded: Sequence[str], since: str | None, until: str | None,
              user_tags: Sequence[str]) -> JobFilter:
        """The filter of the options' values.

        Raises:
            click.BadParameter: a value that is not a state, a time or ``name=value``.
        """
        return cls(parse_states(states, "--status"), parse_states(excluded, "--exclude"),
                   parse_time(since, "--from"), parse_time(until, "--to"), parse_user_tags(user_tags))

    def __bool__(self) -> bool:
        return bool(self.states or self.excluded or self.since or self.until or self.user_tags)

    def matches(self, job: JobSummary) -> bool:
        """Does ``job`` (its jobs-1 summary) pass the filter?"""
        return ((not self.states or job.state in self.states) and job.state not in self.excluded
                and (self.since is None or job.submitted >= self.since)
                and (self.until is None or job.submitted <= self.until)
                and self.user_tags.items() <= job.user_tags.items())

    def listing(self) -> dict[str, Any] | None:
        """The listJobs filter (:meth:`wmproxy.client.jobs_ext.JobsClient.list_all_jobs`) of the
        same jobs, None when none can match (``--status`` names only states no job of this
        service is in: Undefined, Unknown, Purged); those states are left out of what is sent."""
        states = tuple(s for s in self.states if s in SERVICE_STATES)
        if self.states and not states:
            return None
        return {"states": states, "exclude_states": tuple(s for s in self.excluded if s in SERVICE_STATES),
                "since": self.since, "until": self.until, "user_tags": dict(self.user_tags)}


def batch_ids(job_ids: Sequence[str], input_file: str | None) -> list[str]:
    """Job ids from the arguments or ``-i FILE`` (a ``submit -o`` file), in order, each once
    (a repeated argument too), checked as job ids (:func:`common.checked_job_ids`).

    As gLite (``Options::readOptions``: "JobId(s) mustn't be specified with the option
    --input"), arguments and ``-i`` are not taken together: a job given both ways would be
    acted on twice (two cancels, the second failing).

    Raises:
        click.UsageError: neither JOBID nor ``-i`` given, or both.
        common.CliError: ``Input`` when the file cannot be read, holds no job id, or none of
            the ids is a job id.
    """
    if job_ids and input_file:
        raise click.UsageError("job ids must not be given together with -i/--input")
    if input_file:
        try:
            ids = jobids.read_job_ids(input_file)
        except OSError as exc:
            raise common.CliError("Input", f"cannot read {input_file}: {unreadable(exc)}") from None
        if not ids:
            raise common.CliError("Input", f"{input_file} holds no job id")
    elif job_ids:
        ids = list(dict.fromkeys(job_ids))
    else:
        raise click.UsageError("no job id given (JOBID or -i FILE)")
    return common.checked_job_ids(ids)


def run_batch(ids: Sequence[str], one: Callable[[str], T]) -> tuple[list[T], list[JobError]]:
    """``one(job_id)`` for each id, going on past a job's failure: the results, and one
    :class:`JobError` per job that failed (a fault, or ``Input`` for an id that is not a job id:
    :func:`common.check_job_id`, no call made).

    Raises:
        WMProxyClientError: the service cannot be reached or trusted (``ConnectionError``,
            ``TLSError``): no later job would fare better, so the verb fails as a whole.
    """
    done: list[T] = []
    failed: list[JobError] = []
    for job_id in ids:
        try:
            common.check_job_id(job_id)
            done.append(one(job_id))
        except WMProxyClientError as exc:
            if exc.fault_type in common.FAILOVER_ERRORS:
                raise
            failed.append(JobError(job_id, exc.fault_type, exc.description))
    return done, failed


def finish_batch(as_json: bool, failed: Sequence[JobError], json_doc: Callable[[], str],
                 text: Callable[[], str]) -> None:
    """Print a batch's outcome: the JSON document, or the text of the jobs that succeeded then
    one ``Error - <type>: <message> (job <id>)`` line per failed job on stderr; exit 1 if any
    job failed."""
    if as_json:
        click.echo(json_doc())
    else:
        common.echo(text(), nl=False)
        for error in failed:
            common.echo(error_line(error.type, error.message, error.job_id), err=True)
    if failed:
        sys.exit(1)


def job_summary(client: WMProxyClient, job_id: str) -> JobSummary:
    """The jobs-1 summary of a job on ``client``'s endpoint, read without zeep
    (:func:`wmproxy.client.jobs_ext.job_summary`)."""
    from wmproxy.client import jobs_ext

    return jobs_ext.job_summary(client.post, job_id)


def jobs_client(client: WMProxyClient) -> JobsClient:
    """The jobs-1 extension client on the same endpoint and HTTPS session as ``client``."""
    from wmproxy.client.jobs_ext import JobsClient

    return JobsClient(client.endpoint, client.proxy_file, "", client.timeout, session=client.session)


def lacks_extension(exc: WMProxyClientError) -> bool:
    """Is this the answer of a service without the jobs-1 port (a gLite WMProxy)?"""
    return "Unknown operation" in exc.description or exc.fault_type == "WMProxy Server Error"
