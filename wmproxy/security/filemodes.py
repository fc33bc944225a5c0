"""Modes of the service's private files, checked by every process before it starts.

The privilege split (README "Running jobs as grid users"): gunicorn, the renewal
worker and the execution worker run as the service user; jobs run as mapped grid
accounts. What keeps a job away from the service's secrets is file modes, so a
process refuses to start when one of these files is readable by group or others:

* the store key (``[security] store_key_file``), which unseals every stored proxy;
* the host key (``[security] host_key``): whoever reads it can pose as the service, to clients
  and to MyProxy as the authorised renewer (the fix named is ``chmod 400``: ``init`` does not
  make or change it);
* the SQLite database file and, when present, its ``-wal``, ``-shm`` and ``-journal``
  companions (a PostgreSQL database has no file here).

``wmproxy-admin init`` sets these modes (``wmproxy.admin.initialise``); the error names
the file and both fixes. Only mode bits are looked at (``stat``, symlinks followed as
the process itself would open them); a missing file is not an error here (the process
creates or reports it on its own).

:func:`unmapped_exposure` is the warning every job-running process logs at start when
``[mapping] mode = none``: jobs then run as the service user and can read all of the
above.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from wmproxy.config import ConfigError

if TYPE_CHECKING:
    from wmproxy.config import Settings

#: Suffixes of the files SQLite keeps next to a database file.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


class FileModeError(ConfigError):
    """A private file of the service is readable (or writable) by group or others.

    Attributes:
        path: the offending file.
        mode: its permission bits (e.g. ``0o644``).
    """

    def __init__(self, path: Path, mode: int, fix: str | None = None) -> None:
        self.path = path
        self.mode = mode
        super().__init__(
            f"{path} is accessible to group/others (mode {mode:04o}); it must be readable by the service user only. "
            f"Fix: {fix or f'chmod 600 {path}  (or run: wmproxy-admin init)'}"
        )


def host_key_fix(path: str | Path) -> str:
    """The fix :class:`FileModeError` names for the host key (``init`` does not manage it)."""
    return f"chmod 400 {path}  (a copy owned by the service user: docs/operations.md)"


def sqlite_path(url: str) -> Path | None:
    """The database file of an SQLAlchemy SQLite URL (``sqlite:///rel``, ``sqlite:////abs``,
    ``sqlite+pysqlite:///...``); None for other databases and in-memory SQLite."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0] != "sqlite" or not rest.startswith("/"):
        return None
    path = rest[1:].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)


def private_files(settings: Settings) -> list[Path]:
    """The files that must be 0600 (or stricter): store key, SQLite file and its companions
    (each companion only if it exists)."""
    files = [Path(settings.security.store_key_file)]
    db = sqlite_path(settings.database.url)
    if db is not None:
        files.append(db)
        files.extend(p for p in (Path(f"{db}{suffix}") for suffix in SQLITE_COMPANIONS) if p.exists())
    return files


def check_private_file(path: Path, fix: str | None = None) -> None:
    """Raise :class:`FileModeError` (naming ``fix``, default ``chmod 600``) if ``path`` exists
    and any group/other bit is set.

    Raises:
        FileModeError: mode & 0o077 is not 0.
        OSError: ``path`` exists but cannot be examined (other than "not found").
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        raise FileModeError(path, mode, fix)


def check_host_key_mode(host_key: str | Path) -> None:
    """The host key's mode as :func:`check_private_file` judges it, the fix ``chmod 400``.
    A key this process cannot even examine is left to the TLS checks, which name the file and
    its owner (:func:`wmproxy.monitoring.health.host_pair_problem`).

    Raises:
        FileModeError: group or others have access to it.
    """
    with contextlib.suppress(PermissionError):
        check_private_file(Path(host_key), host_key_fix(host_key))


def check_private_files(settings: Settings) -> None:
    """Refuse to start when the store key, the SQLite database (with its ``-wal``/``-shm``) or
    the host key is accessible to group or others; the first offending file is reported.

    Called at the start of gunicorn's application (``wmproxy.soap.app``), the renewal
    worker, the execution worker and every ``wmproxy-admin`` command except ``init``.

    Raises:
        FileModeError: a file's mode allows group/other access; the message names the
            file and the fix (``chmod 600 <file>`` or ``wmproxy-admin init``; ``chmod 400``
            for the host key).
    """
    for path in private_files(settings):
        check_private_file(path)
    check_host_key_mode(settings.security.host_key)


def unmapped_exposure(settings: Settings) -> str | None:
    """The WARNING text a job-running process logs at start with ``[mapping] mode = none``
    (None when jobs are mapped): what a job can then reach."""
    if settings.mapping.mode != "none":
        return None
    return (
        "[mapping] mode = none: jobs run as the service user itself, so any job can read the store key "
        f"({settings.security.store_key_file}) and with it every stored proxy, the host key, the database, "
        "every other job's files and proxy, and can signal the service's processes. "
        "Use mode = gridmap on a shared or production service (docs/mapping.md)."
    )
