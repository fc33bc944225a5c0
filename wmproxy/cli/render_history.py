"""Text and JSON of ``logging-info`` and of ``status --all`` (issue 12).

``logging-info`` follows glite-wms-job-logging-info (the L&B event dump: a stripe,
``LOGGING INFORMATION:``, then per job ``Printing info for the Job : <id>`` and one
``Event: <name>`` block per event with ``- <Field> = <value>`` lines); event names are the
L&B ones (RegJob, Transfer, EnQueued, Match, ...), times are UTC. ``status --all`` prints a
compact table (one line per job, in the spirit of ``condor_q``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from wmproxy.cli.common import one_line
from wmproxy.cli.render import RULE, JobError, batch_json, ctime, iso, stripe, summary_dict
from wmproxy.domain import JobEvent, JobHistory, JobSummary

#: L&B event name shown for each event kind of the service.
EVENT_NAMES = {
    "registered": "RegJob",
    "sandbox_transferred": "Transfer",
    "enqueued": "EnQueued",
    "matched": "Match",
    "scheduled": "DeQueued",
    "backend_submitted": "Accepted",
    "running": "Running",
    "done": "Done",
    "aborted": "Abort",
    "cancel_requested": "Cancel",
    "cancelled": "Cancel",
    "cleared": "Clear",
    "purged": "Purge",
    "retry": "Resubmission",
    "proxy_renewed": "ProxyRenewal",
    "renewal_failed": "ProxyRenewal",
    "state": "StatusChange",
}


def kinds_for(names: Sequence[str]) -> list[str]:
    """The event kinds ``--event`` names select: a kind (``matched``) or an L&B name (``Match``,
    any case, which may stand for several kinds). Unknown names are returned unchanged, for
    the service to refuse."""
    kinds: list[str] = []
    for name in names:
        matching = [k for k, n in EVENT_NAMES.items() if n.lower() == name.lower() or k == name.lower()]
        for kind in matching or [name]:
            if kind not in kinds:
                kinds.append(kind)
    return kinds


def _field(label: str, value: object) -> str:
    return f"- {label.ljust(27)}=    {one_line(value)}"


def _event_block(job_id: str, event: JobEvent, verbosity: int) -> list[str]:
    lines = ["\t---", f"Event: {one_line(EVENT_NAMES.get(event.kind, event.kind))}"]
    if verbosity >= 3:
        lines.append(_field("Jobid", job_id))
        lines.append(_field("Kind", event.kind))
    if verbosity >= 1 and event.reason:
        lines.append(_field("Reason", event.reason))
    if verbosity >= 1:
        lines.append(_field("Source", event.source))
    if verbosity >= 2:
        lines.append(_field("Status", event.state))
    lines.append(_field("Timestamp", ctime(event.at)))
    return lines


def logging_info_text(histories: Sequence[JobHistory], verbosity: int = 1) -> str:
    """glite-wms-job-logging-info text.

    -v 0: event name and timestamp; 1: + source and reason; 2: + the job's state after the
    event; 3: + job id and the service's event kind.
    """
    lines = ["", stripe("wmproxy logging-info Success"), "", "LOGGING INFORMATION:", ""]
    for n, found in enumerate(histories):
        if n:
            lines.append("")
        lines.append(f"Printing info for the Job : {one_line(found.job.job_id)}")
        lines.append(" ")
        for event in found.events:
            lines += _event_block(found.job.job_id, event, verbosity)
    lines.append(RULE)
    return "\n".join(lines) + "\n"


def event_dict(event: JobEvent) -> dict[str, Any]:
    return {"event": EVENT_NAMES.get(event.kind, event.kind), "kind": event.kind, "timestamp": iso(event.at),
            "source": event.source, "state": event.state, "reason": event.reason}


def logging_info_json(histories: Sequence[JobHistory], errors: Sequence[JobError] = ()) -> str:
    """``{"result": ..., "jobs": [{"jobid": ..., "events": [...]}], "errors": [...]}`` (docs/cli-json.md)."""
    return batch_json("jobs", [{"jobid": h.job.job_id, "events": [event_dict(e) for e in h.events]}
                               for h in histories], errors)


def _display(summary: JobSummary) -> str:
    if summary.state == "Done" and summary.exit_code is not None:
        return "Done (Success)" if summary.exit_code == 0 else "Done (Exit Code !=0)"
    return summary.state


def _nodes(summary: JobSummary) -> str:
    return f" [{sum(summary.node_states.values())} nodes]" if summary.node_states else ""


def job_table(jobs: Sequence[JobSummary], total: int | None = None) -> str:
    """``status --all``: one line per job (id, status, submitted, destination), then the counts."""
    headers = ("JOBID", "STATUS", "SUBMITTED (UTC)", "DESTINATION")
    rows = [(one_line(j.job_id), one_line(_display(j)) + _nodes(j), j.submitted.strftime("%Y-%m-%d %H:%M:%S"),
             one_line(j.destination or "-")) for j in jobs]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    counts = Counter(j.state for j in jobs)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    shown = len(jobs) if total is None else total
    out = [line(headers), *(line(r) for r in rows), "", f"{shown} job(s)" + (f": {summary}" if summary else "")]
    return "\n".join(out) + "\n"


def job_list_json(jobs: Sequence[JobSummary]) -> str:
    """``status --all --json``: ``{"result": "success", "jobs": [...], "total": n, "errors": []}``."""
    items = [{"jobid": j.job_id, "current_status": _display(j), "state": j.state, "exit_code": j.exit_code,
              "status_reason": j.reason, **summary_dict(j)} for j in jobs]
    return batch_json("jobs", items, total=len(jobs))
