"""The ends of attempts an execution worker holds but the database has not taken, kept on disk
so that they outlive the worker.

A worker records an attempt's end only after releasing its work dir (a resubmission must not
find the old one). When the database refuses the record (an outage) the end lives in the
worker's memory (:attr:`~wmproxy.execution.worker.ExecutionWorker.unrecorded`). Should the
worker then stop or die, adoption would find the job Running with no work dir: a shallow
failure, and a Done job run again. So the worker writes the ends it keeps to
``<work root>/.unrecorded-ends/<worker name>.json`` each time the database refuses them, and
removes the file once they are recorded. The next worker on the host (this one restarted, or a
peer adopting a dead worker's jobs) takes over the files of workers that are gone before it
adopts: their ends are recorded as they would have been, and their jobs are not adopted.

Recording an end twice is harmless (:class:`~wmproxy.services.retries.AttemptEnd`'s attempt
guard, and a Done job is never Done again), so two workers taking the same file is safe.

File (JSON, 0600, in a 0700 directory of the worker's user, written to a temporary file, synced
and renamed)::

    {"worker": "<name>", "host": "<host name>", "pid": <pid>, "written_at": "<ISO 8601 UTC>",
     "ends": [["<job id>", {"state": "Done", "exit_code": 0, "reason": null,
               "payload_started": true, "retryable": true, "output_bytes": 12, "attempt": 0}]]}

No credential is written: job ids, states, reasons and counts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from wmproxy.domain import JobState, to_filename, utcnow
from wmproxy.services.retries import AttemptEnd

log = logging.getLogger(__name__)

#: The journal directory's name below the work root.
DIR_NAME = ".unrecorded-ends"
_SUFFIX = ".json"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


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


def journal_path(work_root: Path, worker: str) -> Path:
    """The journal file of worker ``worker`` below ``work_root``."""
    return work_root / DIR_NAME / f"{to_filename(worker)}{_SUFFIX}"


def save(work_root: Path, worker: str, host: str, pid: int, ends: Sequence[tuple[str, AttemptEnd]]) -> Path:
    """Write ``ends`` as worker ``worker``'s journal, replacing the previous one atomically and
    durably (the file and its directory synced); creates the journal directory (0700).

    Returns:
        The journal's path.

    Raises:
        OSError: it cannot be written (e.g. the work root's file system is full), or the
            journal directory is not a directory of this user closed to others.
    """
    path = journal_path(work_root, worker)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path.parent, 0o700)
    dir_fd = os.open(path.parent, _DIR_FLAGS)
    try:
        st = os.fstat(dir_fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise PermissionError(f"{path.parent} must be a directory of the worker's user closed to others")
        data = json.dumps({
            "worker": worker, "host": host, "pid": pid, "written_at": utcnow().isoformat(),
            "ends": [[job_id, {**asdict(end), "state": end.state.value}] for job_id, end in ends],
        }).encode()
        tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=dir_fd)
        try:
            try:
                with os.fdopen(fd, "wb", closefd=False) as out:
                    out.write(data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:  # the previous journal stays whole; no temporary file is left
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def remove(path: Path) -> None:
    """Remove a journal whose ends are all recorded (gone already: nothing to do).

    Raises:
        OSError: it cannot be removed.
    """
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def left_behind(work_root: Path, host: str, alive: Callable[[int, dt.datetime], bool],
                own: tuple[str, int]) -> Iterator[Journal]:
    """The journals below ``work_root`` of workers on ``host`` that are gone: their process
    is not alive (``alive(pid, written_at)`` False), or the journal is of worker ``own[0]``
    written by another process than ``own[1]`` (this worker's previous life). Journals of
    other hosts (a work root shared with Slurm nodes) and of live workers are left alone; an
    unreadable or malformed one is logged and skipped."""
    directory = work_root / DIR_NAME
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    except OSError as exc:
        log.error("cannot list the ends journals in %s: %s", directory, exc)
        return
    for name in names:
        if name.startswith(".") or not name.endswith(_SUFFIX):
            continue
        path = directory / name
        try:
            journal = _read(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("ends journal %s is unreadable and left alone: %s", path, exc)
            continue
        if journal.host != host:
            continue
        if journal.worker == own[0]:
            if journal.pid != own[1]:
                yield journal
        elif not alive(journal.pid, journal.written_at):
            yield journal


def _read(path: Path) -> Journal:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as source:
        if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
            raise ValueError("not a regular file")
        doc = json.loads(source.read())
    ends = []
    for job_id, fields in doc["ends"]:
        end = AttemptEnd(**{**fields, "state": JobState(fields["state"])})
        ends.append((str(job_id), end))
    written_at = dt.datetime.fromisoformat(doc["written_at"])
    return Journal(path, str(doc["worker"]), str(doc["host"]), int(doc["pid"]), written_at, ends)
