"""``wmproxy info``: glite-wms-job-info (getJDL, getJobProxyInfo, getDelegatedProxyInfo)."""

from __future__ import annotations

import json

import click

from wmproxy.cli import common, render


@click.command("info")
@click.argument("job_id", metavar="[JOBID]", required=False)
@click.option("--jdl", "registered", is_flag=True, help="The registered JDL (getJDL REGISTERED).")
@click.option("-j", "--jdl-original", "original", is_flag=True, help="The JDL as submitted (getJDL ORIGINAL).")
@click.option("-p", "--proxy", "proxy", is_flag=True, help="The proxy the job runs with (getJobProxyInfo).")
@click.option("-d", "--delegationid", "delegation_id", metavar="ID",
              help="A delegated proxy instead of a job (getDelegatedProxyInfo).")
@click.option("-i", "--input", "input_file", metavar="FILE", help="Read the job id from a submit -o file.")
@common.common_options
@common.reports_errors
def info(
    job_id: str | None,
    registered: bool,
    original: bool,
    proxy: bool,
    delegation_id: str | None,
    input_file: str | None,
    endpoint: str | None,
    as_json: bool,
) -> None:
    """Show a job's JDL or proxy, or a delegated proxy (-d ID)."""
    chosen = sum((registered, original, proxy, bool(delegation_id)))
    if chosen != 1:
        raise click.UsageError("give exactly one of --jdl, -j/--jdl-original, -p/--proxy, -d/--delegationid")
    env = common.Environment.load(endpoint)
    if delegation_id:
        if job_id or input_file:
            raise click.UsageError("-d/--delegationid takes no JOBID or -i/--input")
        client = common.make_client(env)
        details = client.get_delegated_proxy_info(delegation_id)
        if as_json:
            click.echo(json.dumps({"result": "success", "endpoint": env.endpoint, "delegationid": delegation_id,
                                   "proxy": render.proxy_info_dict(details)}))
        else:
            header = f"Your proxy delegated to the endpoint {env.endpoint}\nwith delegationID {delegation_id}: \n"
            click.echo(render.info_text(header, render.proxy_info_lines(details)), nl=False)
        return
    job = common.one_job_id(job_id, input_file)
    client = common.make_client(env)
    if proxy:
        details = client.get_job_proxy_info(job)
        if as_json:
            click.echo(json.dumps({"result": "success", "jobid": job, "proxy": render.proxy_info_dict(details)}))
        else:
            header = f"Your proxy delegated to the endpoint {env.endpoint}\n for the job {job} :\n"
            click.echo(render.info_text(header, render.proxy_info_lines(details)), nl=False)
        return
    kind = "REGISTERED" if registered else "ORIGINAL"
    jdl = client.get_jdl(job, kind)
    if as_json:
        click.echo(json.dumps({"result": "success", "jobid": job, "type": kind, "jdl": jdl}))
    else:
        header = f"The {'registered' if registered else 'original'} JDL\n for the job {job} :\n"
        click.echo(render.info_text(header, jdl.rstrip("\n") + "\n"), nl=False)
