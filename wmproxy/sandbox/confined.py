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


def confined_parts(rel_path: str) -> list[str] | None:
    """The components of ``rel_path`` below its work directory (empty ones and ``.`` left
    out; ``[]`` for the directory itself), None when the path leaves it (absolute, ``..``) or
    holds a NUL."""
    parts = [p for p in rel_path.split("/") if p not in ("", ".")]
    if rel_path.startswith("/") or ".." in parts or any("\0" in p for p in parts):
        return None
    return parts


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
    parts = confined_parts(rel_path)
    if not parts:
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


def open_confined_dir(top_fd: int, parts: tuple[str, ...], made: list[str]) -> int:
    """Open the directory ``parts`` below the directory ``top_fd`` for writing into it, making
    each missing component (mode 0700, owned by this process) on the way: each is opened
    relative to the previous one with ``O_NOFOLLOW``, so no symbolic link is followed.

    Args:
        top_fd: descriptor of the directory the path starts from.
        parts: the path's components, each one file name (no ``/``, ``.``, ``..``); ``()`` is
            ``top_fd`` itself (a new descriptor of it).
        made: the relative path (``/``-joined) of each directory made here is appended to it.

    Returns:
        A descriptor of the directory (the caller closes it).

    Raises:
        ConfinementError: a component is a symbolic link (``symbolic link``), another
            non-directory (``not a regular file``), unusable, or not one file name
            (``outside the work directory``).
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_DIRECTORY
    rel = "/".join(parts)
    if any(p in ("", ".", "..") or "/" in p or "\0" in p for p in parts):
        raise ConfinementError(rel, "outside the work directory")
    dir_fd = os.open(".", flags, dir_fd=top_fd)
    try:
        for i, part in enumerate(parts):
            try:
                os.mkdir(part, 0o700, dir_fd=dir_fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise ConfinementError(rel, f"unusable ({exc.strerror})") from None
            else:
                made.append("/".join(parts[:i + 1]))
            try:
                next_fd = os.open(part, flags, dir_fd=dir_fd)
            except OSError as exc:
                raise ConfinementError(rel, _refusal(exc, part, dir_fd)) from None
            os.close(dir_fd)
            dir_fd = next_fd
    except BaseException:
        os.close(dir_fd)
        raise
    return dir_fd
