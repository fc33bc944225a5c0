"""The CLI's own error: a local problem reported like a fault."""

from __future__ import annotations


class CliError(Exception):
    """A local problem reported like a fault: ``Error - <kind>: <description>``."""

    def __init__(self, kind: str, description: str) -> None:
        super().__init__(f"{kind}: {description}")
        self.kind = kind
        self.description = description
