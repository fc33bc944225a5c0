"""``wmproxy status``: glite-wms-job-status, through WMProxy getJobStatus."""

from __future__ import annotations

import click

from wmproxy.cli import common, jobids, render


@click.command("status")
@click.argument("job_ids", metavar="JOBID...", nargs=-1)
@click.option("-i", "--input", "input_file", metavar="FILE", help="Read job ids from a submit -o file.")
@common.common_options
@common.reports_errors
def status(job_ids: tuple[str, ...], input_file: str | None, endpoint: str | None, as_json: bool) -> None:
    """Print the status of jobs (and of their nodes)."""
    ids = _job_ids(job_ids, input_file)
    client = common.make_client(common.Environment.load(endpoint))
    statuses = [client.get_job_status(j) for j in ids]
    if as_json:
        click.echo(render.status_json(statuses))
    else:
        click.echo(render.status_text(statuses), nl=False)


def _job_ids(job_ids: tuple[str, ...], input_file: str | None) -> list[str]:
    """Job ids from the arguments and/or ``-i FILE``. Raises click.UsageError when there are none."""
    ids = list(job_ids)
    if input_file:
        try:
            ids += jobids.read_job_ids(input_file)
        except OSError as exc:
            raise common.CliError("Input", f"cannot read {input_file}: {exc.strerror}") from None
    if not ids:
        raise click.UsageError("no job id given (JOBID or -i FILE)")
    return ids
