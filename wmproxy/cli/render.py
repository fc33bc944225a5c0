"""Text output in the formats of the gLite WMS UI (``peers.md`` §9.1).

Only the tool name changes: ``glite-wms-job-submit Success`` becomes
``wmproxy submit Success``; the sentences scripts look for are kept.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from wmproxy.cli.common import one_line
from wmproxy.client import CEMatch, JobIds, JobStatus, ProxyInfo, WMProxyClientError
from wmproxy.domain import JobSummary

RULE = "=" * 74

F = TypeVar("F", bound=Callable[..., Any])


def stripe(title: str, width: int = 74, char: str = "=") -> str:
    """gLite ``getStripe``: ``char`` × (width/2 − (len/2 + 1)) on both sides of `` title ``."""
    side = char * (width // 2 - (len(title) // 2 + 1))
    return f"{side} {title} {side}"


def delegate_text(endpoint: str, delegation_id: str, saved: str | None = None) -> str:
    """glite-wms-job-delegate-proxy success text (``wmproxy-behaviour.md`` §5.4); ``saved``: the
    absolute path of the ``-o`` file written, named as gLite does."""
    shown = delegation_id or "(automatic: chosen by the service)"
    note = f"\nThe DelegateProxy result  has been saved in the following file:\n{saved}\n" if saved else ""
    return (
        f"\n{stripe('wmproxy delegate-proxy Success')}\n\n"
        "Your proxy has been successfully delegated to the WMProxy(s):\n"
        f"{endpoint}\n"
        f"with the delegation identifier: {shown}\n{note}\n"
        f"{RULE}\n"
    )


def submit_text(job: JobIds, jobid_file: str | None = None) -> str:
    """glite-wms-job-submit success text; mentions ``jobid_file`` when ``-o`` was given."""
    return _submission_text(job, "submitted", "", jobid_file)


def register_text(job: JobIds, jobid_file: str | None = None) -> str:
    """``submit --register-only`` text: registered, and how to start it (``peers.md`` §9.1)."""
    start = f"To complete the operation start the job by issuing a submission with the option:\n --start {job.id}\n\n"
    return _submission_text(job, "registered", start, jobid_file)


def _submission_text(job: JobIds, done: str, after: str, jobid_file: str | None) -> str:
    saved = f"The job identifier has been saved in the following file:\n{jobid_file}\n\n" if jobid_file else ""
    return (
        f"\n{stripe('wmproxy submit Success')}\n\n"
        f"The job has been successfully {done} to the WMProxy\n"
        "Your job identifier is:\n\n"
        f"{job.id}\n\n"
        f"{saved}{after}{RULE}\n"
    )


def start_text(job_id: str, jobid_file: str | None = None) -> str:
    """``submit --start JOBID`` text."""
    saved = (
        f"The job identifier has been saved in the following file:\n{jobid_file}\n\n" if jobid_file else ""
    )
    return (
        f"\n{stripe('wmproxy submit Success')}\n\n"
        "The job has been successfully started to the WMProxy\n"
        "Your job identifier is:\n\n"
        f"{job_id}\n\n"
        f"{saved}"
        f"{RULE}\n"
    )


def submit_json(job: JobIds, endpoint: str, warning: str | None = None) -> str:
    """``{"result": "success", "jobid"|"parent": ..., "endpoint": ..., "children": {...}}``, and
    ``"warning"`` when given (the job id could not be written to the ``-o`` file)."""
    data: dict[str, Any] = {"result": "success"}
    if warning:
        data["warning"] = warning
    if job.children:
        data["parent"] = job.id
        data["endpoint"] = endpoint
        data["children"] = {c.name or c.id: c.id for c in job.children}
    else:
        data["jobid"] = job.id
        data["endpoint"] = endpoint
    return json.dumps(data)


def _status_block(view: StatusView, lines: list[str], verbosity: int, indent: str = "") -> None:
    """glite-wms-job-status block of one job (``wmsui_api.py printStatus``; labels ``ljust(20)``).

    -v 0: id and Current Status; 1: + exit code, reason, missing outputs, destination,
    submitted, node summary; 2: + parent/node name, owner, last update, the time each state was
    entered, user tags; 3: + the registered JDL.
    """
    status, summary = view.status, view.summary

    def add(label: str, value: object) -> None:
        lines.append(f"{indent}{(label + ':').ljust(20)}{one_line(value)}")

    lines.append(f"{indent}Status info for the Job : {one_line(status.job_id)}")
    add("Current Status", status.display)
    if verbosity < 1:
        return
    if status.exit_code is not None:
        add("Exit code", status.exit_code)
    reason = status_reason(view)
    if reason:
        add("Status Reason", reason)
    if summary is None:
        return
    for name, why in summary.missing_outputs:
        add("Missing output", f"{name} ({why})")
    if summary.destination:
        add("Destination", summary.destination)
    add("Submitted", ctime(summary.submitted))
    if summary.node_states:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(summary.node_states.items()))
        add("Nodes", f"{sum(summary.node_states.values())} ({counts})")
    if verbosity < 2:
        return
    if summary.parent_id:
        add("Parent Job", summary.parent_id)
    if summary.node_name:
        add("Node Name", summary.node_name)
    add("Owner", summary.owner_dn)
    add("Last Update", ctime(summary.last_update))
    lines.append(f"{indent}State times:")
    for state, at in sorted(summary.state_times.items(), key=lambda item: item[1]):
        lines.append(f"{indent}    - {one_line(state).ljust(15)} = {ctime(at)}")
    for name, value in summary.user_tags.items():
        add(f"User tag {one_line(name)}", value)
    if verbosity >= 3 and view.jdl:
        lines.append(f"{indent}Jdl:")
        lines += [f"{indent}    {line}" for line in view.jdl.strip().splitlines()]


@dataclass(frozen=True)
class StatusView:
    """What ``status`` prints of one job: getJobStatus, and (from -v 1, when the service has
    the jobs-1 extension) the job's summary; from -v 3 the registered JDL; the nodes' views."""

    status: JobStatus
    summary: JobSummary | None = None
    jdl: str | None = None
    nodes: tuple[StatusView, ...] = ()


def status_reason(view: StatusView) -> str | None:
    """Why the job is in its state: the reason getJobStatus carries (``Aborted (<reason>)``),
    else the one of the job's summary (from ``-v 1``): a Done job's status string has its exit
    code only, its reason (output files not collected) comes with the summary."""
    if view.status.reason:
        return view.status.reason
    return view.summary.reason if view.summary is not None and view.summary.reason else None


def status_text(statuses: Sequence[JobStatus | StatusView], verbosity: int = 1) -> str:
    """glite-wms-job-status text: one BOOKKEEPING block per job, nodes indented below it."""
    lines = ["", stripe("wmproxy status Success"), "BOOKKEEPING INFORMATION:", ""]
    for n, item in enumerate(statuses):
        view = item if isinstance(item, StatusView) else StatusView(item)
        if n:
            lines.append(RULE)
            lines.append("")
        _status_block(view, lines, verbosity)
        if view.status.children:
            nodes = {v.status.job_id: v for v in view.nodes}
            lines += ["", f"- Nodes information for: {one_line(view.status.job_id)}"]
            for child in view.status.children:
                lines.append("")
                _status_block(nodes.get(child.job_id, StatusView(child)), lines, verbosity, "    ")
    lines.append(RULE)
    return "\n".join(lines) + "\n"


def ctime(at: dt.datetime) -> str:
    """``Thu Nov  5 05:39:00 2026 UTC``: C ``ctime`` of the UTC time (the reference printed local time)."""
    at = at.astimezone(dt.UTC)
    return f"{at:%a %b} {at.day:2d} {at:%H:%M:%S %Y} UTC"


def iso(at: dt.datetime | None) -> str | None:
    """``2026-11-05T05:39:00Z`` (UTC, seconds), the time format of every ``--json`` document."""
    return None if at is None else at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def summary_dict(summary: JobSummary) -> dict[str, Any]:
    """The ``--json`` keys a job summary adds (docs/cli-json.md)."""
    return {
        "destination": summary.destination,
        "submitted": iso(summary.submitted),
        "last_update": iso(summary.last_update),
        "owner": summary.owner_dn,
        "parent_jobid": summary.parent_id,
        "node_name": summary.node_name,
        "state_times": {state: iso(at) for state, at in summary.state_times.items()},
        "user_tags": dict(summary.user_tags),
        "node_states": dict(summary.node_states),
        "missing_outputs": [{"name": n, "reason": r} for n, r in summary.missing_outputs],
    }


def _status_dict(view: StatusView, verbosity: int) -> dict[str, Any]:
    status = view.status
    entry: dict[str, Any] = {
        "jobid": status.job_id,
        "current_status": status.display,
        "state": status.state,
        "exit_code": status.exit_code,
        "status_reason": status_reason(view),
    }
    if view.summary is not None:
        entry.update(summary_dict(view.summary))
    if verbosity >= 3 and view.jdl is not None:
        entry["jdl"] = view.jdl
    if status.children:
        nodes = {v.status.job_id: v for v in view.nodes}
        entry["nodes"] = [_status_dict(nodes.get(c.job_id, StatusView(c)), verbosity) for c in status.children]
    return entry


def status_json(statuses: Sequence[JobStatus | StatusView], errors: Sequence[JobError] = (),
                verbosity: int = 1) -> str:
    """``{"result": ..., "jobs": [{"jobid": ..., "current_status": ..., ...}], "errors": [...]}``
    (docs/cli-json.md)."""
    views = [s if isinstance(s, StatusView) else StatusView(s) for s in statuses]
    return batch_json("jobs", [_status_dict(v, verbosity) for v in views], errors)


# --- JSON documents shared by every verb (docs/cli-json.md) ---


@dataclass(frozen=True)
class JobError:
    """One job of a batch that failed: its id, the error type (a fault name such as
    ``JobUnknownFault``, or a client-side kind) and one line of message."""

    job_id: str
    type: str
    message: str


def error_object(kind: str, message: str) -> dict[str, Any]:
    """``{"type": <fault or error kind>, "message": <one line>}``."""
    return {"type": kind, "message": " ".join(message.split())}


def error_json(kind: str, message: str, job_id: str | None = None) -> str:
    """The JSON document of a verb that failed as a whole:
    ``{"result": "failure", "error": {"type": ..., "message": ...}}``, with ``"jobid"`` when
    given (``submit``: the job was registered, but not started)."""
    data: dict[str, Any] = {"result": "failure"}
    if job_id is not None:
        data["jobid"] = job_id
    data["error"] = error_object(kind, message)
    return json.dumps(data)


def result_word(succeeded: int, failed: int) -> str:
    """``success`` (no failure), ``partial`` (some of a batch failed) or ``failure`` (all failed)."""
    if not failed:
        return "success"
    return "partial" if succeeded else "failure"


def batch_json(key: str, items: Sequence[Any], errors: Sequence[JobError] = (),
               **extra: Any) -> str:
    """``{"result": <result_word>, <key>: [...], "errors": [{"jobid", "error": {...}}], **extra}``."""
    data: dict[str, Any] = {"result": result_word(len(items), len(errors)), key: list(items)}
    data.update(extra)
    data["errors"] = [{"jobid": e.job_id, "error": error_object(e.type, e.message)} for e in errors]
    return json.dumps(data)


def error_line(kind: str, message: str, job_id: str | None = None) -> str:
    """``Error - <kind>: <message>`` (one line), naming the job of a batch when given."""
    text = " ".join(message.split())
    return f"Error - {kind}: {text}" + (f" (job {job_id})" if job_id and job_id not in text else "")


def cancel_text(job_ids: Sequence[str]) -> str:
    """glite-wms-job-cancel success text (88-character stripe)."""
    listed = "\n".join(f"- {j}" for j in job_ids)
    return (
        f"\n{stripe('wmproxy cancel Success', 88)}\n\n"
        "The cancellation request has been successfully submitted for the following job(s):\n\n"
        f"{listed}\n\n"
        f"{'=' * 88}\n"
    )


def output_text(job_id: str, directory: str, retrieved: bool) -> str:
    """glite-wms-job-output outcome text (80-character stripe)."""
    rule = "=" * 80
    if retrieved:
        body = (
            f"Output sandbox files for the job:\n{job_id}\n"
            f"have been successfully retrieved and stored in the directory:\n{directory}\n"
        )
    else:
        body = f"No output files to be retrieved for the job:\n{job_id}\n"
    return f"\n{rule}\n\n\t\t\tJOB GET OUTPUT OUTCOME\n\n{body}\n{rule}\n"


def output_nodes_text(job_id: str, directory: str, nodes: Sequence[tuple[str, str, str]]) -> str:
    """glite-wms-job-output text of a compound job: the parent, then one block per
    ``(node name, job id, directory)``."""
    rule = "=" * 80
    blocks = "".join(
        f"\tNode Name:\t{one_line(name)}\n\tJobId:    \t{one_line(node_id)}\n"
        f"\tDir:      \t{one_line(node_dir)}\n\n"
        for name, node_id, node_dir in nodes
    )
    return (
        f"\n{rule}\n\n\t\t\tJOB GET OUTPUT OUTCOME\n\n"
        f"Output sandbox files for the DAG/Collection :\n{job_id}\n"
        f"have been successfully retrieved and stored in the directory:\n{directory}\n\n"
        f"{blocks}{rule}\n"
    )


def list_match_text(matches: Sequence[CEMatch], rank: bool) -> str:
    """glite-wms-job-list-match text (``joblistmatch.cpp``); the failure sentence when empty."""
    if not matches:
        return (
            f"\n{stripe('wmproxy list-match failure')}\n"
            "No Computing Element matching your job requirements has been found!\n\n"
            f"{RULE}\n"
        )
    ces = [one_line(m.ce_id) for m in matches]
    tab = max(9, *(len(ce) for ce in ces))
    lines = [
        "", RULE, "", "\t\t     COMPUTING ELEMENT IDs LIST ",
        " The following CE(s) matching your job requirements have been found:", "",
    ]
    header = "\t*CEId*"
    if rank:
        header += " " * (tab - 9) + "*Rank*"
    lines += [header, ""]
    for ce, m in zip(ces, matches, strict=True):
        lines.append(f" - {ce}" + (" " * (tab - len(ce) + 5) + str(m.rank) if rank else ""))
    lines += ["", RULE, ""]
    return "\n".join(lines) + "\n"


def list_match_json(matches: Sequence[CEMatch], rank: bool) -> str:
    """``{"result": "success", "ceid": [...], "rank": [...]}`` (rank only with --rank)."""
    data: dict[str, Any] = {"result": "success", "ceid": [m.ce_id for m in matches]}
    if rank:
        data["rank"] = [m.rank for m in matches]
    return json.dumps(data)


_MONTHS = ("Jan", "Feb", "March", "Apr", "May", "June", "July", "Aug", "Sept", "Oct", "Nov", "Dec")


def _field(label: str, value: str) -> str:
    """``jobinfo.cpp field``: label padded to 12, ``: value``; nothing for an empty value."""
    if not value:
        return ""
    return f"{label.ljust(12) if len(label) < 12 else label + ' '}: {one_line(value)}\n"


def date_string(epoch: int) -> str:
    """``jobinfo.cpp getDateString``: ``DD Mon YYYY - hh:mm:ss`` in local time."""
    t = time.localtime(epoch)
    return f"{t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} - {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def time_left(seconds: int) -> str:
    """``jobinfo.cpp timeString``: ``<n> days <hh> hours <mm> min <ss> sec`` (zero parts left out)."""
    out = ""
    days, rest = divmod(max(0, seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        out += f"{days} days "
    if hours:
        out += f"{hours:02d} hours "
    if minutes:
        out += f"{minutes:02d} min "
    if secs:
        out += f"{secs:02d} sec "
    return out


def _epoch(value: str) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        return None


def proxy_info_lines(info: ProxyInfo, now: float | None = None) -> str:
    """``jobinfo.cpp printProxyInfo``: the proxy fields, then one block per VO."""
    now = time.time() if now is None else now
    out = "".join(_field(k, v) for k, v in (
        ("Subject", info.subject), ("Issuer", info.issuer), ("Identity", info.identity),
        ("Type", info.type), ("Strength", info.strength),
    ))
    start, end = _epoch(info.start_time), _epoch(info.end_time)
    if start is not None:
        out += _field("StartDate", date_string(start))
    if end is not None:
        out += _field("Expiration", date_string(end))
        out += _field("Timeleft", time_left(end - int(now)))
    for vo in info.vos:
        out += f"=== VO {one_line(vo.vo_name)} extension information ===\n"
        out += "".join(_field(k, v) for k, v in (
            ("VO", vo.vo_name), ("Subject", vo.user), ("Issuer", vo.server), ("srvCA", vo.server_ca), ("URI", vo.uri),
        ))
        out += "".join(_field("Attribute", a) for a in vo.attributes)
        vo_start, vo_end = _epoch(vo.start_time), _epoch(vo.end_time)
        if vo_start is not None:
            out += _field("StartTime", date_string(vo_start))
        if vo_end is not None:
            out += _field("Expiration", date_string(vo_end))
            out += _field("Timeleft", time_left(vo_end - int(now)))
    return out


def info_text(header: str, body: str) -> str:
    """glite-wms-job-info frame: stripe, header line, body, closing rule."""
    return f"\n{stripe('wmproxy info Success')}\n\n{header}\n{body}\n{RULE}\n"


def proxy_info_dict(info: ProxyInfo, now: float | None = None) -> dict[str, Any]:
    """The proxy information as JSON-ready values (epoch seconds, seconds left), under lower case
    keys (docs/cli-json.md)."""
    now = time.time() if now is None else now
    end = _epoch(info.end_time)
    return {
        "subject": info.subject, "issuer": info.issuer, "identity": info.identity, "type": info.type,
        "strength": info.strength, "start_time": _epoch(info.start_time), "end_time": end,
        "time_left": None if end is None else max(0, end - int(now)),
        "vos": [
            {"vo": vo.vo_name, "user": vo.user, "user_ca": vo.user_ca, "server": vo.server, "server_ca": vo.server_ca,
             "uri": vo.uri, "attributes": list(vo.attributes), "start_time": _epoch(vo.start_time),
             "end_time": _epoch(vo.end_time)}
            for vo in info.vos
        ],
    }


def reports_errors_json(func: F) -> F:
    """Like :func:`wmproxy.cli.common.reports_errors`, but a verb called with ``as_json=True``
    prints :func:`error_json` on stdout (and nothing on stderr) before exiting 1."""
    from wmproxy.cli.common import CliError, fail

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (WMProxyClientError, CliError) as exc:
            kind, message = (exc.fault_type, exc.description) if isinstance(exc, WMProxyClientError) else (
                exc.kind, exc.description)
            if kwargs.get("as_json"):
                click.echo(error_json(kind, message))
                sys.exit(1)
            fail(kind, message)

    return wrapper  # type: ignore[return-value]
