"""``wmproxy submit``: glite-wms-job-submit.

Flow (``wmproxy-behaviour.md`` §11.2): [delegate with -a] → jobRegister →
getSandboxDestURI(job, "https") → PUT each local InputSandbox file → jobStart;
a single jobSubmit when there is nothing to upload.
"""

from __future__ import annotations

from pathlib import Path

import click

from wmproxy.cli import common, jobids, render
from wmproxy.cli.sandbox import local_input_files
from wmproxy.client import JobIds, WMProxyClient
from wmproxy.client.transfer import upload_file


@click.command("submit")
@click.argument("jdl_file", metavar="JDLFILE", type=click.Path(dir_okay=False))
@click.option("-d", "--delegationid", "delegation_id", metavar="ID", help="Use this delegated proxy.")
@click.option("-a", "--autm-delegation", "automatic", is_flag=True, help="Delegate now, id chosen by the service.")
@click.option("-o", "--output", "jobid_file", metavar="FILE", help="Append the job id to FILE.")
@click.option("--nomsg", is_flag=True, help="Print only the job id.")
@common.common_options
@common.reports_errors
def submit(
    jdl_file: str,
    delegation_id: str | None,
    automatic: bool,
    jobid_file: str | None,
    nomsg: bool,
    endpoint: str | None,
    as_json: bool,
) -> None:
    """Submit the job described by JDLFILE."""
    if bool(delegation_id) == automatic:
        raise click.UsageError("exactly one of -d/--delegationid and -a/--autm-delegation is required")
    try:
        jdl = Path(jdl_file).read_text(encoding="utf-8")
    except OSError as exc:
        raise common.CliError("JDL", f"cannot read {jdl_file}: {exc.strerror}") from None
    files = local_input_files(jdl, Path(jdl_file).absolute().parent)
    env = common.Environment.load(endpoint)
    quiet = nomsg or as_json
    if not quiet:
        click.echo(f"\nConnecting to the service {env.endpoint}\n")
    client = common.make_client(env)
    if automatic:
        delegation_id = client.delegate(None)
    job = _submit(client, jdl, delegation_id or "", files, progress=not quiet)
    saved = _save(jobid_file, job.id) if jobid_file else None
    if as_json:
        click.echo(render.submit_json(job, env.endpoint))
    elif nomsg:
        click.echo(job.id)
    else:
        click.echo(render.submit_text(job, saved), nl=False)


def _save(jobid_file: str, job_id: str) -> str:
    try:
        return str(jobids.append_job_id(jobid_file, job_id))
    except OSError as exc:
        raise common.CliError("Output", f"cannot write {jobid_file}: {exc.strerror}") from None


def _submit(client: WMProxyClient, jdl: str, delegation_id: str, files: list[Path], *, progress: bool) -> JobIds:
    """Register, upload and start, or jobSubmit when ``files`` is empty."""
    if not files:
        return client.job_submit(jdl, delegation_id)
    total = sum(f.stat().st_size for f in files)
    limit = client.get_max_input_sandbox_size()
    if limit > 0 and total > limit:
        raise common.CliError(
            "InputSandbox", f"the input sandbox ({total} bytes) exceeds the service limit of {limit} bytes"
        )
    job = client.job_register(jdl, delegation_id)
    dest = next((u for u in client.get_sandbox_dest_uri(job.id, "https") if u.startswith("https://")), None)
    if dest is None:
        raise common.CliError("InputSandbox", f"the service offers no https destination for {job.id}")
    with common.progress_bar(progress) as task:
        for f in files:
            upload_file(client.session, dest, f, progress=task(f.name, f.stat().st_size),
                        timeout=client.timeout)
    client.job_start(job.id)
    return job
