"""What ``status`` and ``logging-info`` share: ``--from/--to`` times, ``--user-tag``, the job
ids of a batch, running a batch past its failures, and the jobs-1 extension client."""

from __future__ import annotations

import datetime as dt
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import click

from wmproxy.cli import common, jobids
from wmproxy.cli.errors import unreadable
from wmproxy.cli.render import JobError, error_line
from wmproxy.client import WMProxyClient, WMProxyClientError
from wmproxy.domain import JobSummary

if TYPE_CHECKING:  # zeep is imported only by the verbs that call the jobs-1 port
    from wmproxy.client.jobs_ext import JobsClient

T = TypeVar("T")

#: glite-wms-job-status/logging-info ``--from/--to`` format: ``MM:DD:hh:mm[:YYYY]``.
_GLITE_TIME = re.compile(r"^(\d{1,2}):(\d{1,2}):(\d{1,2}):(\d{1,2})(?::(\d{4}))?$")


#: The time of day of an ISO 8601 value, to tell how precise it is (:func:`parse_time`).
_ISO_TIME = re.compile(r"[T ]\d{2}(?P<minute>:?\d{2})?(?P<second>:?\d{2})?(?P<fraction>[.,]\d+)?")


def parse_time(value: str | None, option: str, now: dt.datetime | None = None) -> dt.datetime | None:
    """A ``--from``/``--to`` value as an aware UTC time, None when not given.

    Accepts ISO 8601 (``2026-12-02T13:00:00Z``, ``2026-12-02 13:00``; no zone = UTC) and the
    gLite ``MM:DD:hh:mm[:YYYY]`` (UTC; the year defaults to the current one).

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
    match = _GLITE_TIME.match(text)
    unit = dt.timedelta(minutes=1)
    try:
        if match:
            month, day, hour, minute = (int(g) for g in match.groups()[:4])
            year = int(match.group(5)) if match.group(5) else (now or dt.datetime.now(dt.UTC)).year
            parsed: dt.datetime | None = dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)
        else:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            unit = _iso_unit(text)
    except ValueError:
        parsed = None
    if parsed is None:
        raise click.BadParameter(f"{value!r} is not a time: use YYYY-MM-DDThh:mm[:ss][Z] or MM:DD:hh:mm[:YYYY] (UTC)",
                                 param_hint=option)
    if option == "--to":
        try:
            parsed += unit - dt.timedelta(microseconds=1)
        except OverflowError:  # the end of year 9999
            parsed = dt.datetime.max.replace(tzinfo=parsed.tzinfo)
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


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
        except (OSError, UnicodeDecodeError) as exc:
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
