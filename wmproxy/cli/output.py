"""``wmproxy output``: glite-wms-job-output (getOutputFileList, HTTPS GET each file, jobPurge).

A compound job (getOutputFileList refuses the parent; getJobStatus lists its nodes) is
retrieved node by node into ``<dir>/<NodeName>/``; then the parent is purged, which
purges every node.

Several jobs (arguments or ``-i FILE``) are retrieved one after the other: a job that
fails is reported and the others are still retrieved; the exit status is 1 when any
failed. Each file is fetched on its own: a file that cannot be fetched or written, or whose
name (or node name) given by the server is not a plain name inside the directory, is reported
and the others are still fetched; a job with such a file, or with a node whose files cannot be
listed (getOutputFileList fails), is not purged and counts as failed.
Two files of one listing with the same name (the second would replace the first) and a file that
already exists in the directory (unless ``--overwrite``) are not fetched and count as failed too.

Each job's files go to ``<dir>/<LOGNAME>_<id>`` (``--dir``, else ``/tmp``), as gLite stores them,
or with ``--nosubdir`` to ``<dir>`` itself. The default directory ``/tmp/<LOGNAME>_<id>`` is made
mode 0700, and one that exists already is used only when it is the user's own real directory that
nobody else may write (:func:`own_default_dir`); files stored under ``/tmp`` (that directory, or
``/tmp`` itself with ``--nosubdir``) are made readable by their owner only, whatever the umask
(:func:`private_files`). In a directory the user names with ``--dir`` the umask decides the
files' mode. Either is opened once, before the first
file is fetched, and written through that descriptor only (:class:`~wmproxy.client.transfer.Directory`:
``<LOGNAME>_<id>``, node directories, files): a path component swapped for a link meanwhile does not
redirect the files; ``--dir`` naming a link is refused.
With ``-i`` a job whose output was already retrieved (Cleared) is skipped with a
note, so ``submit -o jobs.txt`` a few times, then ``output -i jobs.txt`` works each time.
A file the JDL declares in ``OutputSandbox`` that the job did not produce is named as
missing.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import Any
from urllib.parse import unquote, urlsplit

import click

from wmproxy.cli import common, render
from wmproxy.cli.clientconf import output_storage
from wmproxy.cli.compound import node_names
from wmproxy.cli.sandbox import _parse
from wmproxy.client import OutputFile, WMProxyClient, WMProxyClientError
from wmproxy.client.credential import user_label
from wmproxy.client.transfer import Directory, download_file, local_path

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def default_dir(job_id: str, nobody: str = "jobOutput", storage: str = "/tmp") -> str:  # noqa: S108 - gLite's
    """gLite default: ``<storage>/<LOGNAME>_<unique part of the job id>`` (:func:`job_subdir`);
    ``storage`` is the configuration's ``OutputStorage``, else ``/tmp``
    (:func:`wmproxy.cli.clientconf.output_storage`)."""
    return os.path.join(storage, job_subdir(job_id, nobody))


def job_subdir(job_id: str, nobody: str = "jobOutput") -> str:
    """``<LOGNAME>_<unique part of the job id>``: a job's directory under ``--dir`` (or the
    default directory), as glite-wms-job-output names it (joboutput.cpp: ``$LOGNAME``, or
    ``nobody`` when it is not set: ``jobOutput``, ``jobPerusal`` for glite-wms-job-perusal;
    the unique part is what follows ``https://host:port/``)."""
    unique = job_id.rstrip("/").rsplit("/", 1)[-1]
    logname = os.environ.get("LOGNAME")
    return f"{nobody if logname is None else logname}_{unique}"


def own_default_dir(path: str) -> Directory:
    """Make the default output directory ``path`` (``/tmp/<LOGNAME>_<id>``) mode 0700, or accept the
    one that exists only when it is a directory (not a link) of the user's (effective) uid that
    the group and others cannot write. Anyone can create that name in ``/tmp`` first: a directory
    of another user's would let them replace the files once downloaded (the job purged, the
    originals gone), or read them. It is opened once (``O_NOFOLLOW``) and checked through that
    descriptor, which the files are written through (:class:`Directory`).

    Returns:
        The directory, open.

    Raises:
        WMProxyClientError: ``TransferError`` naming the directory, what is wrong and the fix.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise WMProxyClientError("TransferError", f"cannot create the output directory {path}: {exc.strerror}",
                                 None, "download") from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        fd, info = -1, None
        with suppress(OSError):
            info = os.lstat(path)
        if info is None or stat.S_ISDIR(info.st_mode):
            raise WMProxyClientError("TransferError", f"cannot open the output directory {path}: {exc.strerror}",
                                     None, "download") from None
    else:
        info = os.fstat(fd)
    problem = ""
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif info.st_uid != os.geteuid():
        problem = f"belongs to {user_label(info.st_uid)}, not to you"
    elif info.st_mode & 0o022:
        problem = f"can be written by others (mode {stat.S_IMODE(info.st_mode):04o})"
    if not problem:
        return Directory(path, fd=fd)
    if fd >= 0:
        os.close(fd)
    raise WMProxyClientError(
        "TransferError", f"the default output directory {path} {problem}: it is not used (another user could "
        "replace or read the files stored there); remove it, or choose a directory with --dir", None, "download")


@contextmanager
def private_files(enabled: bool = True) -> Iterator[None]:
    """While it lasts (``enabled``), files and directories are created readable by their owner
    only (umask | 0o077): for the files stored under ``/tmp``, whatever the user's umask. The
    process is the CLI's, one thread creating files."""
    if not enabled:
        yield
        return
    previous = os.umask(0o077)
    os.umask(previous | 0o077)
    try:
        yield
    finally:
        os.umask(previous)


class _AlreadyRetrievedError(Exception):
    """A job of ``-i FILE`` whose output was already retrieved."""


@click.command("output")
@click.argument("job_ids", metavar="JOBID...", nargs=-1)
@click.option("-i", "--input", "input_file", metavar="FILE", help="Read job ids from a submit -o file.")
@click.option("--dir", "directory", metavar="DIR",
              help="Store each job's files in DIR/<LOGNAME>_<id> (default /tmp/<LOGNAME>_<id>).")
@click.option("--nosubdir", is_flag=True, help="Store every job's files directly in --dir (or /tmp), no "
              "<LOGNAME>_<id>.")
@click.option("--list-only", is_flag=True, help="List the output files (URI, size) without retrieving them.")
@click.option("--proto", default="https", show_default=True, type=click.Choice(["https"]),
              help="Transfer protocol (this service offers https only).")
@click.option("-n", "--nopurge", is_flag=True, help="Do not purge the job after retrieval.")
@click.option("--overwrite", is_flag=True,
              help="Replace files that already exist in the directory (else they are kept, reported, and the "
                   "job is not purged).")
@common.common_options
@common.reports_errors
def output(job_ids: tuple[str, ...], input_file: str | None, directory: str | None, nosubdir: bool,
           list_only: bool, proto: str, nopurge: bool, overwrite: bool, endpoint: str | None,
           as_json: bool) -> None:
    """Retrieve the output sandbox of JOBID (of every node for a compound job)."""
    from wmproxy.cli.status import _job_ids

    ids = _job_ids(job_ids, input_file)
    env = common.Environment.load(endpoint)
    storage = output_storage(env.config) if directory is None and not list_only else "/tmp"  # noqa: S108
    client = common.make_client(env)
    results: list[dict[str, Any]] = []
    failures: list[render.JobError] = []
    # --dir: opened once, on first use, for every job (and its <LOGNAME>_<id>, its nodes)
    with ExitStack() as held:
        chosen = held.enter_context(Directory(os.path.abspath(directory))) if directory is not None else None
        for job_id in ids:
            _one_job(client, job_id, chosen, storage, results, failures, several=len(ids) > 1, nosubdir=nosubdir,
                     list_only=list_only, proto=proto, nopurge=nopurge, as_json=as_json,
                     from_file=input_file is not None, overwrite=overwrite)
    if as_json:
        # docs/cli-json.md: "partial" when some jobs failed; each failed job in "errors" (a job
        # with files not retrieved is in "jobs" too, with its details)
        click.echo(json.dumps(results[0]) if len(ids) == 1 else render.batch_json("jobs", results, failures))
    if failures:
        if not as_json and len(ids) > 1:
            common.echo(f"Error - the output of {len(failures)} of {len(ids)} job(s) could not be retrieved",
                       err=True)
        raise SystemExit(1)


def _one_job(client: WMProxyClient, job_id: str, chosen: Directory | None, storage: str, results: list[dict[str, Any]],
             failures: list[render.JobError], *, several: bool, nosubdir: bool, list_only: bool, proto: str,
             nopurge: bool, as_json: bool, from_file: bool, overwrite: bool) -> None:
    """Retrieve (or list) one job of :func:`output`, its result appended to ``results`` (and
    ``failures``); a job's error is raised when it is the only job."""
    try:
        common.check_job_id(job_id)
        if list_only:
            results.append(_list(client, job_id, proto, as_json))
            return
        with ExitStack() as held, private_files(chosen is None):
            folder = _job_folder(job_id, chosen, nosubdir, storage)
            if folder is not chosen:
                held.enter_context(folder)
            results.append(_retrieve(client, job_id, folder, nopurge=nopurge, progress=not as_json,
                                     as_json=as_json, skip_cleared=from_file, overwrite=overwrite))
        if results[-1]["result"] != "success":
            failures.append(_not_retrieved(job_id, results[-1]))
    except _AlreadyRetrievedError:
        results.append({"result": "skipped", "jobid": job_id, "reason": "output already retrieved"})
        if not as_json:
            common.echo(f"Note - {job_id}: the output was already retrieved (job Cleared): skipped", err=True)
    except WMProxyClientError as exc:
        if not several:
            raise
        failures.append(render.JobError(job_id, exc.fault_type, exc.description))
        if not as_json:
            common.echo(f"Error - {job_id}: {exc.fault_type}: {exc.description}", err=True)


def _job_folder(job_id: str, chosen: Directory | None, nosubdir: bool, storage: str) -> Directory:
    """Where a job's files go, written through one descriptor, as glite-wms-job-output puts
    them whatever the number of jobs: ``D/<LOGNAME>_<id>`` (made through the descriptor of
    ``--dir D``, ``chosen``), ``D`` itself with ``--nosubdir``; without ``--dir`` the default
    ``<storage>/<LOGNAME>_<id>`` (``OutputStorage``, else ``/tmp``) once checked
    (:func:`own_default_dir`), ``storage`` itself with ``--nosubdir``."""
    if chosen is None:
        return Directory(storage) if nosubdir else own_default_dir(default_dir(job_id, storage=storage))
    return chosen if nosubdir else chosen.child(job_subdir(job_id))


def _not_retrieved(job_id: str, result: dict[str, Any]) -> render.JobError:
    """The batch error of a job some of whose files (or nodes) were not retrieved: the first
    failure's type, and how many failed."""
    failed = result.get("failed") or [f for node in result.get("nodes", {}).values() for f in node["failed"]]
    names = ", ".join(f["name"] for f in failed)
    return render.JobError(job_id, failed[0]["error"]["type"],
                           f"{len(failed)} output file(s) could not be retrieved: {names}")


def _list(client: WMProxyClient, job_id: str, proto: str, as_json: bool) -> dict[str, Any]:
    """``--list-only``: getOutputFileList of the job, or of each node of a compound job."""
    try:
        listed = {job_id: client.get_output_file_list(job_id, proto)}
    except WMProxyClientError as exc:
        children = _children_if_compound(client, job_id, exc)
        listed = {c: client.get_output_file_list(c, proto) for c in children}
    result = {"result": "success", "jobid": job_id,
              "files": {jid: [{"uri": f.uri, "size": f.size} for f in files] for jid, files in listed.items()}}
    if not as_json:
        common.echo(_list_text(listed), nl=False)
    return result


def _list_text(listed: dict[str, list[OutputFile]]) -> str:
    rule = "=" * 80
    blocks = []
    for jid, files in listed.items():
        lines = "".join(f" - {common.one_line(f.uri)}\n   size (bytes): {f.size}\n" for f in files)
        lines = lines or " (no output files)\n"
        blocks.append(f"Output sandbox files for the job:\n{common.one_line(jid)}\n\n{lines}")
    return f"\n{rule}\n\n\t\t\tJOB GET OUTPUT OUTCOME\n\n" + "\n".join(blocks) + f"\n{rule}\n"


def _children_if_compound(client: WMProxyClient, job_id: str, exc: WMProxyClientError) -> list[str]:
    """The node ids of a DAG/collection parent (which has no output of its own:
    OperationNotAllowedFault); re-raises ``exc`` for any other job."""
    if exc.fault_type == "OperationNotAllowedFault":
        children = [c.job_id for c in client.get_job_status(job_id).children]
        if children:
            return children
    raise exc


def _declared_outputs(client: WMProxyClient, job_id: str) -> list[str]:
    """The file names the job's ORIGINAL JDL declares in ``OutputSandbox``, each under the name it
    is stored with in the job's own output area: a relative ``OutputSandboxDestURI`` entry's, else
    the entry's base name. The service keeps every output there (it refuses a destination
    elsewhere at registration); an absolute ``OutputSandboxDestURI`` entry (a job registered
    before that) and names with wildcards are left out."""
    try:
        ad = _parse(client.get_jdl(job_id, "ORIGINAL"))
    except WMProxyClientError:
        return []
    if ad is None:
        return []
    names, dests = _strings(ad, "OutputSandbox"), _strings(ad, "OutputSandboxDestURI")
    declared = []
    for index, name in enumerate(names):
        dest = dests[index] if index < len(dests) else ""
        if not name or any(w in name for w in "*?[") or _URI.match(dest):
            continue
        declared.append(dest or os.path.basename(name))
    return declared


def _strings(ad: Any, key: str) -> list[str]:
    """A string or list of strings attribute as a list (anything else: empty)."""
    try:
        value = ad.get(key)
    except Exception:  # noqa: BLE001 - an expression that does not evaluate names nothing
        return []
    if isinstance(value, str):
        return [value]
    try:
        return [v if isinstance(v, str) else "" for v in value]
    except TypeError:  # a number, a ClassAd...
        return []


def _file_name(uri: str) -> str:
    """The local name of an output file URI: its percent-decoded last path segment."""
    return unquote(urlsplit(uri).path.rsplit("/", 1)[-1])


def _download_all(client: WMProxyClient, job_id: str, target: Directory, progress: bool,
                  as_json: bool, overwrite: bool) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Download every listed output file, each on its own: a file that fails (refused name, a
    name listed before, an existing file without ``overwrite``, HTTP error, write error) is
    reported and the next one is fetched.

    Returns:
        The stored paths, the declared files the job did not produce, and one
        ``{"uri", "name", "error"}`` per file that could not be retrieved.

    Raises:
        WMProxyClientError: getOutputFileList failed (nothing was fetched).
    """
    files = client.get_output_file_list(job_id, "https")
    stored: list[str] = []
    failed: list[dict[str, Any]] = []
    seen: set[str] = set()
    if files:  # opened before any file is fetched; one it cannot be is each file's error (download_file)
        with suppress(OSError):
            target.fileno()
    with common.progress_bar(progress) as task:
        for f in files:
            label = f.uri.rsplit("/", 1)[-1]
            name = _file_name(f.uri)
            try:
                _check_new(target, name, f.uri, seen, overwrite)
                path = download_file(client.session, f.uri, target, progress=task(label, f.size),
                                     timeout=client.timeout, size=f.size, replace=overwrite)
            except WMProxyClientError as exc:
                failed.append(_failure(job_id, f.uri, name, exc, as_json))
                continue
            stored.append(str(path))
    produced = {_file_name(f.uri) for f in files}
    missing = [name for name in _declared_outputs(client, job_id) if name not in produced]
    return stored, missing, failed


def _check_new(target: Directory, name: str, uri: str, seen: set[str], overwrite: bool) -> None:
    """Refuse to fetch ``name`` into ``target`` a second time in one listing (it would replace
    the first: which one is the job's is unknown), or over an existing file unless
    ``overwrite`` (gLite asked whether to overwrite an existing directory; ``--noint`` said yes,
    so a script lost its files without a word). ``name`` is added to ``seen``.

    Raises:
        WMProxyClientError: ``TransferError``, also for a name that is not a plain file name
            (:func:`wmproxy.client.transfer.local_path`).
    """
    path = local_path(target, name, uri)
    if name in seen:
        raise WMProxyClientError("TransferError", f"the output file list names {name} twice: {uri} is not fetched "
                                 "(only the first file of a name is: it would replace that one)", None, "download")
    seen.add(name)
    if not overwrite and target.exists(name):
        raise WMProxyClientError("TransferError", f"{path} already exists: it is kept and {uri} is not fetched "
                                 "(remove it, choose another --dir, or give --overwrite)", None, "download")


def _failure(job_id: str, uri: str | None, name: str, exc: WMProxyClientError, as_json: bool) -> dict[str, Any]:
    """Report a file (or node) that could not be retrieved, ``Error - <type>: <message> (job <id>)``
    on stderr (nothing with ``--json``); returns its JSON entry."""
    if not as_json:
        common.echo(render.error_line(exc.fault_type, exc.description, job_id), err=True)
    return {"uri": uri, "name": name, "error": render.error_object(exc.fault_type, exc.description)}


def _missing_text(job_id: str, missing: list[str]) -> str:
    return "".join(f"Warning - {job_id}: output file {name} declared in OutputSandbox was not produced by the job "
                   "(missing)\n" for name in missing)


def _partial_text(text: str, target: str, missing: list[str], failed: list[dict[str, Any]]) -> str:
    """The outcome ``text`` amended for declared files missing and files not retrieved."""
    if not missing and not failed:
        return text
    text = text.replace("have been successfully retrieved", "have been retrieved", 1)
    notes = ""
    if missing:
        notes += f"but these declared output files are missing: {common.one_line(', '.join(missing))}\n"
    if failed:
        names = common.one_line(", ".join(f["name"] for f in failed))
        notes += f"{'and' if missing else 'but'} these output files could not be retrieved: {names}\n"
    return text.replace(f"{target}\n", f"{target}\n{notes}", 1)


def _node_dir(target: str, name: str, child_id: str, as_json: bool) -> tuple[str | None, list[dict[str, Any]]]:
    """A node's directory ``<target>/<node name>``; None (and the failure) when the name, which
    comes from the parent's JDL, is not a plain name inside ``target``."""
    try:
        return str(local_path(target, name)), []
    except WMProxyClientError as exc:
        refused = WMProxyClientError(exc.fault_type, f"node directory: {exc.description}", None, exc.method)
        return None, [_failure(child_id, None, name, refused, as_json)]


def _retrieve(client: WMProxyClient, job_id: str, folder: Directory, *, nopurge: bool, progress: bool,
              as_json: bool, skip_cleared: bool, overwrite: bool) -> dict[str, Any]:
    target = folder.path
    result: dict[str, Any] = {"result": "success", "jobid": job_id, "dir": target}
    children: list[str] = []
    try:
        stored, missing, failed = _download_all(client, job_id, folder, progress, as_json, overwrite)
    except WMProxyClientError as exc:
        if _cleared(client, job_id):
            if skip_cleared:
                raise _AlreadyRetrievedError(job_id) from None
            raise WMProxyClientError(exc.fault_type, "the output of this job has already been retrieved "
                                     "(the job is Cleared)", exc.error_code, exc.method) from None
        children = _children_if_compound(client, job_id, exc)
    notes = ""
    if children:
        names = node_names(job_id, client.get_jdl(job_id, "ORIGINAL"), children)
        nodes: dict[str, Any] = {}
        shown = []
        stored, failed = [], []
        for child_id in children:
            name = names[child_id]
            node_dir, node_failed = _node_dir(target, name, child_id, as_json)
            node_files: list[str] = []
            node_missing: list[str] = []
            if node_dir is not None:
                try:
                    with folder.child(name) as node_folder:
                        node_files, node_missing, node_failed = _download_all(client, child_id, node_folder,
                                                                              progress, as_json, overwrite)
                    shown.append((name, child_id, node_dir))
                except WMProxyClientError as exc:
                    if exc.fault_type == "OperationNotAllowedFault":
                        # the node's state has no output (Cancelled, or already Cleared): nothing to lose
                        common.echo(f"Warning - node {name}: {exc.fault_type}: {exc.description}", err=True)
                    else:  # the node's files cannot even be listed (the service or the connection
                        # failed): it counts as failed, nothing is purged
                        unlisted = WMProxyClientError(exc.fault_type, f"node {name}: cannot list its output "
                                                      f"files: {exc.description}", exc.error_code, exc.method)
                        node_failed = [_failure(child_id, None, name, unlisted, as_json)]
            notes += _missing_text(child_id, node_missing)
            stored += node_files
            failed += node_failed
            nodes[name] = {"jobid": child_id, "dir": node_dir, "files": node_files, "missing": node_missing,
                           "failed": node_failed}
        result["nodes"] = nodes
        text = _partial_text(render.output_nodes_text(job_id, target, shown), target, [], failed)
    else:
        result["files"], result["missing"], result["failed"] = stored, missing, failed
        notes = _missing_text(job_id, missing)
        text = _partial_text(render.output_text(job_id, target, bool(stored or failed)), target, missing, failed)
    if failed:
        result["result"] = render.result_word(len(stored), len(failed))
        if not nopurge:
            common.echo(f"Warning - {job_id}: not purged, {len(failed)} of its output files could not be "
                       "retrieved", err=True)
    elif not nopurge:
        try:
            client.job_purge(job_id)
        except WMProxyClientError as exc:
            common.echo(f"Warning - JobPurging not allowed ({exc.fault_type}: {exc.description})", err=True)
    if notes:
        common.echo(notes, nl=False, err=True)
    if not as_json:
        common.echo(text, nl=False)
    return result


def _cleared(client: WMProxyClient, job_id: str) -> bool:
    try:
        return client.get_job_status(job_id).state == "Cleared"
    except WMProxyClientError:
        return False
