"""``wmproxy submit``: glite-wms-job-submit.

Flow (``wmproxy-behaviour.md`` §11.2): [delegate with -a] → jobRegister →
getSandboxDestURI(job, "https") → PUT each local InputSandbox file → jobStart;
a single jobSubmit when there is nothing to upload.

Compound jobs (collections, DAGs, parametric jobs) are always registered first: the
input sandbox of all nodes is uploaded once into the parent's area, the file names
taken from the parent's REGISTERED JDL (:func:`wmproxy.cli.compound.upload_plan`),
then the parent is started. ``--register-only`` stops before jobStart and
``--start JOBID`` does only jobStart.
"""

from __future__ import annotations

from pathlib import Path

import click

from wmproxy.cli import common, jobids, render
from wmproxy.cli.compound import collection_jdl, is_compound, upload_plan
from wmproxy.cli.sandbox import local_input_files
from wmproxy.client import JobIds, WMProxyClient, WMProxyClientError
from wmproxy.client.transfer import upload_file


@click.command("submit")
@click.argument("jdl_file", metavar="[JDLFILE]", required=False, type=click.Path(dir_okay=False))
@click.option("-d", "--delegationid", "delegation_id", metavar="ID", help="Use this delegated proxy.")
@click.option("-a", "--autm-delegation", "automatic", is_flag=True, help="Delegate now, id chosen by the service.")
@click.option("-o", "--output", "jobid_file", metavar="FILE", help="Append the job id to FILE.")
@click.option("--nomsg", is_flag=True, help="Print only the job id.")
@click.option("--register-only", is_flag=True, help="Register and upload the input sandbox, do not start.")
@click.option("--start", "start_id", metavar="JOBID", help="Start a job registered with --register-only.")
@click.option("--collection", "collection_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Submit a collection of every *.jdl file in DIR.")
@common.common_options
@common.reports_errors
def submit(
    jdl_file: str | None,
    delegation_id: str | None,
    automatic: bool,
    jobid_file: str | None,
    nomsg: bool,
    register_only: bool,
    start_id: str | None,
    collection_dir: str | None,
    endpoint: str | None,
    as_json: bool,
) -> None:
    """Submit the job described by JDLFILE (or the collection in --collection DIR)."""
    if start_id:
        if jdl_file or collection_dir or register_only:
            raise click.UsageError("--start takes no JDLFILE, --collection or --register-only")
        _start_only(start_id, jobid_file, nomsg, endpoint, as_json)
        return
    if bool(delegation_id) == automatic:
        raise click.UsageError("exactly one of -d/--delegationid and -a/--autm-delegation is required")
    if bool(jdl_file) == bool(collection_dir):
        raise click.UsageError("give exactly one of JDLFILE and --collection DIR")
    if collection_dir:
        jdl, jdl_dir = collection_jdl(collection_dir), Path(collection_dir).absolute()
    elif jdl_file is not None:  # exactly one of the two, checked above
        try:
            jdl = Path(jdl_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise common.CliError("JDL", f"cannot read {jdl_file}: {exc.strerror}") from None
        jdl_dir = Path(jdl_file).absolute().parent
    compound = is_compound(jdl)
    files = [] if compound else local_input_files(jdl, jdl_dir)
    env = common.Environment.load(endpoint)
    quiet = nomsg or as_json
    if not quiet:
        click.echo(f"\nConnecting to the service {env.endpoint}\n")
    client = common.make_client(env)
    if automatic:
        delegation_id = client.delegate(None)
    did = delegation_id or ""
    progress = not quiet
    if compound:
        job = client.job_register(jdl, did)
        _upload_compound(client, job, jdl, jdl_dir, progress=progress)
        started = False
    elif files or register_only:
        if files:
            _check_size(client, files)
        job = client.job_register(jdl, did)
        _upload(client, job.id, files, progress=progress)
        started = False
    else:
        job = client.job_submit(jdl, did)
        started = True
    if not started and not register_only:
        try:
            client.job_start(job.id)
        except WMProxyClientError:
            if jobid_file:
                _save(jobid_file, job.id, failed=True)
            raise
    saved = _save(jobid_file, job.id) if jobid_file else None
    if as_json:
        click.echo(render.submit_json(job, env.endpoint))
    elif nomsg:
        click.echo(job.id)
    elif register_only:
        click.echo(render.register_text(job, saved), nl=False)
    else:
        click.echo(render.submit_text(job, saved), nl=False)


def _start_only(job_id: str, jobid_file: str | None, nomsg: bool, endpoint: str | None, as_json: bool) -> None:
    env = common.Environment.load(endpoint)
    client = common.make_client(env)
    client.job_start(job_id)
    saved = _save(jobid_file, job_id) if jobid_file else None
    if as_json:
        click.echo(render.submit_json(JobIds(job_id), env.endpoint))
    elif nomsg:
        click.echo(job_id)
    else:
        click.echo(render.start_text(job_id, saved), nl=False)


def _save(jobid_file: str, job_id: str, *, failed: bool = False) -> str:
    try:
        if failed:
            return str(jobids.append_failed_job_id(jobid_file, job_id))
        return str(jobids.append_job_id(jobid_file, job_id))
    except OSError as exc:
        raise common.CliError("Output", f"cannot write {jobid_file}: {exc.strerror}") from None


def _https_dest(client: WMProxyClient, job_id: str) -> str:
    dest = next((u for u in client.get_sandbox_dest_uri(job_id, "https") if u.startswith("https://")), None)
    if dest is None:
        raise common.CliError("InputSandbox", f"the service offers no https destination for {job_id}")
    return dest


def _check_size(client: WMProxyClient, files: list[Path]) -> None:
    total = sum(f.stat().st_size for f in files)
    limit = client.get_max_input_sandbox_size()
    if limit > 0 and total > limit:
        raise common.CliError(
            "InputSandbox", f"the input sandbox ({total} bytes) exceeds the service limit of {limit} bytes"
        )


def _put_all(client: WMProxyClient, dest: str, files: list[Path], *, progress: bool) -> None:
    with common.progress_bar(progress) as task:
        for f in files:
            upload_file(client.session, dest, f, progress=task(f.name, f.stat().st_size), timeout=client.timeout)


def _upload(client: WMProxyClient, job_id: str, files: list[Path], *, progress: bool) -> None:
    """Upload a simple job's local input files (the size check comes before jobRegister)."""
    if files:
        _put_all(client, _https_dest(client, job_id), files, progress=progress)


def _upload_compound(client: WMProxyClient, job: JobIds, jdl: str, jdl_dir: Path, *, progress: bool) -> None:
    """Upload once, into the parent's area, every input file its REGISTERED JDL lists there."""
    registered = client.get_jdl(job.id, "REGISTERED")
    dest = _https_dest(client, job.id)
    files = upload_plan(registered, dest, jdl, jdl_dir)
    if files:
        _check_size(client, files)
        _put_all(client, dest, files, progress=progress)

