"""``wmproxy delegate-proxy``: glite-wms-job-delegate-proxy."""

from __future__ import annotations

import json
import os
import time

import click

from wmproxy.cli import common, render
from wmproxy.cli.results import save_text

#: gLite delegateproxy.cpp's month names (``monthStr``), as its ``-o`` file writes them
_MONTHS = ("Jan", "Feb", "March", "Apr", "May", "June", "July", "Aug", "Sept", "Oct", "Nov", "Dec")


@click.command("delegate-proxy")
@click.option("-d", "--delegationid", "delegation_id", metavar="ID", help="Delegation identifier.")
@click.option("-a", "--autm-delegation", "automatic", is_flag=True, help="Let the service choose the identifier.")
@click.option("-o", "--output", "output_file", metavar="FILE",
              help="Also write the endpoint and the delegation identifier to FILE (gLite's lines).")
@common.common_options
@common.reports_errors
def delegate_proxy(delegation_id: str | None, automatic: bool, output_file: str | None, endpoint: str | None,
                   as_json: bool) -> None:
    """Delegate the user proxy to the WMProxy (getProxyReq, sign, putProxy)."""
    if bool(delegation_id) == automatic:
        raise click.UsageError("exactly one of -d/--delegationid and -a/--autm-delegation is required")
    env = common.Environment.load(endpoint)
    client = common.make_client(env, min_lifetime=env.config.min_proxy_lifetime, short_is_fatal=False)
    used = client.delegate(None if automatic else delegation_id)
    if automatic:
        used = client.default_delegation_id() or used
    saved = _save_info(output_file, client.endpoint, used) if output_file else None
    if as_json:
        click.echo(json.dumps({"result": "success", "endpoint": client.endpoint, "delegationid": used}))
    else:
        common.echo(render.delegate_text(client.endpoint, used, saved), nl=False)


def info_text(endpoint: str, delegation_id: str, now: float | None = None) -> str:
    """What gLite's ``DelegateProxy::infoToFile`` writes to ``-o FILE``: ``<command> (<date>)``,
    a stripe, ``WMProxy: <endpoint>`` and ``delegation ID: <id>`` (``delegation ID was
    automatically generated`` when the id is not known), and the empty line of ``toFile``. Scripts
    read them with ``awk '/WMProxy/ {print $NF}'`` and ``awk '/delegation/ {print $NF}'``."""
    t = time.localtime(time.time() if now is None else now)
    date = f"{t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year}, {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} "
    ident = f"\ndelegation ID: {delegation_id}" if delegation_id else "\ndelegation ID was automatically generated"
    return f"wmproxy delegate-proxy ({date})\n{'=' * 73}\nWMProxy: {endpoint}{ident}\n\n"


def _save_info(output_file: str, endpoint: str, delegation_id: str) -> str | None:
    """Write :func:`info_text` to ``output_file`` (:func:`wmproxy.cli.results.save_text`). The
    proxy is delegated: a file that cannot be written is a warning, as in gLite.

    Returns:
        The file's absolute path, or None when it was not written.
    """
    try:
        if not save_text(info_text(endpoint, delegation_id), output_file):
            return None
    except common.CliError as exc:
        common.echo(f"Warning - unable to write the delegation operation result: {exc.description}", err=True)
        return None
    return os.path.abspath(output_file)
