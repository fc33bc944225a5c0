"""``wmproxy perusal``: glite-wms-job-perusal (enableFilePerusal, getPerusalFiles).

``--set -f FILE...`` names the files to peek at while the job runs, ``--unset`` stops
it, ``--get -f FILE`` downloads the chunks merged since the last call (every chunk with
``--all``) into ``--dir`` and prints them unless ``--nodisplay``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from wmproxy.cli import common, render
from wmproxy.cli.errors import unreadable
from wmproxy.cli.output import default_dir, own_default_dir, private_files
from wmproxy.client.transfer import download_file


def _file_names(files: tuple[str, ...], names_file: str | None) -> list[str]:
    names = list(files)
    if names_file:
        try:
            text = Path(names_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise common.CliError("Input", f"cannot read {names_file}: {unreadable(exc)}") from None
        names += [n.strip() for n in text.splitlines() if n.strip() and not n.strip().startswith("#")]
    return names


@click.command("perusal")
@click.argument("job_id", metavar="[JOBID]", required=False)
@click.option("--set", "mode", flag_value="set", help="Enable perusal of the -f files (enableFilePerusal).")
@click.option("--get", "mode", flag_value="get", help="Retrieve the -f file's new chunks (getPerusalFiles).")
@click.option("--unset", "mode", flag_value="unset", help="Disable perusal.")
@click.option("-f", "--filename", "files", metavar="FILE", multiple=True, help="A job output file (repeatable).")
@click.option("--input-file", "names_file", metavar="FILE", help="Read file names from FILE, one a line.")
@click.option("--all", "all_chunks", is_flag=True, help="With --get: every chunk, not only the new ones.")
@click.option("--dir", "directory", metavar="DIR", help="With --get: where to store the chunks.")
@click.option("--nodisplay", is_flag=True, help="With --get: do not print the retrieved content.")
@click.option("-i", "--input", "input_file", metavar="FILE", help="Read the job id from a submit -o file.")
@common.common_options
@common.reports_errors
def perusal(
    job_id: str | None,
    mode: str | None,
    files: tuple[str, ...],
    names_file: str | None,
    all_chunks: bool,
    directory: str | None,
    nodisplay: bool,
    input_file: str | None,
    endpoint: str | None,
    as_json: bool,
) -> None:
    """Peek at the output files of a running job."""
    if mode is None:
        raise click.UsageError("give one of --set, --get, --unset")
    names = _file_names(files, names_file)
    if mode == "unset" and names:
        raise click.UsageError("--unset takes no -f/--filename")
    if mode != "unset" and not names:
        raise click.UsageError(f"--{mode} needs at least one -f/--filename")
    if mode == "get" and len(names) != 1:
        raise click.UsageError("--get takes exactly one -f/--filename")
    job = common.one_job_id(job_id, input_file)
    env = common.Environment.load(endpoint)
    client = common.make_client(env)
    if mode in ("set", "unset"):
        client.enable_file_perusal(job, names if mode == "set" else [])
        if as_json:
            click.echo(json.dumps({"result": "success", "jobid": job, "perusal": mode, "files": names}))
        else:
            listed = "".join(f" - {n}\n" for n in names)
            body = (f"File perusal has been successfully enabled for the job:\n{job}\nfor the file(s):\n{listed}"
                    if mode == "set" else f"File perusal has been successfully disabled for the job:\n{job}\n")
            common.echo(f"\n{render.stripe('wmproxy perusal Success')}\n\n{body}\n{render.RULE}\n", nl=False)
        return
    name = names[0]
    uris = client.get_perusal_files(job, name, all_chunks, "https")
    target = os.path.abspath(directory or default_dir(job))
    stored: list[Path] = []
    if uris:
        if directory is None:
            own_default_dir(target)
        with private_files(directory is None), common.progress_bar(not as_json) as task:
            for uri in uris:
                label = uri.rsplit("/", 1)[-1]
                stored.append(download_file(client.session, uri, target, progress=task(label, 0),
                                            timeout=client.timeout))
    if as_json:
        click.echo(json.dumps({"result": "success", "jobid": job, "file": name, "dir": target,
                               "chunks": [str(p) for p in stored]}))
        return
    if not stored:
        common.echo(f"\n{render.stripe('wmproxy perusal Success')}\n\n"
                   f"No new chunks of the file {name} to be retrieved for the job:\n{job}\n\n{render.RULE}\n", nl=False)
        return
    listed = "".join(f" - {p}\n" for p in stored)
    common.echo(f"\n{render.stripe('wmproxy perusal Success')}\n\n"
               f"The retrieved chunks of the file {name} of the job:\n{job}\n"
               f"have been stored in the directory:\n{target}\n{listed}\n{render.RULE}\n", nl=False)
    if not nodisplay:
        for path in stored:
            click.echo(path.read_text(encoding="utf-8", errors="replace"), nl=False)
