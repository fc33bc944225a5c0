"""``wmproxy cancel``: glite-wms-job-cancel.

Every job is tried: a job that cannot be cancelled (unknown id, already ended, not the
caller's) is reported on its own line and the others are still cancelled; the exit
status is 1 when any failed (issue 12).
"""

from __future__ import annotations

import click

from wmproxy.cli import common, render
from wmproxy.cli.prompts import yes_no
from wmproxy.cli.results import confirm_overwrite, write_result
from wmproxy.cli.status import _job_ids
from wmproxy.client import WMProxyClientError


@click.command("cancel")
@click.argument("job_ids", metavar="JOBID...", nargs=-1)
@click.option("-i", "--input", "input_file", metavar="FILE", help="Read job ids from a submit -o file.")
@click.option("-o", "--output", "output_file", metavar="FILE", help="Write the result to FILE instead of printing it.")
@click.option("--noint", is_flag=True, help="Do not ask for confirmation.")
@common.common_options
@common.reports_errors
def cancel(job_ids: tuple[str, ...], input_file: str | None, output_file: str | None, noint: bool,
           endpoint: str | None, as_json: bool) -> None:
    """Cancel jobs (jobCancel). Asks for confirmation unless --noint or --json (no answer, the
    end of input: yes); declined, it exits 1. An existing -o FILE is asked about first (no
    answer: no, exit 1), as glite-wms-job-cancel."""
    ids = _job_ids(job_ids, input_file)
    env = common.Environment.load(endpoint)
    confirm_overwrite(output_file)  # gLite asks before cancelling, and again when it saves
    if not (as_json or common.run_options().noint) and not yes_no("Are you sure you want to remove specified job(s)",
                                                                  default=True):
        common.echo("bye", err=True)  # gLite jobcancel: "bye", exit status 1
        raise SystemExit(1)
    client = common.make_client(env)
    done: list[str] = []
    errors: list[render.JobError] = []
    for job_id in ids:
        try:
            common.check_job_id(job_id)
            client.job_cancel(job_id)
            done.append(job_id)
        except WMProxyClientError as exc:
            errors.append(render.JobError(job_id, exc.fault_type, exc.description))
            if len(ids) > 1 and not as_json:
                common.echo(f"Error - {job_id}: {exc.fault_type}: {exc.description}", err=True)
    if len(ids) == 1 and errors:
        common.fail(errors[0].type, errors[0].message)
    if as_json:
        # docs/cli-json.md: "partial" when some failed, each failure in "errors"
        write_result(render.batch_json("jobids", done, errors, endpoint=client.endpoint) + "\n", output_file)
    elif done:
        write_result(render.cancel_text(done), output_file)
    if errors:
        if not as_json:
            common.echo(f"Error - {len(errors)} of {len(ids)} job(s) could not be cancelled", err=True)
        raise SystemExit(1)
