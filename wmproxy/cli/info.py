"""``wmproxy info``: glite-wms-job-info (getJDL, getJobProxyInfo, getDelegatedProxyInfo).

``-p`` also shows the MyProxy renewal of the job's proxy (the getProxyRenewalInfo
extension, issue 4) after the gLite proxy block; a service without the extension gives
the gLite output alone.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from wmproxy.cli import common, render
from wmproxy.cli.results import result_file_option
from wmproxy.client import RenewalInfo, WMProxyClient, WMProxyClientError
from wmproxy.client.client import JdlKind


def renewal_of(client: WMProxyClient, job: str) -> RenewalInfo | None:
    """The renewal state of the job's proxy, or None when the service cannot tell (an older
    wmproxy or a gLite WMProxy without getProxyRenewalInfo, or any failure of that one
    call: the proxy information already shown stands on its own)."""
    try:
        return client.get_proxy_renewal_info(job)
    except WMProxyClientError:
        return None


def _utc_text(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def renewal_lines(renewal: RenewalInfo) -> str:
    """``Proxy renewal: <server> | not registered`` and ``Last renewal: <UTC time> (<result>)``
    or ``Last renewal: never`` (plus the error of a failed attempt)."""
    if not renewal.registered:
        return "Proxy renewal: not registered\n"
    out = f"Proxy renewal: {renewal.myproxy_server or 'registered'}\n"
    if renewal.last_attempt is None:
        return out + "Last renewal: never\n"
    out += f"Last renewal: {_utc_text(renewal.last_attempt)} ({renewal.last_result or 'unknown'})\n"
    if renewal.last_error and renewal.last_result != "renewed":
        out += f"Renewal error: {' '.join(renewal.last_error.split())}\n"
    return out


def renewal_dict(renewal: RenewalInfo) -> dict[str, Any]:
    """The renewal state as JSON-ready values (times in epoch seconds, as ``proxy``), under lower
    case keys (docs/cli-json.md)."""
    end = renewal.proxy_end
    return {
        "myproxy_server": renewal.myproxy_server, "registered": renewal.registered,
        "last_attempt": None if renewal.last_attempt is None else int(renewal.last_attempt.timestamp()),
        "last_result": renewal.last_result, "last_error": renewal.last_error, "renewals": renewal.renewals,
        "proxy_end_time": None if end is None else int(end.timestamp()),
    }


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
@result_file_option
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
            click.echo(json.dumps({"result": "success", "endpoint": client.endpoint, "delegationid": delegation_id,
                                   "proxy": render.proxy_info_dict(details)}))
        else:
            header = f"Your proxy delegated to the endpoint {client.endpoint}\nwith delegationID {delegation_id}: \n"
            common.echo(render.info_text(header, render.proxy_info_lines(details)), nl=False)
        return
    job = common.one_job_id(job_id, input_file)
    client = common.make_client(env)
    if proxy:
        details = client.get_job_proxy_info(job)
        renewal = renewal_of(client, job)
        if as_json:
            result = {"result": "success", "jobid": job, "proxy": render.proxy_info_dict(details)}
            if renewal is not None:
                result["renewal"] = renewal_dict(renewal)
            click.echo(json.dumps(result))
        else:
            header = f"Your proxy delegated to the endpoint {client.endpoint}\n for the job {job} :\n"
            body = render.proxy_info_lines(details)
            if renewal is not None:
                body += "\n" + renewal_lines(renewal)
            common.echo(render.info_text(header, body), nl=False)
        return
    kind: JdlKind = "REGISTERED" if registered else "ORIGINAL"
    jdl = client.get_jdl(job, kind)
    if as_json:
        click.echo(json.dumps({"result": "success", "jobid": job, "type": kind, "jdl": jdl}))
    else:
        header = f"The {'registered' if registered else 'original'} JDL\n for the job {job} :\n"
        common.echo(render.info_text(header, jdl.rstrip("\n") + "\n"), nl=False)
