"""Open the service's state files without following a link another user planted.

``wmproxy-admin`` runs as root (``init --user``, ``migrate``, ``drain``) on paths in
directories the service user owns. A symbolic link the service user puts there in place of
the work root, the database or the drain file would otherwise make root chown, chmod,
create or overwrite whatever it points to (``/etc``, ``/etc/shadow``, ``/etc/nologin``).

:func:`open_state_path` walks the path one component at a time from ``/`` (``openat``): a
symbolic link is followed only where it sits in a directory that root owns and nobody
else may write (``/var/run`` → ``/run``); elsewhere, and always for the last component, a
link is refused. The file opened must be of the expected type, a regular file must have
one link (a hard link to a root file is refused), and its owner must be root, this
process's user, the owner of its directory or one of ``owners``: a file of another user
is refused. The caller then changes it through the descriptor (``fchmod``, ``fchown``).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Collection
from pathlib import Path

from wmproxy.config import ConfigError

_CHECK = ("check who replaced it (the service user owns this directory), then put the real one back "
          "or point the configuration at the real path")


class UnsafePathError(ConfigError):
    """A state path is a symbolic link, of the wrong type, hard-linked or owned by another user."""

    def __init__(self, path: Path | str, what: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path} {what}: refused (wmproxy-admin follows no link in the service's state and "
                         f"changes no file of another user); {_CHECK}")


def _trusted(directory: os.stat_result) -> bool:
    """A directory only root can change: a link in it was placed by root."""
    return directory.st_uid == 0 and not directory.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _why_not(parent: int, name: str, directory: bool) -> str:
    """What ``name`` in ``parent`` is when opening it as expected failed with ELOOP/ENOTDIR."""
    try:
        found = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError:
        return "cannot be opened"
    if stat.S_ISLNK(found.st_mode):
        return "is a symbolic link"
    return "is not a directory" if directory else "is not a regular file"


def _step(parent: int, name: str, here: Path, new_dir: Callable[[int, Path], None] | None) -> int:
    """The directory ``name`` in ``parent`` (created, and ``new_dir`` called on it, when
    missing and ``new_dir`` is given), opened without following a link unless ``parent``
    is root's alone."""
    follow = 0 if _trusted(os.fstat(parent)) else os.O_NOFOLLOW
    flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        return os.open(name, flags | follow, dir_fd=parent)
    except FileNotFoundError:
        if new_dir is None:
            raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePathError(here, _why_not(parent, name, True)) from None
        raise
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
    except FileExistsError:  # made meanwhile: opened as any existing one
        return _step(parent, name, here, None)
    fd = _last(parent, name, here, directory=True, flags=os.O_RDONLY, create_mode=None, owners=())
    try:
        new_dir(fd, here)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _last(parent: int, name: str, path: Path, *, directory: bool, flags: int, create_mode: int | None,
          owners: Collection[int] | None) -> int:
    """The last component, never through a link; its type, links and owner checked."""
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_DIRECTORY if directory else os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if create_mode is None:
            fd = os.open(name, flags, dir_fd=parent)
        else:
            fd = os.open(name, flags | os.O_CREAT, create_mode, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
            raise UnsafePathError(path, _why_not(parent, name, directory)) from None
        raise
    try:
        found = os.fstat(fd)
        if directory != stat.S_ISDIR(found.st_mode) or not (directory or stat.S_ISREG(found.st_mode)):
            raise UnsafePathError(path, "is not a directory" if directory else "is not a regular file")
        if not directory and found.st_nlink != 1:
            raise UnsafePathError(path, f"has {found.st_nlink} hard links")
        allowed = {0, os.geteuid(), os.fstat(parent).st_uid, *owners} if owners is not None else {found.st_uid}
        if found.st_uid not in allowed:
            raise UnsafePathError(path, f"is owned by uid {found.st_uid}, neither root nor the service user")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_state_path(path: str | os.PathLike[str], *, directory: bool = False, flags: int = os.O_RDONLY,
                    create_mode: int | None = None, owners: Collection[int] | None = (),
                    new_dir: Callable[[int, Path], None] | None = None) -> int:
    """A descriptor of ``path`` opened as the module doc says (close it).

    Args:
        path: the file or directory (relative: to the working directory).
        directory: expect a directory (opened ``O_RDONLY | O_DIRECTORY``).
        flags: the access flags of a file (``O_RDONLY``, ``O_WRONLY``: truncate it with
            ``ftruncate`` once opened, ``O_TRUNC`` would cut a file before it is checked).
        create_mode: create a missing file with this mode (``O_CREAT``; never through a link).
        owners: uids allowed to own it besides root, this process's user and its directory's
            owner; None: any owner (a directory only looked into, such as the drain file's).
        new_dir: create missing directories on the way, and ``path`` itself when ``directory``
            (mode 0700 until this is called with each one's descriptor and path, parents first).

    Raises:
        UnsafePathError: a link on the way where only root may put one, or the path is of
            the wrong type, hard-linked or owned by another user; it names the path.
        OSError: it does not exist (and may not be created) or cannot be opened.
    """
    full = Path(os.path.abspath(path))
    if full == Path("/"):
        raise UnsafePathError(full, "is the root directory")
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        here = Path("/")
        for name in full.parts[1:-1]:
            here = here / name
            child = _step(fd, name, here, new_dir)
            os.close(fd)
            fd = child
        created = False
        if directory and new_dir is not None:
            try:
                os.mkdir(full.name, 0o700, dir_fd=fd)  # never through a link: EEXIST
                created = True
            except FileExistsError:
                pass
        last = _last(fd, full.name, full, directory=directory, flags=flags, create_mode=create_mode,
                     owners=owners)
        if created and new_dir is not None:
            try:
                new_dir(last, full)
            except BaseException:
                os.close(last)
                raise
        return last
    finally:
        os.close(fd)
