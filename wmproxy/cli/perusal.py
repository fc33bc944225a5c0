"""``wmproxy perusal``: glite-wms-job-perusal (enableFilePerusal, getPerusalFiles).

``--set -f FILE...`` names the files to peek at while the job runs, ``--unset`` stops
it, ``--get -f FILE`` downloads the chunks merged since the last call (every chunk with
``--all``) into ``--dir`` and prints them unless ``--nodisplay``.

The listing gives no sizes: ``--get`` stores at most ``--max-size`` bytes (all its chunks
together, :data:`MAX_SIZE` by default): a chunk that would pass it is refused, nothing of it is
stored, and the error says how to get it. The chunks are written through one descriptor of the
directory (:class:`~wmproxy.client.transfer.Directory`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from urllib.parse import unquote, urlsplit

import click

from wmproxy.cli import common, render
from wmproxy.cli.clientconf import output_storage
from wmproxy.cli.errors import read_text_file, unreadable
from wmproxy.cli.output import default_dir, own_default_dir, private_files
from wmproxy.cli.results import append_text
from wmproxy.client import WMProxyClient, WMProxyClientError
from wmproxy.client.transfer import Directory, Progress, TransferLimitError, download_file

#: bytes ``perusal --get`` stores by default, all its chunks together: the service's default bound
#: of a job's output sandbox (``[limits] max_output_sandbox_size``), which its perusal chunks
#: count against
MAX_SIZE = 100_000_000


def _file_names(files: tuple[str, ...], names_file: str | None) -> list[str]:
    names = list(files)
    if names_file:
        try:
            text = read_text_file(names_file)  # bounded, a regular file only
        except OSError as exc:
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
@click.option("--max-size", type=click.IntRange(min=0), default=MAX_SIZE, show_default=True, metavar="BYTES",
              help="With --get: the most bytes to store, all chunks together (0: no bound).")
@click.option("-i", "--input", "input_file", metavar="FILE", help="Read the job id from a submit -o file.")
@click.option("-o", "--output", "output_file", metavar="FILE",
              help="Append the files perused (--set) or the chunks stored (--get) to FILE.")
@click.option("--proto", default="https", show_default=True, type=click.Choice(["https"]),
              help="Transfer protocol of --get (this service offers https only).")
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
    max_size: int,
    input_file: str | None,
    output_file: str | None,
    proto: str,
    endpoint: str | None,
    as_json: bool,
) -> None:
    """Peek at the output files of a running job.

    -o FILE appends, as glite-wms-job-perusal saves them, a header line and the names of the
    files perused (--set) or the paths of the chunks stored (--get) to FILE; --unset saves
    nothing.
    """
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
        if mode == "set" and output_file:
            _save_list(output_file, f"###File perusal enabled for the job {job}###", names)
        if as_json:
            click.echo(json.dumps({"result": "success", "jobid": job, "perusal": mode, "files": names}))
        else:
            listed = "".join(f" - {n}\n" for n in names)
            body = (f"File perusal has been successfully enabled for the job:\n{job}\nfor the file(s):\n{listed}"
                    if mode == "set" else f"File perusal has been successfully disabled for the job:\n{job}\n")
            common.echo(f"\n{render.stripe('wmproxy perusal Success')}\n\n{body}\n{render.RULE}\n", nl=False)
        return
    name = names[0]
    uris = client.get_perusal_files(job, name, all_chunks, proto)
    target = os.path.abspath(directory or default_dir(job, "jobPerusal", output_storage(env.config)))
    if not uris:
        _report(job, name, target, [], None, as_json, nodisplay)
        return
    uris, twice = _once(uris)
    with own_default_dir(target) if directory is None else Directory(target) as folder:
        with private_files(directory is None), common.progress_bar(not as_json) as task:
            stored = _fetch(client, uris, folder, task, max_size, all_chunks)
        if output_file and stored:
            _save_list(output_file, f"###Perusal: file(s) retrieved for the job {job}###", [str(p) for p in stored])
        _report(job, name, target, stored, folder, as_json, nodisplay)
    for uri in twice:
        common.echo(render.error_line(
            "TransferError", f"the listing of chunks names {_chunk_name(uri)} twice: {uri} is not fetched (only "
            "the first chunk of a name is: it would replace that one)", job), err=True)
    if twice:
        raise SystemExit(1)


def _save_list(output_file: str, header: str, items: list[str]) -> None:
    """Append ``header`` and ``items``, one a line, to ``output_file`` (``-o``) and say where on
    stderr (glite-wms-job-perusal ``--output``: ``Utils::saveListToFile``).

    Raises:
        CliError: ``Output`` when the file cannot be written.
    """
    append_text("".join(f"{line}\n" for line in [header, *items]), output_file)
    common.echo(f"The list has been saved in the file {os.path.abspath(output_file)}", err=True)


def _chunk_name(uri: str) -> str:
    """The local name of a chunk URI: its percent-decoded last path segment (as
    :func:`~wmproxy.client.transfer.download_file` names it)."""
    return unquote(urlsplit(uri).path.rsplit("/", 1)[-1])


def _once(uris: list[str]) -> tuple[list[str], list[str]]:
    """The chunk URIs to fetch, the first of each local name, and those refused for a name listed
    before (fetched, it would replace the earlier chunk, be shown twice and count twice against
    ``--max-size``), as ``output`` refuses a file listed twice."""
    seen: set[str] = set()
    first: list[str] = []
    twice: list[str] = []
    for uri in uris:
        name = _chunk_name(uri)
        (twice if name in seen else first).append(uri)
        seen.add(name)
    return first, twice


def _fetch(client: WMProxyClient, uris: list[str], folder: Directory, task: Callable[[str, int], Progress],
           max_size: int, all_chunks: bool) -> list[Path]:
    """Download the chunks ``uris`` into ``folder``, at most ``max_size`` bytes in all (0: no bound).

    Raises:
        WMProxyClientError: a chunk could not be stored (one passing ``max_size``: nothing of it).
    """
    stored: list[Path] = []
    left = max_size
    with suppress(OSError):  # opened before any chunk is fetched; one it cannot be is the chunk's error
        folder.fileno()
    for uri in uris:
        advance = task(uri.rsplit("/", 1)[-1], 0)
        received = 0

        def counted(n: int, advance: Progress = advance) -> None:
            nonlocal received
            received += n
            advance(n)

        try:
            stored.append(download_file(client.session, uri, folder, progress=counted, timeout=client.timeout,
                                        limit=left if max_size else None))
        except TransferLimitError as exc:
            raise _over(exc, max_size, stored, all_chunks) from None
        left -= received
    return stored


def _report(job: str, name: str, target: str, stored: list[Path], folder: Directory | None, as_json: bool,
            nodisplay: bool) -> None:
    """The outcome of ``--get``; the chunks' content (read through ``folder``) unless ``nodisplay``."""
    if as_json:
        click.echo(json.dumps({"result": "success", "jobid": job, "file": name, "dir": target,
                               "chunks": [str(p) for p in stored]}))
        return
    if not stored or folder is None:
        common.echo(f"\n{render.stripe('wmproxy perusal Success')}\n\n"
                   f"No new chunks of the file {name} to be retrieved for the job:\n{job}\n\n{render.RULE}\n", nl=False)
        return
    listed = "".join(f" - {p}\n" for p in stored)
    common.echo(f"\n{render.stripe('wmproxy perusal Success')}\n\n"
               f"The retrieved chunks of the file {name} of the job:\n{job}\n"
               f"have been stored in the directory:\n{target}\n{listed}\n{render.RULE}\n", nl=False)
    if not nodisplay:
        for path in stored:
            click.echo(_read(folder, path.name), nl=False)


def _read(folder: Directory, name: str) -> str:
    """The text of the file ``name`` of ``folder`` (as ``Path.read_text`` reads it, undecodable
    bytes replaced), read through the directory's descriptor (never through a link).

    Raises:
        WMProxyClientError: ``TransferError``, it cannot be read.
    """
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder.fileno())
        with os.fdopen(fd, encoding="utf-8", errors="replace") as chunk:
            return chunk.read()
    except OSError as exc:
        raise WMProxyClientError("TransferError", f"cannot read {os.path.join(folder.path, name)}: {exc.strerror}",
                                 None, "download") from None


def _over(exc: TransferLimitError, max_size: int, stored: list[Path], all_chunks: bool) -> TransferLimitError:
    """The error of a chunk that would pass ``--max-size``: what was stored, how to get the rest."""
    kept = f"the {len(stored)} chunk(s) before it are stored; " if stored else ""
    again = "" if all_chunks else " --all"
    return TransferLimitError(
        exc.fault_type, f"{exc.description} (--max-size {max_size} for all the chunks of this --get; {kept}the "
        f"service keeps the chunks: get them with a larger --max-size{again})", exc.error_code, exc.method)
