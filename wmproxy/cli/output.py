"""``wmproxy output``: glite-wms-job-output (getOutputFileList, HTTPS GET each file, jobPurge)."""

from __future__ import annotations

import getpass
import json
import os

import click

from wmproxy.cli import common, render
from wmproxy.client import WMProxyClientError
from wmproxy.client.transfer import download_file


def default_dir(job_id: str) -> str:
    """gLite default: ``/tmp/<user>_<unique part of the job id>``."""
    unique = job_id.rstrip("/").rsplit("/", 1)[-1]
    return os.path.join("/tmp", f"{getpass.getuser()}_{unique}")


@click.command("output")
@click.argument("job_id", metavar="JOBID")
@click.option("--dir", "directory", metavar="DIR", help="Where to store the files (default /tmp/<user>_<id>).")
@click.option("-n", "--nopurge", is_flag=True, help="Do not purge the job after retrieval.")
@common.common_options
@common.reports_errors
def output(job_id: str, directory: str | None, nopurge: bool, endpoint: str | None, as_json: bool) -> None:
    """Retrieve the output sandbox of JOBID."""
    client = common.make_client(common.Environment.load(endpoint))
    target = os.path.abspath(directory or default_dir(job_id))
    files = client.get_output_file_list(job_id, "https")
    stored = []
    with common.progress_bar(not as_json) as task:
        for f in files:
            label = f.uri.rsplit("/", 1)[-1]
            path = download_file(client.session, f.uri, target, progress=task(label, f.size), timeout=client.timeout)
            stored.append(str(path))
    if not nopurge:
        try:
            client.job_purge(job_id)
        except WMProxyClientError as exc:
            click.echo(f"Warning - JobPurging not allowed ({exc.fault_type}: {exc.description})", err=True)
    if as_json:
        click.echo(json.dumps({"result": "success", "jobid": job_id, "dir": target, "files": stored}))
    else:
        click.echo(render.output_text(job_id, target, bool(stored)), nl=False)
