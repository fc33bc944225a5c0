"""``wmproxy submit``: glite-wms-job-submit.

Flow (``wmproxy-behaviour.md`` §11.2): [delegate with -a] → jobRegister →
getSandboxDestURI(job, "https") → PUT each local InputSandbox file → jobStart;
a single jobSubmit when there is nothing to upload.

Compound jobs (collections, DAGs, parametric jobs) are always registered first: the
input sandbox of all nodes is uploaded once into the parent's area, the file names
taken from the parent's REGISTERED JDL (:func:`wmproxy.cli.compound.upload_plan`),
then the parent is started. ``--register-only`` stops before jobStart (uploading
the input sandbox only with ``--transfer-files``, as the gLite UI) and ``--start JOBID``
does only jobStart.

The JDL file goes through :func:`wmproxy.cli.jdlprep.prepare` first: syntax errors with
line and column, ``file =`` nodes inlined, ``InputSandboxBaseURI``, ``Environment``
quotes, and the options and configuration that set attributes (``-r``/``-i`` →
``SubmitTo``, ``--nodes-resource`` → each node's ``SubmitTo``, ``--valid``/``--to`` →
``ExpiryTime``, ``--default-jdl``, the configuration's VO, MyProxy server and
``[jdl-defaults]``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from wmproxy.cli import common, jdlprep, jobids, render
from wmproxy.cli.clientconf import jdl_defaults
from wmproxy.cli.compound import collection_jdl, is_compound, upload_plan
from wmproxy.cli.errors import MAX_TEXT_FILE, read_text_file, too_large, unreadable
from wmproxy.cli.prompts import read_answer
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
@click.option("-r", "--resource", metavar="CEID", help="Send the job to this CE (JDL SubmitTo; no matchmaking).")
@click.option("-i", "--input", "ce_file", metavar="FILE",
              help="Choose the CE from the CE ids in FILE (the first one with --noint).")
@click.option("--nodes-resource", metavar="CEID", help="Send every node of a DAG/collection to this CE.")
@click.option("-v", "--valid", metavar="hh:mm", help="The job expires if not matched within hh:mm (ExpiryTime).")
@click.option("--to", "valid_to", metavar="[MM:DD:]hh:mm[:YYYY]",
              help="The job expires if not matched by this local time (ExpiryTime).")
@click.option("--default-jdl", metavar="FILE", help="Add the attributes of this JDL file the job lacks.")
@click.option("--transfer-files", is_flag=True, help="With --register-only: upload the input sandbox too.")
@click.option("--proto", default="https", show_default=True, type=click.Choice(["https"]),
              help="Input sandbox transfer protocol (this service offers https only).")
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
    resource: str | None,
    ce_file: str | None,
    nodes_resource: str | None,
    valid: str | None,
    valid_to: str | None,
    default_jdl: str | None,
    transfer_files: bool,
    proto: str,
    endpoint: str | None,
    as_json: bool,
) -> None:
    """Submit the job described by JDLFILE (or the collection in --collection DIR)."""
    if start_id:
        if jdl_file or collection_dir or register_only:
            raise click.UsageError("--start takes no JDLFILE, --collection or --register-only")
        _check_jobid_file(jobid_file)
        _start_only(start_id, jobid_file, nomsg, endpoint, as_json)
        return
    if bool(delegation_id) == automatic:
        raise click.UsageError("exactly one of -d/--delegationid and -a/--autm-delegation is required")
    if bool(jdl_file) == bool(collection_dir):
        raise click.UsageError("give exactly one of JDLFILE and --collection DIR")
    if resource and ce_file:
        raise click.UsageError("give at most one of -r/--resource and -i/--input")
    if valid and valid_to:
        raise click.UsageError("give at most one of -v/--valid and --to")
    _check_jobid_file(jobid_file)
    if collection_dir:
        jdl, jdl_dir, source = collection_jdl(collection_dir), Path(collection_dir).absolute(), collection_dir
    elif jdl_file is not None:  # exactly one of the two, checked above
        jdl, jdl_dir, source = _read_jdl(jdl_file), Path(jdl_file).absolute().parent, jdl_file
    # the JDL file's VirtualOrganisation may choose the VO's configuration (gLite: not a collection's)
    env = common.Environment.load(endpoint, jdl=None if collection_dir else jdl)
    overrides: dict[str, Any] = {}
    submit_to = resource or (_choose_ce(ce_file) if ce_file else None)
    if submit_to:
        overrides["SubmitTo"] = submit_to
    expiry = expiry_time(valid, valid_to)
    if expiry is not None:
        overrides["ExpiryTime"] = expiry
    jdl = jdlprep.prepare(jdl, source, jdl_dir, defaults=_defaults(env, default_jdl), overrides=overrides,
                          node_overrides={"SubmitTo": nodes_resource} if nodes_resource else None)
    if len(jdl.encode("utf-8")) > MAX_TEXT_FILE:  # node files inlined, a collection's nodes
        raise common.CliError("JDL", f"{source}: {too_large('the JDL to send is')}")
    compound = is_compound(jdl)
    files = [] if compound else local_input_files(jdl, jdl_dir)
    quiet = nomsg or as_json
    # with -a the new delegation lives as long as the local proxy: too short, the service refuses it
    client = common.make_client(env, min_lifetime=env.config.min_proxy_lifetime if automatic else 0)
    if not quiet:
        common.echo(f"\nConnecting to the service {client.endpoint}\n")
    if automatic:
        delegation_id = client.delegate(None)
    did = delegation_id or ""
    progress = not quiet
    upload = transfer_files or not register_only
    if compound:
        job = client.job_register(jdl, did)
        if upload:
            with _transfer(job.id, jobid_file):
                _upload_compound(client, job, jdl, jdl_dir, progress=progress)
        else:
            _tell_files(upload_plan(client.get_jdl(job.id, "REGISTERED"), _https_dest(client, job.id), jdl, jdl_dir),
                        _https_dest(client, job.id), quiet)
        started = False
    elif files or register_only:
        if files and upload:
            _check_size(client, files)
        job = client.job_register(jdl, did)
        if upload:
            with _transfer(job.id, jobid_file):
                _upload(client, job.id, files, progress=progress)
        elif files:
            _tell_files(files, _https_dest(client, job.id), quiet)
        started = False
    else:
        job = client.job_submit(jdl, did)
        started = True
    if not started and not register_only:
        try:
            client.job_start(job.id)
        except WMProxyClientError:
            if jobid_file:
                _save_failed(jobid_file, job.id)
            raise
    saved, warning = _save(jobid_file, job.id, as_json)
    if as_json:
        click.echo(render.submit_json(job, client.endpoint, warning))
    elif nomsg:
        common.echo(job.id)
    elif register_only:
        common.echo(render.register_text(job, saved), nl=False)
    else:
        common.echo(render.submit_text(job, saved), nl=False)


def _read_jdl(path: str) -> str:
    try:
        return read_text_file(path)
    except OSError as exc:
        raise common.CliError("JDL", f"cannot read {path}: {unreadable(exc)}") from None


def _defaults(env: common.Environment, default_jdl: str | None) -> dict[str, str]:
    """Attributes added when the JDL lacks them: ``--default-jdl FILE`` first, then the
    configuration's (:func:`wmproxy.cli.clientconf.jdl_defaults`)."""
    defaults: dict[str, str] = {}
    if default_jdl:
        ad = jdlprep.parse(_read_jdl(default_jdl), default_jdl)
        defaults.update({key: str(ad.lookup(key)) for key in ad})
    for key, value in jdl_defaults(env.config).items():
        defaults.setdefault(key, value)
    return defaults


def _choose_ce(path: str) -> str:
    """The CE of ``-i FILE`` (one CE id a line, ``#`` comments): the only or, with ``--noint``,
    the first; else the user picks one by number (no answer, the end of input: the first)."""
    try:
        lines = read_text_file(path).splitlines()
    except OSError as exc:
        raise common.CliError("Input", f"cannot read {path}: {unreadable(exc)}") from None
    ces = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not ces:
        raise common.CliError("Input", f"{path} holds no CE id")
    if len(ces) == 1 or common.run_options().noint:
        return ces[0]
    for number, ce in enumerate(ces, 1):
        common.echo(f"{number} : {ce}", err=True)
    while True:  # no answer, or the end of input (no terminal): the first, as with --noint
        answer = read_answer("Choose one CE in the list [1]: ")
        if not answer:
            return ces[0]
        if answer.isdigit() and 1 <= int(answer) <= len(ces):
            return ces[int(answer) - 1]
        common.echo(f"{answer} is not a number from 1 to {len(ces)}", err=True)


def expiry_time(valid: str | None, valid_to: str | None, now: float | None = None) -> int | None:
    """``ExpiryTime`` (seconds since the epoch) of ``--valid hh:mm`` (from now) or
    ``--to [MM:DD:]hh:mm[:YYYY]`` (local time; today, or tomorrow when hh:mm has passed and no
    date is given).

    Raises:
        click.BadParameter: a malformed value, or a time not in the future.
    """
    moment = time.time() if now is None else now
    if valid:
        parts = valid.split(":")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[1]) > 59:
            raise click.BadParameter(f"{valid!r} is not hh:mm", param_hint="--valid")
        seconds = int(parts[0]) * 3600 + int(parts[1]) * 60
        if seconds <= 0:
            raise click.BadParameter("the validity must be longer than 00:00", param_hint="--valid")
        return int(moment) + seconds
    if not valid_to:
        return None
    parts = valid_to.split(":")
    if len(parts) not in (2, 3, 4, 5) or not all(p.isdigit() for p in parts):
        raise click.BadParameter(f"{valid_to!r} is not [MM:DD:]hh:mm[:YYYY]", param_hint="--to")
    today = datetime.fromtimestamp(moment).astimezone()  # local time, as the gLite UI
    month, day, year = today.month, today.day, today.year
    if len(parts) >= 4:
        month, day = int(parts[0]), int(parts[1])
        parts = parts[2:]
    if len(parts) == 3:
        year = int(parts[2])
    try:
        when = datetime(year, month, day, int(parts[0]), int(parts[1]), tzinfo=today.tzinfo)
    except ValueError as exc:
        raise click.BadParameter(f"{valid_to!r}: {exc}", param_hint="--to") from None
    stamp = int(when.timestamp())
    if stamp <= moment and len(valid_to.split(":")) == 2:
        stamp += 24 * 3600
    if stamp <= moment:
        raise click.BadParameter(f"{valid_to} is not in the future", param_hint="--to")
    return stamp


def _tell_files(files: list[Path], dest: str, quiet: bool) -> None:
    """``--register-only`` without ``--transfer-files``: which files to upload, and where."""
    if quiet or not files:
        return
    listed = "".join(f" - {f}\n" for f in files)
    common.echo(f"The following local input sandbox file(s) must be transferred to\n{dest}\n"
               f"before the job is started:\n{listed}")


def _start_only(job_id: str, jobid_file: str | None, nomsg: bool, endpoint: str | None, as_json: bool) -> None:
    env = common.Environment.load(endpoint)
    client = common.make_client(env)
    client.job_start(job_id)
    saved, warning = _save(jobid_file, job_id, as_json)
    if as_json:
        click.echo(render.submit_json(JobIds(job_id), client.endpoint, warning))
    elif nomsg:
        common.echo(job_id)
    else:
        common.echo(render.start_text(job_id, saved), nl=False)


def _check_jobid_file(jobid_file: str | None) -> None:
    """``-o FILE`` checked before anything is registered: a job-id file (or empty, or new in an
    existing directory) that can be written.

    Raises:
        CliError: ``Output`` naming the file and why.
    """
    if not jobid_file:
        return
    try:
        jobids.check_job_id_file(jobid_file)
    except OSError as exc:
        raise common.CliError("Output", f"cannot write the job id to {jobid_file}: {exc.strerror}") from None


def _save(jobid_file: str | None, job_id: str, as_json: bool) -> tuple[str | None, str | None]:
    """Append the submitted job's id to ``-o FILE``. The job exists: a file that cannot be
    written after all (checked before registering; a race, a full disk) is a warning (on
    stderr, or returned for ``--json``), as in the gLite UI, and the id is still printed.

    Returns:
        The file's absolute path (None when not written) and the warning (None when none).
    """
    if not jobid_file:
        return None, None
    try:
        return str(jobids.append_job_id(jobid_file, job_id)), None
    except OSError as exc:
        warning = f"Unable to write the jobid to the output file {jobid_file}: {exc.strerror}"
    if not as_json:
        common.echo(f"Warning - {warning}", err=True)
    return None, warning


def _save_failed(jobid_file: str, job_id: str) -> str:
    """Append a registered job that was not started under the :data:`jobids.FAILED_HEADER`
    marker; returns what to add to the error (empty, or why the file could not be written)."""
    try:
        jobids.append_failed_job_id(jobid_file, job_id)
    except OSError as exc:
        return f" (the job id could not be written to {jobid_file}: {exc.strerror})"
    return ""


@contextmanager
def _transfer(job_id: str, jobid_file: str | None) -> Iterator[None]:
    """The input sandbox upload of a registered job: when it fails, the job id is written to
    ``-o FILE`` under the :data:`jobids.FAILED_HEADER` marker and the error names the job and
    how to start it (gLite jobsubmit).

    Raises:
        CliError: of the failure's type, the job id in its message and as ``job_id``.
    """
    try:
        yield
    except (WMProxyClientError, common.CliError, OSError) as exc:
        if isinstance(exc, WMProxyClientError):
            kind, reason = exc.fault_type, exc.description
        elif isinstance(exc, common.CliError):
            kind, reason = exc.kind, exc.description
        else:
            kind, reason = "InputSandbox", f"{exc.filename}: {exc.strerror}"
        note = _save_failed(jobid_file, job_id) if jobid_file else ""
        raise common.CliError(
            kind,
            f"The job has been successfully registered (the JobId is: {job_id}), but an error occurred while "
            f"transferring files: {reason}{note}. To complete the operation, transfer the input sandbox files, "
            f"then start the job by issuing a submission with the option: --start {job_id}",
            job_id,
        ) from None


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

