"""The CLI's own error: a local problem reported like a fault."""

from __future__ import annotations


class CliError(Exception):
    """A local problem reported like a fault: ``Error - <kind>: <description>``; ``job_id``:
    the job it concerns, when one was registered (``"jobid"`` of the ``--json`` error)."""

    def __init__(self, kind: str, description: str, job_id: str | None = None) -> None:
        super().__init__(f"{kind}: {description}")
        self.kind = kind
        self.description = description
        self.job_id = job_id
