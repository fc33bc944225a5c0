"""The VOMS servers a site knows: ``vomses`` files, as ``voms-proxy-init`` reads them.

Each line names one VOMS server of one VO, five quoted fields (a sixth, the old Globus
version, is ignored)::

    "atlas" "voms2.cern.ch" "15001" "/DC=ch/DC=cern/OU=computers/CN=voms2.cern.ch" "atlas"

alias, host, port, the server's certificate subject (slash form) and the VO. ``#`` starts a
comment. The path may be one file or a directory whose regular files are all read, in name
order (``/etc/vomses``, as the gLite UI and the VOMS clients lay it out). The renewal worker
uses them to refresh a renewed proxy's VOMS attributes (anchors.md §2.2 "VOMS refresh": the
server named in the old AC first, then the VO's servers listed in vomses).
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Bytes read of one vomses file (a site's has a few lines per VO).
MAX_VOMSES_BYTES = 1024 * 1024


@dataclass(frozen=True)
class VomsServer:
    """One VOMS server of a VO: where it listens and the certificate subject it must present.

    Attributes:
        vo: the VO name (``atlas``).
        host: host name or address.
        port: TCP port (1-65535).
        dn: slash-form subject of the server's host certificate.
        alias: the nickname of the vomses line ("" for a server named by an AC).
    """

    vo: str
    host: str
    port: int
    dn: str
    alias: str = ""


def parse_vomses(text: str, origin: str = "vomses") -> list[VomsServer]:
    """The servers of vomses ``text``; a line that is not five or six quoted fields with a port
    in 1-65535 is skipped and logged (with ``origin`` and its line number), as the VOMS clients
    skip it."""
    servers: list[VomsServer] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            fields = shlex.split(stripped, comments=True)
        except ValueError:
            fields = []
        port = fields[2] if len(fields) in (5, 6) else ""
        if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536) or not all(fields[:5]):
            log.warning("%s line %d: not a vomses line (\"alias\" \"host\" \"port\" \"DN\" \"VO\"); skipped",
                        origin, number)
            continue
        alias, host, _, dn, vo = fields[:5]
        servers.append(VomsServer(vo=vo, host=host, port=int(port), dn=dn, alias=alias))
    return servers


def read_vomses(path: str | os.PathLike[str]) -> list[VomsServer]:
    """The servers listed at ``path`` (a file, or a directory of files read in name order).

    A missing path gives ``[]``; an unreadable or oversized file (over
    :data:`MAX_VOMSES_BYTES`) is skipped and logged: a site without vomses still renews, with
    the servers the ACs name.
    """
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    elif root.exists():
        files = [root]
    else:
        return []
    servers: list[VomsServer] = []
    for file in files:
        try:
            with file.open("rb") as stream:
                data = stream.read(MAX_VOMSES_BYTES + 1)
        except OSError as exc:
            log.warning("vomses file %s cannot be read: %s; skipped", file, exc.strerror or exc)
            continue
        if len(data) > MAX_VOMSES_BYTES:
            log.warning("vomses file %s is over %d bytes; skipped", file, MAX_VOMSES_BYTES)
            continue
        servers.extend(parse_vomses(data.decode("utf-8", "replace"), str(file)))
    return servers


def servers_of(vo: str, servers: list[VomsServer]) -> list[VomsServer]:
    """The ``servers`` of ``vo``, in their order, each (host, port) once."""
    seen: set[tuple[str, int]] = set()
    out: list[VomsServer] = []
    for server in servers:
        key = (server.host.lower(), server.port)
        if server.vo == vo and key not in seen:
            seen.add(key)
            out.append(server)
    return out
