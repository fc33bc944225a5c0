"""``wmproxy logging-info``: glite-wms-job-logging-info, through the jobs-1 extension
operation getJobEvents (the service's own event history instead of an L&B server)."""

from __future__ import annotations

import click

from wmproxy.cli import common, history_opts, render, render_history
from wmproxy.cli.results import result_file_option


@click.command("logging-info")
@click.argument("job_ids", metavar="JOBID...", nargs=-1)
@click.option("-i", "--input", "input_file", metavar="FILE", help="Read job ids from a submit -o file.")
@click.option("-v", "--verbosity", type=click.IntRange(0, 3), default=1, show_default=True,
              help="0: event and time; 1: + source and reason; 2: + job state; 3: + job id and event kind.")
@click.option("--event", "events", metavar="EVENT", multiple=True,
              help="Only these events (L&B name such as Match or its code 15, or kind such as matched).")
@click.option("-e", "--exclude", "excluded", metavar="EVENT", multiple=True, help="Leave out these events.")
@click.option("--from", "since", metavar="TIME",
              help="Only events at or after TIME ([MM:DD:]hh:mm[:YYYY] local time, or ISO 8601: no zone = UTC).")
@click.option("--to", "until", metavar="TIME", help="Only events at or before TIME (as --from).")
@click.option("--user-tag", "user_tags", metavar="NAME=VALUE", multiple=True,
              help="Only the jobs whose JDL UserTags hold NAME=VALUE.")
@common.common_options(short_endpoint=False)
@render.reports_errors_json
@result_file_option
def logging_info(job_ids: tuple[str, ...], input_file: str | None, verbosity: int, events: tuple[str, ...],
                 excluded: tuple[str, ...], since: str | None, until: str | None, user_tags: tuple[str, ...],
                 endpoint: str | None, as_json: bool) -> None:
    """Print the events of jobs: what happened, when (UTC), who reported it and why.

    A batch (several ids, -i FILE) goes on past a job that fails; each failure is reported
    and the exit status is 1 at the end.
    """
    after = history_opts.parse_time(since, "--from")
    before = history_opts.parse_time(until, "--to")
    tags = history_opts.parse_user_tags(user_tags)
    ids = history_opts.batch_ids(job_ids, input_file)
    kinds = history_opts.event_kinds(events, "--event")
    if excluded:
        dropped = set(history_opts.event_kinds(excluded, "--exclude"))
        kinds = [k for k in kinds or render_history.EVENT_NAMES if k not in dropped]
        if not kinds:
            raise click.UsageError("--exclude leaves no event to show")
    client = history_opts.jobs_client(common.make_client(common.Environment.load(endpoint)))
    found, failed = history_opts.run_batch(
        ids, lambda j: client.get_job_events(j, since=after, until=before, kinds=kinds))
    if tags:  # the jobs whose UserTags do not hold them are left out, as status --user-tag does
        found = [h for h in found if tags.items() <= h.job.user_tags.items()]
    history_opts.finish_batch(as_json, failed, lambda: render_history.logging_info_json(found, failed),
                              lambda: render_history.logging_info_text(found, verbosity) if found else "")
