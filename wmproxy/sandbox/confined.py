"""Reading files a job left in its work dir without trusting it (issue 8, confinement).

The job runs as another account and may plant symbolic links, hard links to files it
cannot read, FIFOs or devices in its work dir. The worker (which may read anything)
opens what it collects or samples only through :func:`open_confined`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from wmproxy.errors import SandboxError


class ConfinementError(SandboxError):
    """A file in a job's work dir that the worker must not read: ``reason`` is one of
    ``not produced``, ``symbolic link``, ``hard link``, ``not a regular file``,
    ``outside the work directory``."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def open_confined(work_dir: Path, rel_path: str) -> int:
    """Open ``work_dir/rel_path`` for reading without following any symbolic link: each
    directory component and the file itself are opened relative to the previous one
    with ``O_NOFOLLOW``, so a link the job planted anywhere on the path is refused, and
    the file is opened ``O_NONBLOCK`` so a FIFO cannot block the worker.

    Returns:
        A read descriptor of a regular file with one link (the caller closes it).

    Raises:
        ConfinementError: the file is missing, a symlink (or below one), a hard link,
            not a regular file, or the path leaves ``work_dir`` (absolute, ``..``).
    """
    parts = [p for p in rel_path.split("/") if p not in ("", ".")]
    if rel_path.startswith("/") or not parts or ".." in parts or any("\0" in p for p in parts):
        raise ConfinementError(rel_path, "outside the work directory")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        dir_fd = os.open(work_dir, flags | os.O_DIRECTORY)
    except OSError:
        raise ConfinementError(rel_path, "not produced") from None
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, flags | os.O_DIRECTORY, dir_fd=dir_fd)
            except FileNotFoundError:
                raise ConfinementError(rel_path, "not produced") from None
            except OSError as exc:
                raise ConfinementError(rel_path, _refusal(exc, part, dir_fd)) from None
            os.close(dir_fd)
            dir_fd = next_fd
        try:
            fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            raise ConfinementError(rel_path, "not produced") from None
        except OSError as exc:
            raise ConfinementError(rel_path, _refusal(exc, parts[-1], dir_fd)) from None
    finally:
        os.close(dir_fd)
    st = os.fstat(fd)
    reason = None
    if not stat.S_ISREG(st.st_mode):
        reason = "not a regular file"
    elif st.st_nlink > 1:
        reason = "hard link"
    if reason is not None:
        os.close(fd)
        raise ConfinementError(rel_path, reason)
    os.set_blocking(fd, True)
    return fd


def _refusal(exc: OSError, name: str, dir_fd: int) -> str:
    """Why ``name`` (in ``dir_fd``) could not be opened."""
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        try:
            if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                return "symbolic link"
        except OSError:
            pass
        return "not a regular file"
    return f"unreadable ({exc.strerror})"
