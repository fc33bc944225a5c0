"""Sandbox URIs and transfer protocols (``wmproxy-behaviour.md`` §4.3).

This service offers only ``https`` (served by the same process as the SOAP port);
``gsiftp`` is not offered because no GridFTP server backs it (a deliberate change from
the reference, whose default protocol was gsiftp).
"""

from __future__ import annotations

from wmproxy.config import Settings
from wmproxy.errors import InvalidArgumentError
from wmproxy.jdl.sandbox import file_uri

__all__ = ["PROTOCOLS", "file_uri", "sandbox_base_url", "select_protocols", "transfer_protocols"]

PROTOCOLS = ("https",)


def transfer_protocols(settings: Settings) -> list[str]:
    """getTransferProtocols: the protocols sandbox URIs can be given in."""
    return list(PROTOCOLS)


def sandbox_base_url(settings: Settings) -> str:
    """``https://<host>:<port>``: where the sandbox document root is served (§4.3 step 3).

    The storage layer (``FilesystemSandboxStorage(base_url=...)``) prefixes every job
    area URI with it (``JobArea.base_uri`` = ``<this>/SandboxDir/<2ch>/<encoded id>``).
    """
    svc = settings.service
    return f"https://{svc.host}:{svc.port}"


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
