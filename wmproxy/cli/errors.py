"""The CLI's own error: a local problem reported like a fault."""

from __future__ import annotations


def unreadable(exc: OSError | UnicodeDecodeError) -> str:
    """Why a text file could not be read: the system's reason, or that it is not UTF-8."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    return exc.strerror or str(exc)


class CliError(Exception):
    """A local problem reported like a fault: ``Error - <kind>: <description>``; ``job_id``:
    the job it concerns, when one was registered (``"jobid"`` of the ``--json`` error)."""

    def __init__(self, kind: str, description: str, job_id: str | None = None) -> None:
        super().__init__(f"{kind}: {description}")
        self.kind = kind
        self.description = description
        self.job_id = job_id
