"""Sandbox URIs and transfer protocols (``wmproxy-behaviour.md`` §4.3).

This service offers only ``https`` (served by the same process as the SOAP port);
``gsiftp`` is not offered because no GridFTP server backs it (a deliberate change from
the reference, whose default protocol was gsiftp).
"""

from __future__ import annotations

from wmproxy.config import Settings
from wmproxy.domain import job_relative_dir
from wmproxy.errors import InvalidArgumentError

PROTOCOLS = ("https",)


def transfer_protocols(settings: Settings) -> list[str]:
    """getTransferProtocols: the protocols sandbox URIs can be given in."""
    return list(PROTOCOLS)


def job_base_uri(settings: Settings, job_id: str) -> str:
    """``https://<host>:<port>/SandboxDir/<2ch>/<encoded job id>`` (the WMPInputSandboxBaseURI)."""
    svc = settings.service
    return f"https://{svc.host}:{svc.port}/{job_relative_dir(job_id, settings.sandbox.dir_name)}"


def select_protocols(protocol: str | None, *, default: str = "all") -> tuple[str, ...]:
    """Protocols named by a request's ``protocol`` argument (§4.3 step 2).

    Empty means ``default`` ("all" for the DestURI operations, "default" for
    getOutputFileList); "all", "default" and "https" all give https here.

    Raises:
        InvalidArgumentError: "requested protocol not available".
    """
    protocol = (protocol or default).strip()
    if protocol in ("all", "default") or protocol in PROTOCOLS:
        return PROTOCOLS
    raise InvalidArgumentError(f"requested protocol not available: {protocol}")
