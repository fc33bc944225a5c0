"""Text output in the formats of the gLite WMS UI (``peers.md`` §9.1).

Only the tool name changes: ``glite-wms-job-submit Success`` becomes
``wmproxy submit Success``; the sentences scripts look for are kept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from wmproxy.client import JobIds, JobStatus

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
