"""``wmproxy status``: glite-wms-job-status, through WMProxy getJobStatus and (for the
details of ``-v`` and for ``--all``) the jobs-1 extension port (getJobEvents, listJobs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import click

from wmproxy.cli import common, history_opts, render, render_history
from wmproxy.cli.render import StatusView
from wmproxy.cli.results import result_file_option
from wmproxy.client import JobStatus, WMProxyClient, WMProxyClientError
from wmproxy.domain import JobState, JobSummary


@click.command("status")
@click.argument("job_ids", metavar="JOBID...", nargs=-1)
@click.option("-i", "--input", "input_file", metavar="FILE", help="Read job ids from a submit -o file.")
@click.option("-v", "--verbosity", type=click.IntRange(0, 3), default=1, show_default=True,
              help="0: state only; 1: + reason, exit code, destination, submitted; 2: + times, owner, tags; 3: + JDL.")
@click.option("--all", "all_jobs", is_flag=True, help="List all your jobs (and those shared with you).")
@click.option("-s", "--status", "states", metavar="STATE", multiple=True,
              help="Only jobs in STATE (L&B name in any case, or its code: 6 = Done).")
@click.option("-e", "--exclude", "excluded", metavar="STATE", multiple=True, help="Leave out jobs in STATE.")
@click.option("--from", "since", metavar="TIME",
              help="Only jobs registered at or after TIME ([MM:DD:]hh:mm[:YYYY] local time, or ISO 8601: no "
                   "zone = UTC).")
@click.option("--to", "until", metavar="TIME", help="Only jobs registered at or before TIME (as --from).")
@click.option("--user-tag", "user_tags", metavar="NAME=VALUE", multiple=True,
              help="Only jobs whose JDL UserTags hold NAME=VALUE.")
@click.option("--nonodes", is_flag=True, help="Leave out the nodes of a DAG/collection.")
@common.common_options(short_endpoint=False)
@render.reports_errors_json
@result_file_option
def status(job_ids: tuple[str, ...], input_file: str | None, verbosity: int, all_jobs: bool,
           states: tuple[str, ...], excluded: tuple[str, ...], since: str | None, until: str | None,
           user_tags: tuple[str, ...], nonodes: bool, endpoint: str | None, as_json: bool) -> None:
    """Print the status of jobs (and of their nodes, unless --nonodes), or with --all list your jobs.

    --status, --exclude, --from, --to and --user-tag keep the jobs given (JOBID, -i FILE)
    that pass them, or without any job given list all your jobs that pass them, as
    glite-wms-job-status (which takes --status or --exclude, not both).

    A batch (several ids, -i FILE) goes on past a job that fails; each failure is reported
    and the exit status is 1 at the end.
    """
    if states and excluded:  # glite-wms-job-status checkExclude: UI_ARG_EXCLUSIVE
        raise click.UsageError("-s/--status and -e/--exclude cannot be given together (as in glite-wms-job-status: "
                               "keep the states wanted, or leave out those not wanted)")
    filters = history_opts.JobFilter.parse(states, excluded, since, until, user_tags)
    if all_jobs and (job_ids or input_file):
        raise click.UsageError("--all lists every job: give no JOBID nor -i")
    if all_jobs or (filters and not job_ids and not input_file):
        _list(endpoint, as_json, filters)
        return
    ids = history_opts.batch_ids(job_ids, input_file)
    client = common.make_client(common.Environment.load(endpoint))
    extension = _Extension(lambda job_id: history_opts.job_summary(client, job_id))
    found, failed = history_opts.run_batch(ids, lambda j: _view(client, extension, j, verbosity, filters, nonodes))
    views = [view for view in found if view is not None]
    history_opts.finish_batch(as_json, failed, lambda: render.status_json(views, failed, verbosity),
                              lambda: render.status_text(views, verbosity) if views else "")


class _Extension:
    """The jobs-1 summary of a job (not asked for ``-v 0`` without a filter), read once,
    switched off after the service answers that it has no such port."""

    def __init__(self, read: Callable[[str], JobSummary]) -> None:
        self.read = read
        self.absent = False
        self.read_before: dict[str, JobSummary] = {}

    def summary(self, job_id: str) -> JobSummary | None:
        if self.absent:
            return None
        if job_id not in self.read_before:
            try:
                self.read_before[job_id] = self.read(job_id)
            except WMProxyClientError as exc:
                if history_opts.lacks_extension(exc):
                    self.absent = True
                    return None
                raise
        return self.read_before[job_id]


def _view(client: WMProxyClient, extension: _Extension, job_id: str, verbosity: int,
          filters: history_opts.JobFilter, nonodes: bool = False) -> StatusView | None:
    """The job's status (without its nodes when ``nonodes``), None when it does not pass
    ``filters`` (as gLite, which only logged "no matching information for job id")."""
    if filters:
        summary = extension.summary(job_id)
        if summary is None:
            raise WMProxyClientError(
                "OperationNotSupported", "this service has no jobs-1 extension (a gLite WMProxy): "
                "--status/--exclude/--from/--to/--user-tag cannot be applied", None, "getJobEvents")
        if not filters.matches(summary):
            common.log.info("%s does not pass the filters (state %s)", job_id, summary.state)
            return None
    status = client.get_job_status(job_id)
    if nonodes:
        status = replace(status, children=())
    if verbosity < 1:
        return StatusView(status)
    summary = extension.summary(job_id)
    jdl = _registered_jdl(client, status) if verbosity >= 3 else None
    nodes = tuple(StatusView(c, extension.summary(c.job_id)) for c in status.children) if verbosity >= 2 else ()
    return StatusView(status, summary, jdl, nodes)


def _registered_jdl(client: WMProxyClient, status: JobStatus) -> str | None:
    """The job's registered JDL, None for a purged (Cleared) job: the service keeps its status
    but refuses its JDL, as the reference whose job area is gone (JobUnknownFault), so
    ``-v 3`` shows what ``-v 2`` does."""
    if status.state == JobState.CLEARED.value:
        return None
    try:
        return client.get_jdl(status.job_id, "REGISTERED")
    except WMProxyClientError as exc:
        if exc.fault_type == "JobUnknownFault":  # purged since getJobStatus answered
            return None
        raise


def _list(endpoint: str | None, as_json: bool, filters: history_opts.JobFilter) -> None:
    client = common.make_client(common.Environment.load(endpoint))
    listing = filters.listing()
    jobs = [] if listing is None else history_opts.jobs_client(client).list_all_jobs(**listing)
    if as_json:
        click.echo(render_history.job_list_json(jobs))
    else:
        common.echo(render_history.job_table(jobs), nl=False)


def _job_ids(job_ids: tuple[str, ...], input_file: str | None) -> list[str]:
    """Job ids from the arguments or ``-i FILE`` (``cancel`` and ``output`` use it too)."""
    return history_opts.batch_ids(job_ids, input_file)
