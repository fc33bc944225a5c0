"""``wmproxy delegate-proxy``: glite-wms-job-delegate-proxy."""

from __future__ import annotations

import json

import click

from wmproxy.cli import common, render
from wmproxy.cli.results import result_file_option


@click.command("delegate-proxy")
@click.option("-d", "--delegationid", "delegation_id", metavar="ID", help="Delegation identifier.")
@click.option("-a", "--autm-delegation", "automatic", is_flag=True, help="Let the service choose the identifier.")
@common.common_options
@common.reports_errors
@result_file_option
def delegate_proxy(delegation_id: str | None, automatic: bool, endpoint: str | None, as_json: bool) -> None:
    """Delegate the user proxy to the WMProxy (getProxyReq, sign, putProxy)."""
    if bool(delegation_id) == automatic:
        raise click.UsageError("exactly one of -d/--delegationid and -a/--autm-delegation is required")
    env = common.Environment.load(endpoint)
    client = common.make_client(env, min_lifetime=env.config.min_proxy_lifetime, short_is_fatal=False)
    used = client.delegate(None if automatic else delegation_id)
    if automatic:
        used = client.default_delegation_id() or used
    if as_json:
        click.echo(json.dumps({"result": "success", "endpoint": client.endpoint, "delegationid": used}))
    else:
        common.echo(render.delegate_text(client.endpoint, used), nl=False)
