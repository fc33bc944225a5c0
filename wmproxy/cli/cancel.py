"""``wmproxy cancel``: glite-wms-job-cancel."""

from __future__ import annotations

import json

import click

from wmproxy.cli import common, render
from wmproxy.cli.status import _job_ids
from wmproxy.client import WMProxyClientError


@click.command("cancel")
@click.argument("job_ids", metavar="JOBID...", nargs=-1)
@click.option("-i", "--input", "input_file", metavar="FILE", help="Read job ids from a submit -o file.")
@click.option("--noint", is_flag=True, help="Do not ask for confirmation.")
@common.common_options
@common.reports_errors
def cancel(job_ids: tuple[str, ...], input_file: str | None, noint: bool, endpoint: str | None, as_json: bool) -> None:
    """Cancel jobs (jobCancel). Asks for confirmation unless --noint or --json."""
    ids = _job_ids(job_ids, input_file)
    env = common.Environment.load(endpoint)
    if not (noint or as_json):
        answer = click.prompt(
            "Are you sure you want to remove specified job(s) [y/n]y", default="y", show_default=False,
            prompt_suffix=" :", err=True,
        )
        if answer.strip().lower() not in ("y", "yes"):
            click.echo("bye", err=True)
            return
    client = common.make_client(env)
    done: list[str] = []
    errors: list[WMProxyClientError] = []
    for job_id in ids:
        try:
            client.job_cancel(job_id)
            done.append(job_id)
        except WMProxyClientError as exc:
            errors.append(exc)
            if len(ids) > 1:
                click.echo(f"Error - {exc.fault_type}: {exc.description}", err=True)
    if as_json:
        click.echo(json.dumps({"result": "success" if not errors else "failure", "endpoint": env.endpoint,
                               "jobids": done}))
    elif done:
        click.echo(render.cancel_text(done), nl=False)
    if errors:
        if len(ids) == 1:
            common.fail(errors[0].fault_type, errors[0].description)
        raise SystemExit(1)
