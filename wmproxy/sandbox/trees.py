"""Directory trees of any depth, totalled and removed without recursion and without following a
symbolic link: job areas and work dirs.

A job makes a tree as deep as its disk lets it (``while :; do mkdir a && cd a; done``), and a
client could build one in an input sandbox. On Python 3.11 :func:`shutil.rmtree` and
:func:`os.walk` recurse once per level (RecursionError past about 1,000 levels: it ended the
execution worker, and made every upload, jobPurge and purge pass of such a job fail); on 3.13
``rmtree`` keeps a descriptor open per level (EMFILE past the descriptor limit) and ``os.walk``
builds paths that pass PATH_MAX.

The walk here keeps its own stack and at most :data:`OPEN_DIRS` descriptors open, whatever the
depth. Each directory is opened relative to its parent's descriptor with ``O_NOFOLLOW``, so a
symlink is never entered. Deeper than :data:`OPEN_DIRS` levels, an ancestor's descriptor is
closed and reopened through ``..`` on the way back, and that ``..`` must be the directory seen on
the way down (device and inode): a directory moved out of the tree meanwhile stops the walk
(:class:`TreeChangedError`) before it touches anything outside.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import logging
import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Directory descriptors a walk holds at most, besides its top's.
OPEN_DIRS = 32
#: Entries :func:`remove_tree` removes between two looks at its ``deadline``.
REMOVALS_PER_CHECK = 256

#: What ``flock`` of a directory fails with on a file system without it (NFS emulates it with
#: byte-range locks, which need a file open for writing: EBADF; Lustre mounted ``noflock``: ENOSYS).
NO_FLOCK_ERRNOS = (errno.EBADF, errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)
#: (what goes on, device) where :func:`flock_directory` found no ``flock`` (logged once per process).
_no_flock_logged: set[tuple[str, int]] = set()

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: ``on_entry(dir_fd, entry)``: an entry that is not a directory, in the directory ``dir_fd``.
OnEntry = Callable[[int, os.DirEntry[str]], None]
#: ``on_dir(parent_fd, name)``: the directory ``name`` of ``parent_fd``, everything below it visited.
OnDir = Callable[[int, str], None]


def _take_flock(fd: int, wait: bool) -> bool | OSError:
    """True once the exclusive ``flock`` of ``fd`` is taken, False when another descriptor holds
    it (not ``wait``), the error when the file system has none (:data:`NO_FLOCK_ERRNOS`)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno not in NO_FLOCK_ERRNOS:
            raise
        return exc
    return True


def try_flock(fd: int, *, wait: bool) -> bool | None:
    """Take the exclusive ``flock`` of ``fd`` (let go when ``fd`` is closed): True once taken
    (waiting for it when ``wait``), False when another descriptor holds it (not ``wait``), None
    when the file system has no ``flock`` (:data:`NO_FLOCK_ERRNOS`: nothing is held, and nothing
    says whether another process holds it).

    Raises:
        OSError: any other error of ``flock``.
    """
    taken = _take_flock(fd, wait)
    return None if isinstance(taken, OSError) else taken


def log_no_flock(fd: int, path: Path | str, unlocked: str) -> None:
    """Warn, once per process, file system and ``unlocked`` (what goes on without taking turns),
    "no flock on the file system of <path>: <unlocked>"."""
    key = (unlocked, os.fstat(fd).st_dev)
    if key not in _no_flock_logged:
        _no_flock_logged.add(key)
        log.warning("no flock on the file system of %s: %s", path, unlocked)


def flock_directory(fd: int, path: Path | str, *, wait: bool, unlocked: str) -> bool:
    """Take the exclusive ``flock`` of the directory ``fd`` (across processes; let go when ``fd``
    is closed): waiting for it when ``wait``, else False when another descriptor holds it.

    A file system without ``flock`` for directories (:data:`NO_FLOCK_ERRNOS`) gives True without
    the lock, logged once per process, file system and ``unlocked`` (what goes on without taking
    turns, the end of the warning "no flock on the file system of <path> (<error>): ...").
    """
    taken = _take_flock(fd, wait)
    if isinstance(taken, OSError):
        log_no_flock(fd, f"{path} ({taken.strerror or taken})", unlocked)
        return True
    return taken


class TreeChangedError(OSError):
    """A directory of the tree was moved while the walk was below it."""

    def __init__(self) -> None:
        super().__init__(errno.ESTALE, "a directory of the tree was moved while it was walked")


@dataclass(frozen=True)
class TreeTotals:
    """What a tree holds below its top (symlinks and special files are not counted).

    Attributes:
        files: regular files.
        dirs: directories, the top not counted.
        size: bytes of the regular files.
    """

    files: int = 0
    dirs: int = 0
    size: int = 0


def tree_totals(top: Path | str, skip: Callable[[str], bool] | None = None, *,
                skip_unreadable: bool = False) -> TreeTotals:
    """The regular files, directories and bytes below the directory ``top``; none when there is
    no directory at ``top`` (missing, a file, or a symlink: not followed). A file whose name
    ``skip`` accepts is not counted (an upload in progress); with ``skip_unreadable`` a
    directory the caller may not open is left out (counted, its contents not), not an error.

    Raises:
        OSError: a directory could not be read, or :class:`TreeChangedError`.
    """
    try:
        top_fd = os.open(top, _DIR_FLAGS)
    except OSError as exc:
        gone = exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
        if gone or (skip_unreadable and isinstance(exc, PermissionError)):
            return TreeTotals()
        raise
    files = dirs = size = 0

    def on_entry(_dir_fd: int, entry: os.DirEntry[str]) -> None:
        nonlocal files, size
        if entry.is_file(follow_symlinks=False) and not (skip is not None and skip(entry.name)):
            with contextlib.suppress(*((FileNotFoundError, PermissionError) if skip_unreadable
                                       else (FileNotFoundError,))):
                size += entry.stat(follow_symlinks=False).st_size
                files += 1

    def on_dir(_parent_fd: int, _name: str) -> None:
        nonlocal dirs
        dirs += 1

    try:
        walk(top_fd, on_entry, on_dir, skip_unreadable=skip_unreadable)
    finally:
        os.close(top_fd)
    return TreeTotals(files, dirs, size)


class RemovalPaused(Exception):  # noqa: N818 (not an error: the caller asked for it)
    """:func:`remove_tree` reached its ``deadline``: what it removed is gone, the rest is still
    there (call it again to go on)."""


def remove_tree(path: Path | str, *, tick: Callable[[], None] | None = None,
                deadline: float | None = None) -> None:
    """Remove the directory ``path`` and everything below it. Its last component must be a
    directory, not a symlink to one (refused with ELOOP or ENOTDIR, as :func:`shutil.rmtree`
    refuses it); the components before it are the caller's to trust. ``tick``, when given, is
    called after each directory below ``path`` is removed (a long removal shows it is alive).

    ``deadline`` (``time.monotonic()`` seconds), when given, is looked at every
    :data:`REMOVALS_PER_CHECK` entries and directories removed: once passed the removal stops
    there (:class:`RemovalPaused`), so a tree of a million files removed in a loop that has
    other things to do holds it for a bounded time, and each call removes that many at least.
    A call after a pause walks down the tree again: a caller that goes on with one tree over many
    short budgets keeps :func:`removal_steps` instead.

    Raises:
        FileNotFoundError: there is no ``path``.
        OSError: something could not be removed (what could is gone), or :class:`TreeChangedError`.
        RemovalPaused: the deadline passed first.
    """
    run_removal(removal_steps(path, tick=tick), deadline)


def run_removal(steps: Generator[None, None, None], deadline: float | None) -> None:
    """Run ``steps`` (:func:`removal_steps` or one made of it) to their end, or until
    ``deadline`` (:func:`advance`), then close them.

    Raises:
        RemovalPaused: the deadline passed first. Whatever the steps raise.
    """
    try:
        if deadline is None:
            for _ in steps:
                pass
        elif not advance(steps, deadline):
            raise RemovalPaused()
    finally:
        steps.close()


def removal_steps(path: Path | str, *, tick: Callable[[], None] | None = None) -> Generator[None, None, None]:
    """:func:`remove_tree` of ``path`` one removal at a time: the generator yields after each
    entry and each directory it removed, and ends once ``path`` is gone. Kept between calls of
    :func:`advance`, it goes on where it stopped, holding the walk's descriptors (at most
    :data:`OPEN_DIRS` + 3) meanwhile: a chain of 50,000 directories is not walked down again
    for each batch. Close it (``close()``) to give up; what it removed is gone.

    Raises (when iterated):
        FileNotFoundError: there is no ``path``.
        OSError: something could not be removed, or :class:`TreeChangedError`.
    """
    on_dir: OnDir = _rmdir if tick is None else functools.partial(_rmdir_ticking, tick)
    parent, name = os.path.split(os.path.abspath(path))
    parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        top_fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            yield from _walk_steps(top_fd, _unlink, on_dir)
        finally:
            os.close(top_fd)
        os.rmdir(name, dir_fd=parent_fd)
    finally:
        os.close(parent_fd)


def advance(steps: Iterator[None], deadline: float) -> bool:
    """Run ``steps`` (:func:`removal_steps`) until they end (True) or ``deadline``
    (``time.monotonic()`` seconds) passed, looked at every :data:`REMOVALS_PER_CHECK` steps
    (False: ``steps`` may be advanced again later). Raises what the steps raise."""
    return all(done % REMOVALS_PER_CHECK or time.monotonic() < deadline for done, _ in enumerate(steps, 1))


def walk(top_fd: int, on_entry: OnEntry, on_dir: OnDir, *, skip_unreadable: bool = False) -> None:
    """Visit everything below the directory ``top_fd`` (left open), depth first: ``on_entry``
    for each entry that is not a directory, when its directory is read; ``on_dir`` for each
    directory once everything below it was visited (so it may remove it). A directory gone
    before it is entered is skipped, and so, with ``skip_unreadable``, is one that cannot be
    opened for want of permission (``on_dir`` is still called for it).

    Raises:
        OSError: from the callbacks, a directory that cannot be opened or read, or
            :class:`TreeChangedError`.
    """
    for _ in _walk_steps(top_fd, on_entry, on_dir, skip_unreadable=skip_unreadable):
        pass


def _walk_steps(top_fd: int, on_entry: OnEntry, on_dir: OnDir, *,
                skip_unreadable: bool = False) -> Generator[None, None, None]:
    """:func:`walk`, yielding after each ``on_entry`` and each ``on_dir``."""
    top = os.fstat(top_fd)
    stack = [_Level(top_fd, "", top.st_dev, top.st_ino, [])]
    stack[0].subdirs = yield from _read_steps(top_fd, on_entry)
    try:
        while True:
            level = stack[-1]
            if level.subdirs:
                name = level.subdirs.pop()
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=level.fd)
                except FileNotFoundError:
                    continue
                except OSError as exc:  # a directory we may not open, or made a link or file since the read
                    if not skip_unreadable or (not isinstance(exc, PermissionError) and exc.errno not in (
                            errno.ELOOP, errno.ENOTDIR)):
                        raise
                    on_dir(level.fd, name)
                    yield
                    continue
                try:
                    st = os.fstat(fd)
                    stack.append(_Level(fd, name, st.st_dev, st.st_ino, []))
                except BaseException:
                    os.close(fd)
                    raise
                stack[-1].subdirs = yield from _read_steps(fd, on_entry)
                if len(stack) > OPEN_DIRS + 1 and stack[-OPEN_DIRS - 1].fd >= 0:
                    _close(stack[-OPEN_DIRS - 1])
                continue
            if len(stack) == 1:
                return
            stack.pop()
            parent = stack[-1]
            try:
                if parent.fd < 0:
                    parent.fd = os.open("..", _DIR_FLAGS, dir_fd=level.fd)
                    st = os.fstat(parent.fd)
                    if (st.st_dev, st.st_ino) != (parent.dev, parent.ino):
                        raise TreeChangedError()
            finally:
                _close(level)
            on_dir(parent.fd, level.name)
            yield
    finally:
        for level in stack[1:]:
            if level.fd >= 0:
                _close(level)


@dataclass
class _Level:
    fd: int  # -1 while closed: reopened through ``..`` from the level below
    name: str  # in the level above
    dev: int
    ino: int
    subdirs: list[str]  # still to enter


def _read_steps(fd: int, on_entry: OnEntry) -> Generator[None, None, list[str]]:
    """The subdirectories of ``fd`` (the generator's value); ``on_entry`` for every other entry
    as it is read, a step each (a removal that stops half-way has not listed a million names
    first)."""
    subdirs = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
            else:
                on_entry(fd, entry)
                yield
    return subdirs


def _close(level: _Level) -> None:
    fd, level.fd = level.fd, -1
    os.close(fd)


def _unlink(dir_fd: int, entry: os.DirEntry[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        _as_owner_if_sticky(dir_fd, lambda: os.unlink(entry.name, dir_fd=dir_fd))


def _as_owner_if_sticky(dir_fd: int, remove: Callable[[], None]) -> None:
    """``remove()`` an entry of the directory ``dir_fd``; refused (EPERM) in a sticky directory
    (``chmod +t``, which a job may set on its own directories) whose entry is another user's, the
    directory is made ours (``CAP_CHOWN``, which the execution worker holds, where removing
    another's entry there needs ``CAP_FOWNER``, which it does not) and ``remove()`` tried again:
    the directory is going anyway."""
    try:
        remove()
    except PermissionError as exc:
        if exc.errno != errno.EPERM or not os.fstat(dir_fd).st_mode & 0o1000:
            raise
        os.fchown(dir_fd, os.geteuid(), -1)
        remove()


def _rmdir(parent_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        _as_owner_if_sticky(parent_fd, lambda: os.rmdir(name, dir_fd=parent_fd))


def _rmdir_ticking(tick: Callable[[], None], parent_fd: int, name: str) -> None:
    _rmdir(parent_fd, name)
    tick()
