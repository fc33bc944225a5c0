"""Sandbox URIs and transfer protocols (``wmproxy-behaviour.md`` §4.3).

This service offers only ``https`` (served by the same process as the SOAP port);
``gsiftp`` is not offered because no GridFTP server backs it (a deliberate change from
the reference, whose default protocol was gsiftp).
"""

from __future__ import annotations

from urllib.parse import quote

from wmproxy.config import Settings
from wmproxy.errors import InvalidArgumentError

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


def file_uri(area_uri: str, name: str) -> str:
    """``<area_uri>/<name>`` with ``name`` percent-encoded (``#``, ``%``, ``?``, spaces...): the
    sandbox edge serves the request path decoded, so ``res%231.txt`` is the file ``res#1.txt``.

    Args:
        area_uri: a job area's ``output_uri`` or ``peek_uri``.
        name: a file name in it, as stored (bytes not UTF-8 kept as they are).
    """
    return f"{area_uri}/{quote(name, safe='', errors='surrogateescape')}"


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
