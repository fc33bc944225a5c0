"""Text output in the formats of the gLite WMS UI (``peers.md`` §9.1).

Only the tool name changes: ``glite-wms-job-submit Success`` becomes
``wmproxy submit Success``; the sentences scripts look for are kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from wmproxy.client import CEMatch, JobIds, JobStatus, ProxyInfo

RULE = "=" * 74


def stripe(title: str, width: int = 74, char: str = "=") -> str:
    """gLite ``getStripe``: ``char`` × (width/2 − (len/2 + 1)) on both sides of `` title ``."""
    side = char * (width // 2 - (len(title) // 2 + 1))
    return f"{side} {title} {side}"


def delegate_text(endpoint: str, delegation_id: str) -> str:
    """glite-wms-job-delegate-proxy success text (``wmproxy-behaviour.md`` §5.4)."""
    shown = delegation_id or "(automatic: chosen by the service)"
    return (
        f"\n{stripe('wmproxy delegate-proxy Success')}\n\n"
        "Your proxy has been successfully delegated to the WMProxy(s):\n"
        f"{endpoint}\n"
        f"with the delegation identifier: {shown}\n\n"
        f"{RULE}\n"
    )


def submit_text(job: JobIds, jobid_file: str | None = None) -> str:
    """glite-wms-job-submit success text; mentions ``jobid_file`` when ``-o`` was given."""
    saved = (
        f"The job identifier has been saved in the following file:\n{jobid_file}\n\n" if jobid_file else ""
    )
    return (
        f"\n{stripe('wmproxy submit Success')}\n\n"
        "The job has been successfully submitted to the WMProxy\n"
        "Your job identifier is:\n\n"
        f"{job.id}\n\n"
        f"{saved}"
        f"{RULE}\n"
    )


def register_text(job: JobIds, jobid_file: str | None = None) -> str:
    """``submit --register-only`` text: registered, and how to start it (``peers.md`` §9.1)."""
    saved = (
        f"The job identifier has been saved in the following file:\n{jobid_file}\n\n" if jobid_file else ""
    )
    return (
        f"\n{stripe('wmproxy submit Success')}\n\n"
        "The job has been successfully registered to the WMProxy\n"
        "Your job identifier is:\n\n"
        f"{job.id}\n\n"
        f"{saved}"
        "To complete the operation start the job by issuing a submission with the option:\n"
        f" --start {job.id}\n\n"
        f"{RULE}\n"
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


def submit_json(job: JobIds, endpoint: str) -> str:
    """``{"result": "success", "jobid"|"parent": ..., "endpoint": ..., "children": {...}}``."""
    data: dict[str, Any] = {"result": "success"}
    if job.children:
        data["parent"] = job.id
        data["endpoint"] = endpoint
        data["children"] = {c.name or c.id: c.id for c in job.children}
    else:
        data["jobid"] = job.id
        data["endpoint"] = endpoint
    return json.dumps(data)


def _status_block(status: JobStatus, lines: list[str], indent: str = "") -> None:
    lines.append(f"{indent}{'Status info for the Job :'} {status.job_id}")
    lines.append(f"{indent}{'Current Status:'.ljust(20)}{status.display}")
    if status.exit_code is not None:
        lines.append(f"{indent}{'Exit code:'.ljust(20)}{status.exit_code}")
    if status.reason:
        lines.append(f"{indent}{'Status Reason:'.ljust(20)}{status.reason}")


def status_text(statuses: Sequence[JobStatus]) -> str:
    """glite-wms-job-status text: one BOOKKEEPING block per job, nodes indented below it."""
    lines = ["", stripe("wmproxy status Success"), "BOOKKEEPING INFORMATION:", ""]
    for n, status in enumerate(statuses):
        if n:
            lines.append(RULE)
            lines.append("")
        _status_block(status, lines)
        if status.children:
            lines += ["", f"- Nodes information for: {status.job_id}"]
            for child in status.children:
                lines.append("")
                _status_block(child, lines, "    ")
    lines.append(RULE)
    return "\n".join(lines) + "\n"


def _status_dict(status: JobStatus, parent: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"Current Status": status.display}
    if status.exit_code is not None:
        entry["Exit code"] = status.exit_code
    if status.reason:
        entry["Status Reason"] = status.reason
    if parent:
        entry["Parent Job"] = parent
    if status.children:
        entry["Nodes"] = [c.job_id for c in status.children]
    return entry


def status_json(statuses: Sequence[JobStatus]) -> str:
    """``{"<jobid>": {"Current Status": ..., ...}, ...}`` with one key per job and node."""
    data: dict[str, Any] = {}
    for status in statuses:
        data[status.job_id] = _status_dict(status)
        for child in status.children:
            data[child.job_id] = _status_dict(child, status.job_id)
    return json.dumps(data)


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
        f"\tNode Name:\t{name}\n\tJobId:    \t{node_id}\n\tDir:      \t{node_dir}\n\n"
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
    tab = max(9, *(len(m.ce_id) for m in matches))
    lines = [
        "", RULE, "", "\t\t     COMPUTING ELEMENT IDs LIST ",
        " The following CE(s) matching your job requirements have been found:", "",
    ]
    header = "\t*CEId*"
    if rank:
        header += " " * (tab - 9) + "*Rank*"
    lines += [header, ""]
    for m in matches:
        lines.append(f" - {m.ce_id}" + (" " * (tab - len(m.ce_id) + 5) + str(m.rank) if rank else ""))
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
    return f"{label.ljust(12) if len(label) < 12 else label + ' '}: {value}\n"


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
        out += f"=== VO {vo.vo_name} extension information ===\n"
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
    """The proxy information as JSON-ready values (epoch seconds, seconds left)."""
    now = time.time() if now is None else now
    end = _epoch(info.end_time)
    return {
        "Subject": info.subject, "Issuer": info.issuer, "Identity": info.identity, "Type": info.type,
        "Strength": info.strength, "StartTime": _epoch(info.start_time), "EndTime": end,
        "Timeleft": None if end is None else max(0, end - int(now)),
        "VOs": [
            {"VO": vo.vo_name, "User": vo.user, "UserCA": vo.user_ca, "Server": vo.server, "ServerCA": vo.server_ca,
             "URI": vo.uri, "Attributes": list(vo.attributes), "StartTime": _epoch(vo.start_time),
             "EndTime": _epoch(vo.end_time)}
            for vo in info.vos
        ],
    }
