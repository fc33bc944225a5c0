"""``wmproxy output``: glite-wms-job-output (getOutputFileList, HTTPS GET each file, jobPurge).

A compound job (getOutputFileList refuses the parent; getJobStatus lists its nodes) is
retrieved node by node into ``<dir>/<NodeName>/``; then the parent is purged, which
purges every node.
"""

from __future__ import annotations

import getpass
import json
import os
from typing import Any

import click

from wmproxy.cli import common, render
from wmproxy.cli.compound import node_names
from wmproxy.client import WMProxyClient, WMProxyClientError
from wmproxy.client.transfer import download_file


def default_dir(job_id: str) -> str:
    """gLite default: ``/tmp/<user>_<unique part of the job id>``."""
    unique = job_id.rstrip("/").rsplit("/", 1)[-1]
    return os.path.join("/tmp", f"{getpass.getuser()}_{unique}")  # noqa: S108 - gLite's documented default


@click.command("output")
@click.argument("job_ids", metavar="JOBID...", nargs=-1)
@click.option("-i", "--input", "input_file", metavar="FILE", help="Read job ids from a submit -o file.")
@click.option("--dir", "directory", metavar="DIR", help="Where to store the files (default /tmp/<user>_<id>).")
@click.option("-n", "--nopurge", is_flag=True, help="Do not purge the job after retrieval.")
@common.common_options
@common.reports_errors
def output(job_ids: tuple[str, ...], input_file: str | None, directory: str | None, nopurge: bool,
           endpoint: str | None, as_json: bool) -> None:
    """Retrieve the output sandbox of JOBID (of every node for a compound job)."""
    from wmproxy.cli.status import _job_ids

    ids = _job_ids(job_ids, input_file)
    client = common.make_client(common.Environment.load(endpoint))
    results = []
    for job_id in ids:
        if directory and len(ids) == 1:
            target = os.path.abspath(directory)
        elif directory:
            target = os.path.join(os.path.abspath(directory), os.path.basename(default_dir(job_id)))
        else:
            target = default_dir(job_id)
        results.append(_retrieve(client, job_id, target, nopurge=nopurge, progress=not as_json, as_json=as_json))
    if as_json:
        click.echo(json.dumps(results[0] if len(results) == 1 else {"result": "success", "jobs": results}))


def _download_all(client: WMProxyClient, job_id: str, target: str, progress: bool) -> list[str]:
    files = client.get_output_file_list(job_id, "https")
    stored = []
    with common.progress_bar(progress) as task:
        for f in files:
            label = f.uri.rsplit("/", 1)[-1]
            path = download_file(client.session, f.uri, target, progress=task(label, f.size), timeout=client.timeout)
            stored.append(str(path))
    return stored


def _retrieve(client: WMProxyClient, job_id: str, target: str, *, nopurge: bool, progress: bool,
              as_json: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"result": "success", "jobid": job_id, "dir": target}
    try:
        stored = _download_all(client, job_id, target, progress)
        children: tuple[Any, ...] = ()
    except WMProxyClientError as exc:
        # a DAG/collection parent has no output of its own (OperationNotAllowedFault)
        children = client.get_job_status(job_id).children if exc.fault_type == "OperationNotAllowedFault" else ()
        if not children:
            raise
    if children:
        child_ids = [c.job_id for c in children]
        names = node_names(job_id, client.get_jdl(job_id, "ORIGINAL"), child_ids)
        nodes: dict[str, Any] = {}
        shown = []
        for child_id in child_ids:
            node_dir = os.path.join(target, names[child_id])
            try:
                node_files = _download_all(client, child_id, node_dir, progress)
            except WMProxyClientError as exc:
                click.echo(f"Warning - node {names[child_id]}: {exc.fault_type}: {exc.description}", err=True)
                node_files = []
            nodes[names[child_id]] = {"jobid": child_id, "dir": node_dir, "files": node_files}
            shown.append((names[child_id], child_id, node_dir))
        result["nodes"] = nodes
        text = render.output_nodes_text(job_id, target, shown)
    else:
        result["files"] = stored
        text = render.output_text(job_id, target, bool(stored))
    if not nopurge:
        try:
            client.job_purge(job_id)
        except WMProxyClientError as exc:
            click.echo(f"Warning - JobPurging not allowed ({exc.fault_type}: {exc.description})", err=True)
    if not as_json:
        click.echo(text, nl=False)
    return result
