"""``wmproxy list-match``: glite-wms-job-list-match (jobListMatch)."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from wmproxy.cli import common, jdlprep, render
from wmproxy.cli.clientconf import jdl_defaults
from wmproxy.cli.compound import is_compound
from wmproxy.cli.errors import read_text_file, unreadable
from wmproxy.cli.results import confirm_overwrite, save_text, write_result


@click.command("list-match")
@click.argument("jdl_file", metavar="JDLFILE", type=click.Path(dir_okay=False))
@click.option("-d", "--delegationid", "delegation_id", metavar="ID", help="Use this delegated proxy.")
@click.option("-a", "--autm-delegation", "automatic", is_flag=True, help="Delegate now under a new id.")
@click.option("--rank", is_flag=True, help="Show the rank of each CE.")
@click.option("-o", "--output", "output_file", metavar="FILE",
              help="Write the CE list to FILE instead of printing it.")
@common.common_options
@common.reports_errors
def list_match(
    jdl_file: str,
    delegation_id: str | None,
    automatic: bool,
    rank: bool,
    output_file: str | None,
    endpoint: str | None,
    as_json: bool,
) -> None:
    """List the computing elements matching the job in JDLFILE, best rank first."""
    if bool(delegation_id) == automatic:
        raise click.UsageError("exactly one of -d/--delegationid and -a/--autm-delegation is required")
    confirm_overwrite(output_file)  # gLite asks before matching, and again when it saves
    try:
        jdl = read_text_file(jdl_file)
    except OSError as exc:
        raise common.CliError("JDL", f"cannot read {jdl_file}: {unreadable(exc)}") from None
    env = common.Environment.load(endpoint, jdl=jdl)  # its VirtualOrganisation may choose the configuration
    jdl = jdlprep.prepare(jdl, jdl_file, Path(jdl_file).absolute().parent,
                          defaults=jdl_defaults(env.config, myproxy=False))
    if is_compound(jdl):
        raise common.CliError(
            "Not supported Type", "DAG, collection and parametric jobs are not supported for list match"
        )
    client = common.make_client(env)
    if automatic:
        # jobListMatch has no default delegation id (§3.7): delegate under a fresh one
        delegation_id = client.delegate(f"listmatch-{secrets.token_hex(8)}")
    matches = client.job_list_match(jdl, delegation_id or "")
    if as_json:
        # saved to -o FILE instead of printed, as every verb's -o (docs/cli.md)
        write_result(render.list_match_json(matches, rank) + "\n", output_file)
        return
    text = render.list_match_text(matches, rank)
    if not output_file or not save_text(text, output_file):
        common.echo(text, nl=False)
        return
    common.echo(
        f"\n{render.stripe('wmproxy list-match success', 84)}\n\n"
        "Computing Element(s) matching your job requirements have been stored in the file:\n"
        f"{Path(output_file).absolute()}\n\n{'=' * 84}\n"
    )
