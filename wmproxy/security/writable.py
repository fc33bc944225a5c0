"""The directories a process must write, probed before it starts.

A systemd unit with ``ProtectSystem=strict`` mounts everything read-only but its
``ReadWritePaths=`` (``/var/lib/wmproxy`` in the shipped units): a ``[sandbox] root`` or
``[execution] work_dir`` elsewhere (a Slurm work root on the shared filesystem) is then
read-only for that process only, and what it should write there fails job by job
(the renewal worker's renewed proxies never reach a Slurm job, which aborts when its
first copy expires). So the service, the execution worker and the renewal worker
create and remove a file in each directory they write at start, and refuse to start
with the directory, its setting and the unit setting that fixes it.

A directory not created yet is probed at its nearest existing ancestor, where the
process (or another one of the service) will create it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from wmproxy.config import ConfigError

#: Prefix of the probe file (removed at once).
PROBE_PREFIX = ".wmproxy-write-probe-"


class UnwritableDirectoryError(ConfigError):
    """A directory the process must write cannot be written by it."""


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def check_writable_dir(path: str, setting: str, unit: str) -> None:
    """Create and remove a file in ``path`` (or its nearest existing ancestor while it is missing).

    Args:
        path: the directory.
        setting: its configuration setting, for the message (``[execution] work_dir``).
        unit: the systemd unit of the process, for the message (``wmproxy-renewal.service``).

    Raises:
        UnwritableDirectoryError: it cannot be written; the message names the directory,
            the setting, the error and ``ReadWritePaths=``.
    """
    directory = Path(os.path.abspath(path))
    probed = _existing(directory)
    try:
        fd, name = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=probed)
    except OSError as exc:
        where = "" if probed == directory else f" (not created yet; its parent {probed} is not writable either)"
        raise UnwritableDirectoryError(
            f"{setting} {directory} is not writable by this process{where}: {exc.strerror or exc}; under systemd "
            f"add it to the unit's ReadWritePaths= (`systemctl edit {unit}`: [Service] ReadWritePaths={directory}, "
            "docs/operations.md)") from None
    os.close(fd)
    os.unlink(name)
