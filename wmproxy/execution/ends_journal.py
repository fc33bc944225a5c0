"""The ends of attempts an execution worker holds but the database has not taken, kept on disk
so that they outlive the worker.

A worker records an attempt's end only after releasing its work dir (a resubmission must not
find the old one). Until the database takes the record the end lives in the worker's memory
(:attr:`~wmproxy.execution.worker.ExecutionWorker.unrecorded`): for the moment of the commit,
or for as long as an outage lasts. Should the worker stop or die meanwhile, adoption would find
the job Running with no work dir: a shallow failure, and a Done job run again. So the worker
writes a cycle's ends to ``<work root>/.unrecorded-ends/<host>.<pid>.<life>.<worker name>.json``
(``life``: a random token per process life) before
it releases their work dirs (not synced: what a killed process wrote is still read; a host crash
loses the unsynced status files too), writes the file again, synced, as soon as the database
refuses them, and removes it once they are recorded. Any worker on the host takes over the files
of workers whose process is gone (this one restarted, a peer) and records their ends; no worker
adopts a job that a journal on its host holds an end of, whoever holds it.

A worker takes a journal over only under its ``flock`` (:func:`lock`), held until the file is
removed, so two workers never act on the same ends (the taker may release a work dir the dead
writer left). Recording an end twice is harmless all the same
(:class:`~wmproxy.services.retries.AttemptEnd`'s attempt guard; an ended job without a pending
``cancel`` request is never ended again, nor are its output bytes counted again).

File (JSON, 0600, in a 0700 directory of the worker's user, written to a temporary file, synced
when kept through an outage, and renamed)::

    {"worker": "<name>", "host": "<host name>", "pid": <pid>, "written_at": "<ISO 8601 UTC>",
     "ends": [["<job id>", {"state": "Done", "exit_code": 0, "reason": null,
               "payload_started": true, "retryable": true, "output_bytes": 12, "attempt": 0}]]}

No credential is written: job ids, states, reasons and counts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from wmproxy.domain import JobState, to_filename, utcnow
from wmproxy.services.retries import AttemptEnd

log = logging.getLogger(__name__)

#: The journal directory's name below the work root.
DIR_NAME = ".unrecorded-ends"
_SUFFIX = ".json"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Bytes a journal may have at most (a worker holds at most its slots' and read-ahead's ends).
MAX_BYTES = 16 * 1024 * 1024
#: Characters of the worker's name kept in the file name (the file holds the whole name).
_NAME_ROOM = 100
#: Process ids are below this (the kernel's ``pid_max`` is at most 2**22).
_PID_LIMIT = 2**22 + 1
#: Times the directory is read again when a journal vanishes while it is read.
_RESCANS = 5
#: Errors of reading a journal that say nothing of the journal (the process or the disk).
_PASSING = frozenset({errno.EIO, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EINTR, errno.EAGAIN})
_END_NAMES = tuple(field.name for field in fields(AttemptEnd))
_END_FIELDS = set(_END_NAMES)


@dataclass(frozen=True)
class Journal:
    """One worker's journal as read from disk.

    Attributes:
        path: the file.
        worker: the name of the worker that wrote it.
        host: its host name.
        pid: its process id.
        written_at: when it was written (UTC).
        ends: the ends it keeps, (job id, end), in the order they were kept.
    """

    path: Path
    worker: str
    host: str
    pid: int
    written_at: dt.datetime
    ends: list[tuple[str, AttemptEnd]]


def journal_path(work_root: Path, host: str, pid: int, worker: str, life: str = "") -> Path:
    """The journal file of the worker process ``pid`` named ``worker`` on ``host`` below
    ``work_root``, ``life`` a token the process chose at random (one file per process life: a
    name reused by another process, a pid reused by a restarted worker as pid 1 of a container,
    or another host of a shared work root never shares it)."""
    pid_part = f"{pid}.{life}" if life else str(pid)
    return work_root / DIR_NAME / f"{to_filename(host)}.{pid_part}.{to_filename(worker)[:_NAME_ROOM]}{_SUFFIX}"


def lock(path: Path) -> int | None:
    """Take the journal ``path`` for this process: its exclusive ``flock``, without waiting,
    held by the returned descriptor until it is closed (or the process ends); None when
    another process holds it, the file is gone (taken over and removed meanwhile) or cannot be
    opened (logged). A worker takes a gone worker's journal over only under this lock, so two
    never act on the same ends. On a file system without ``flock`` (NFS without its lock
    manager, Lustre mounted ``noflock``) the journal is taken without the lock (logged).
    The file is opened for writing: NFS grants an exclusive lock only on such a descriptor.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.error("ends journal %s cannot be opened to be taken over: %s", path, exc)
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as exc:
            log.warning("ends journal %s taken over without a lock (%s): the file system has no flock", path, exc)
        if os.fstat(fd).st_nlink == 0:  # removed by the worker that held it before this lock
            os.close(fd)
            return None
    except OSError as exc:
        log.error("ends journal %s cannot be taken over: %s", path, exc)
        os.close(fd)
        return None
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd


def save(work_root: Path, worker: str, host: str, pid: int, ends: Sequence[tuple[str, AttemptEnd]], *,
         durable: bool = True, life: str = "", written_at: dt.datetime | None = None) -> Path:
    """Write ``ends`` as the journal of worker process ``pid``, replacing its previous one
    atomically and, with ``durable``, durably (the file and its directory synced); creates the
    journal directory (0700). Without ``durable`` the journal outlives the worker's process but
    not a crash of the host (the worker's journal of a cycle's ends before their commit).
    ``written_at`` (UTC, default now) is what takers compare the writer's process with: a
    journal split off a gone worker's keeps that journal's time, so that a process that took
    the pid since is not taken for the writer.

    Returns:
        The journal's path.

    Raises:
        OSError: it cannot be written (e.g. the work root's file system is full), or the
            journal directory is not a directory of this user closed to others.
    """
    path = journal_path(work_root, host, pid, worker, life)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path.parent, 0o700)
    dir_fd = _open_dir(path.parent)
    try:
        data = json.dumps({
            "worker": worker, "host": host, "pid": pid, "written_at": (written_at or utcnow()).isoformat(),
            "ends": [[job_id, _end_fields(end)] for job_id, end in ends],
        }).encode()
        tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
        try:
            try:
                with os.fdopen(fd, "wb", closefd=False) as out:
                    out.write(data)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:  # the previous journal stays whole; no temporary file is left
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        if durable:
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def _end_fields(end: AttemptEnd) -> dict[str, Any]:
    """The end's fields as JSON values, in their order (what ``dataclasses.asdict`` gives, without
    its deep copies: a tenth of the time; the worker writes every cycle's ends)."""
    values = {name: getattr(end, name) for name in _END_NAMES}
    values["state"] = end.state.value
    return values


def remove(path: Path) -> None:
    """Remove a journal whose ends are all recorded (gone already: nothing to do).

    Raises:
        OSError: it cannot be removed.
    """
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def journals(work_root: Path, host: str) -> list[Journal] | None:
    """The journals below ``work_root`` written on ``host`` (those of other hosts, on a work
    root shared with Slurm nodes, are their workers' and are not read). A file that is not a
    journal this user wrote (a link, another owner, too large, not one, a field of the wrong
    type) is logged and skipped. A file removed while it is read (a worker took it over and
    holds its ends in its own, written first) has the directory read again, so the taker's
    journal is seen.

    Returns:
        The journals ([] without a journal directory), or None (logged) when the directory
        cannot be read (not a directory of this user closed to others), a journal cannot be
        read for a reason that says nothing of it (an I/O error, no file descriptor left), or
        the directory kept changing while read: which jobs the journals hold is then not known.
    """
    directory = work_root / DIR_NAME
    prefix = f"{to_filename(host)}."
    for _pass in range(_RESCANS):
        try:
            dir_fd = _open_dir(directory)
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.error("cannot read the ends journals in %s: %s", directory, exc)
            return None
        try:
            found = _scan(dir_fd, directory, prefix, host)
        except FileNotFoundError:
            continue  # taken over meanwhile: read the directory again
        except OSError as exc:
            log.error("cannot read the ends journals in %s: %s", directory, exc)
            return None
        finally:
            os.close(dir_fd)
        return found
    log.error("the ends journals in %s kept changing while read: %d passes", directory, _RESCANS)
    return None


def _scan(dir_fd: int, directory: Path, prefix: str, host: str) -> list[Journal]:
    """Read this host's journals in the directory open as ``dir_fd``.

    Raises:
        FileNotFoundError: a listed journal was removed before it was read.
        OSError: the directory cannot be listed.
    """
    found = []
    for name in sorted(os.listdir(dir_fd)):
        if not name.startswith(prefix) or not name.endswith(_SUFFIX):
            continue
        try:
            journal = _read(dir_fd, directory / name)
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            if isinstance(exc, FileNotFoundError) or (isinstance(exc, OSError) and exc.errno in _PASSING):
                raise  # removed meanwhile, or the journal may be fine: which jobs it holds is not known
            log.error("ends journal %s is unreadable and left alone: %s", directory / name, exc)
            continue
        if journal.host == host:
            found.append(journal)
    return found


def _open_dir(directory: Path) -> int:
    """The journal directory, opened without following a link.

    Raises:
        OSError: it cannot be opened, or is not a directory of this user closed to others
            (PermissionError).
    """
    dir_fd = os.open(directory, _DIR_FLAGS)
    st = os.fstat(dir_fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o077:
        os.close(dir_fd)
        raise PermissionError(f"{directory} must be a directory of the worker's user closed to others")
    return dir_fd


def _read(dir_fd: int, path: Path) -> Journal:
    """One journal, every field checked.

    Raises:
        FileNotFoundError: it was removed meanwhile.
        OSError, ValueError, KeyError, TypeError, RecursionError: it is not a journal of this user.
    """
    fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    with os.fdopen(fd, "rb") as source:
        st = os.fstat(source.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise ValueError("not a regular file of the worker's user closed to others")
        raw = source.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES} bytes")
    doc = json.loads(raw)
    written_at = dt.datetime.fromisoformat(_typed(doc, "written_at", str))
    if written_at.tzinfo is None:
        raise ValueError("written_at has no time zone")
    pid = _typed(doc, "pid", int)
    if not 0 < pid < _PID_LIMIT:
        raise ValueError(f"pid {pid} out of range")
    ends = []
    for item in _typed(doc, "ends", list):
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], dict)):
            raise ValueError("an end is not [job id, fields]")
        job_id, values = item
        if set(values) != _END_FIELDS:
            raise ValueError(f"the end of {job_id} has the fields {sorted(values)}")
        exit_code, attempt = _typed(values, "exit_code", int, none=True), _typed(values, "attempt", int, none=True)
        output_bytes = _typed(values, "output_bytes", int)
        if output_bytes < 0 or (attempt is not None and attempt < 0):
            raise ValueError(f"the end of {job_id} has a negative count")
        ends.append((job_id, AttemptEnd(
            JobState(_typed(values, "state", str)), exit_code=exit_code,
            reason=_typed(values, "reason", str, none=True), payload_started=_typed(values, "payload_started", bool),
            retryable=_typed(values, "retryable", bool), output_bytes=output_bytes, attempt=attempt)))
    return Journal(path, _typed(doc, "worker", str), _typed(doc, "host", str), pid, written_at, ends)


def _typed(doc: dict[str, Any], key: str, kind: type, *, none: bool = False) -> Any:
    """``doc[key]`` if it is a ``kind`` (a bool is not an int), or None when ``none`` allows it.

    Raises:
        KeyError: it is missing.
        ValueError: it has another type.
    """
    value = doc[key]
    if value is None and none:
        return value
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{key} is not a {kind.__name__}")
    return value
