"""``wmproxy inspect``: run a command inside a running job and print what it said
(the inspection extension, ``docs/inspection.md``)."""

from __future__ import annotations

import datetime as dt
import json
import sys

import click

from wmproxy.cli import common
from wmproxy.client.inspection import InspectionClient
from wmproxy.domain import InspectionResult


def make_inspection_client(env: common.Environment) -> InspectionClient:
    """The client of the inspection port of the endpoint :func:`common.make_client` chooses
    (the proxy and CA directory checked, and with several endpoints the first that answers,
    as every verb); tests replace this function."""
    chosen = common.make_client(env)
    return InspectionClient(chosen.endpoint, env.proxy_file, env.ca_dir, session=chosen.session)


@click.command("inspect", context_settings={"ignore_unknown_options": True})
@click.argument("job_id", metavar="JOBID")
@click.argument("command", metavar="-- COMMAND...", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--timeout", "time_limit", type=click.IntRange(min=0), default=0, metavar="S",
              help="Seconds the command may run (default and maximum: the service's limit).")
@common.common_options
@common.reports_errors
def inspect(job_id: str, command: tuple[str, ...], time_limit: int, endpoint: str | None, as_json: bool) -> None:
    """Run COMMAND in the running job JOBID (its work dir, its account) and print its
    output, exit code and the UTC time it ran. Exits with the command's exit code."""
    client = make_inspection_client(common.Environment.load(endpoint))
    found = client.inspect(job_id, list(command), time_limit)
    if as_json:
        click.echo(json.dumps(_as_dict(found)))  # one line, as every verb (docs/cli-json.md)
    else:
        _print(found)
    if found.state != "done":
        sys.exit(1)
    sys.exit(0 if found.exit_code == 0 else min(found.exit_code or 1, 255))


def _iso(when: dt.datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when is not None else None


def _as_dict(found: InspectionResult) -> dict[str, object]:
    iso = _iso
    return {
        "request": found.request_id, "job": found.job_id, "state": found.state, "command": found.command,
        "asked_at": iso(found.asked_at), "started_at": iso(found.started_at), "ended_at": iso(found.ended_at),
        "exit_code": found.exit_code, "timed_out": found.timed_out, "truncated": found.truncated,
        "output": found.output.decode("utf-8", "replace"), "message": found.message, "job_state": found.job_state,
    }


def _print(found: InspectionResult) -> None:
    if found.state == "ended":
        common.echo(found.message)
        return
    if found.state == "failed":
        common.fail("InspectionFailed", found.message or "the job did not answer")
    sys.stdout.buffer.write(found.output)
    if found.output and not found.output.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    when = found.started_at.strftime("%Y-%m-%d %H:%M:%S UTC") if found.started_at else "?"
    notes = [n for n, on in (("killed at the time limit", found.timed_out),
                             ("output truncated", found.truncated)) if on]
    tail = f" ({', '.join(notes)})" if notes else ""
    common.echo(f"-- exit code {found.exit_code}, ran at {when}{tail}")
