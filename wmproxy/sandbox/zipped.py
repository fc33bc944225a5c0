"""ZippedISB: the input sandbox uploaded as ``tar.gz`` archives (``wmproxy-behaviour.md`` §3.2
step 8e, §11.2).

The gLite UI packs a job's input sandbox files into ``ISBfiles_<random>_<n>.tar.gz`` (gzip -9)
whose members are named ``<path>/<file>``, ``path`` being the ``JobIdStructType.path`` of
jobRegister (§1.2: ``SandboxDir/<2ch>/<encoded job id>/input``), uploads them into the job's
``input/`` and names them in the JDL's ``ZippedISB``. At jobStart each archive is extracted into
``input/`` and deleted; the marker ``<job dir>/.unzipok`` keeps a second jobStart from extracting
again. This module does the file work; the service (:mod:`wmproxy.services.submission`) counts
the bytes and writes the marker.

The archive is the client's and is treated as hostile: it is read as a stream (gzip, then tar,
``tarfile`` in ``r|`` mode), every member goes through :func:`tarfile.data_filter` and more: only
regular files and directories, every name below one of the allowed prefixes (this job's input
path, and for a compound job its nodes', whose files are the compound job's), each component a
sandbox file name (:func:`~wmproxy.sandbox.storage.check_file_name`), never an existing file
replaced, no symbolic link followed (each directory is opened ``O_NOFOLLOW`` from the input
area's descriptor, each file created ``O_EXCL | O_NOFOLLOW``). The bytes written and the bytes
decompressed stop at the caller's budget (a compression bomb never fills the disk), and the
files and directories made count against the file-count limit. On any refusal what was made is
removed again. Files are 0600 and directories 0700, owned by the service, as uploads are.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from wmproxy.errors import InvalidArgumentError, QuotaExceededError, SandboxError, SandboxPathError
from wmproxy.sandbox.confined import ConfinementError, open_confined, open_confined_dir
from wmproxy.sandbox.storage import CHUNK_SIZE, ReadableStream, check_file_count, check_file_name

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Where :func:`tarfile.data_filter` is told members go: a path that does not exist, so that its
#: check of the joined path reads nothing on disk (the members are created below the input area's
#: descriptor, never by path).
_FILTER_ROOT = "/nonexistent/wmproxy-zipped-isb"
MARKER = ".unzipok"
"""Name of the marker in the job's directory: its ZippedISB archives have been extracted."""
#: Decompressed bytes allowed beyond the member data budget: tar headers (512 bytes each), long
#: name and pax records, padding and the end-of-archive blocks.
HEADER_ALLOWANCE = 1 << 20
#: Members one archive may hold when ``[limits] max_input_sandbox_files`` sets no limit.
DEFAULT_MAX_MEMBERS = 100_000


class ArchiveMemberError(SandboxPathError):
    """A ZippedISB archive member the service refuses (1225): ``member`` is its name in the
    archive, ``reason`` why."""

    def __init__(self, archive: str, member: str, reason: str) -> None:
        shown = member.encode("unicode_escape", "backslashreplace").decode("ascii")[:200]
        super().__init__(f"ZippedISB archive {archive}: member {shown!r} refused: {reason}")
        self.member = member
        self.reason = reason


@dataclass(frozen=True)
class ExtractLimits:
    """What the extraction of one job's archives may add to its input area.

    Attributes:
        max_bytes: bytes of member data, all archives together.
        max_entries: files and directories made, all archives together (None: no limit of the
            configuration; :data:`DEFAULT_MAX_MEMBERS` members per archive still apply).
        file_limit: the configured ``max_input_sandbox_files`` (0 = none), for the message.
        held_files: files and directories the area holds once the archives are deleted.
        max_name_bytes: bytes of one path component (``[limits] max_sandbox_name_bytes``).
    """

    max_bytes: int
    max_entries: int | None
    file_limit: int
    held_files: int
    max_name_bytes: int


@dataclass
class Extracted:
    """What :func:`extract_archives` made below the input area: ``files`` and ``dirs`` (relative
    paths, in creation order) and ``size`` (bytes of the files)."""

    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    size: int = 0

    def remove(self, input_dir: str) -> None:
        """Remove what was made below ``input_dir`` (files first, then directories, deepest
        first); never raises."""
        try:
            input_fd = os.open(input_dir, _DIR_FLAGS)
        except OSError:
            return
        try:
            self._remove(input_fd)
        finally:
            os.close(input_fd)

    def _remove(self, input_fd: int) -> None:
        for rel in reversed(self.files):
            with contextlib.suppress(OSError):
                os.unlink(rel, dir_fd=input_fd)
        for rel in reversed(self.dirs):
            with contextlib.suppress(OSError):
                os.rmdir(rel, dir_fd=input_fd)
        self.files.clear()
        self.dirs.clear()
        self.size = 0


class _LimitedReader:
    """A read-only stream over ``source`` that refuses to give more than ``limit`` bytes in all."""

    def __init__(self, source: ReadableStream, limit: int, archive: str) -> None:
        self.source = source
        self.left = limit
        self.archive = archive

    def read(self, size: int = -1) -> bytes:
        want = CHUNK_SIZE if size is None or size < 0 else min(size, CHUNK_SIZE)
        data = self.source.read(min(want, self.left + 1))
        self.left -= len(data)
        if self.left < 0:
            raise QuotaExceededError(
                f"ZippedISB archive {self.archive} decompresses past the input sandbox limits")
        return data


def member_path(name: str, prefixes: frozenset[tuple[str, ...]], depth: int,
                ancestors: frozenset[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The path below the input area that the archive member ``name`` names: its components
    after the first ``depth`` ones, when those are one of ``prefixes`` (each the ``depth``
    components of an input path: ``SandboxDir``, ``<2ch>``, ``<encoded job id>``, ``input``);
    ``()`` for a directory that is one of the prefixes or above one (nothing to make); None
    when it is below none of them. ``ancestors``: every leading part of every prefix. A
    leading ``./`` is ignored."""
    while name.startswith("./"):
        name = name[2:]
    parts = tuple(name.rstrip("/").split("/"))
    if len(parts) > depth:
        return parts[depth:] if parts[:depth] in prefixes else None
    return () if parts in ancestors else None


def extract_archives(input_dir: str, archives: list[str], prefixes: frozenset[tuple[str, ...]],
                     limits: ExtractLimits) -> Extracted:
    """Extract the ZippedISB ``archives`` (file names in the input area ``input_fd``) into it.

    Args:
        input_dir: the job's (compound job's) ``input/`` directory (not a symbolic link).
        archives: the archives' names, in JDL order.
        prefixes: the allowed member path prefixes, as components, each of the same length
            (:func:`member_path`).
        limits: what the extraction may add.

    Returns:
        What was made (the caller removes it with :meth:`Extracted.remove` if it cannot commit).

    Raises:
        ArchiveMemberError: a member that is not a regular file or directory (symbolic or hard
            link, device, FIFO), whose name is absolute, has ``..``, lies outside the allowed
            prefixes, is not a sandbox file name, or names something the area holds already.
        InvalidArgumentError: an archive that is missing, not a regular file, or not a gzip
            compressed tar archive (corrupt, truncated).
        QuotaExceededError: the members' bytes go past ``limits.max_bytes`` (or the archive
            decompresses past it and the header allowance).
        SandboxFileCountError: more files and directories than the limit.
        SandboxError: a file could not be written (no space left...).
        Nothing is left of the extraction when it raises.
    """
    made = Extracted()
    try:
        input_fd = os.open(input_dir, _DIR_FLAGS)
    except OSError:
        raise InvalidArgumentError(f"ZippedISB archive {archives[0]} has not been uploaded") from None
    try:
        for archive in archives:
            _extract_one(input_dir, input_fd, archive, prefixes, limits, made)
    except BaseException:
        made._remove(input_fd)
        raise
    finally:
        os.close(input_fd)
    return made


def _extract_one(input_dir: str, input_fd: int, archive: str, prefixes: frozenset[tuple[str, ...]],
                 limits: ExtractLimits, made: Extracted) -> None:
    try:
        fd = open_confined(Path(input_dir), archive)
    except ConfinementError as exc:
        raise InvalidArgumentError(f"ZippedISB archive {archive} has not been uploaded ({exc.reason})") from None
    members = 0
    depth = len(next(iter(prefixes)))
    ancestors = frozenset(prefix[:i] for prefix in prefixes for i in range(1, depth + 1))
    with os.fdopen(fd, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
        stream = _LimitedReader(unzipped, limits.max_bytes - made.size + HEADER_ALLOWANCE, archive)
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    members += 1
                    if members > DEFAULT_MAX_MEMBERS and limits.max_entries is None:
                        check_file_count("input", members, DEFAULT_MAX_MEMBERS)
                    _extract_member(input_fd, archive, tar, member, (prefixes, depth, ancestors), limits, made)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise InvalidArgumentError(f"ZippedISB archive {archive} is not a readable tar.gz archive: {exc}") from None


def _extract_member(input_fd: int, archive: str, tar: tarfile.TarFile, member: tarfile.TarInfo,
                    allowed: tuple[frozenset[tuple[str, ...]], int, frozenset[tuple[str, ...]]],
                    limits: ExtractLimits, made: Extracted) -> None:
    if not (member.isreg() or member.isdir()):
        raise ArchiveMemberError(archive, member.name, "only regular files and directories are extracted")
    if member.name.startswith("/") or ".." in member.name.split("/"):
        raise ArchiveMemberError(archive, member.name, "absolute or with '..'")
    rel = member_path(member.name, *allowed)
    if rel is None:
        raise ArchiveMemberError(archive, member.name, "outside the job's input sandbox path")
    if not rel:
        return  # SandboxDir/, SandboxDir/<2ch>/...: the path of the area itself
    try:
        for part in rel:
            check_file_name(part, limits.max_name_bytes, "ZippedISB member name")
        tarfile.data_filter(member.replace(name="/".join(rel), deep=False), _FILTER_ROOT)
    except (InvalidArgumentError, tarfile.FilterError) as exc:
        raise ArchiveMemberError(archive, member.name, str(exc)) from None
    parent_rel = rel[:-1]
    try:
        dir_fd = open_confined_dir(input_fd, parent_rel, made.dirs)
    except ConfinementError as exc:
        raise ArchiveMemberError(archive, member.name, exc.reason) from None
    try:
        if member.isdir():
            _make_dir(dir_fd, archive, member.name, "/".join(rel), made)
        else:
            _write_file(dir_fd, archive, tar, member, "/".join(rel), limits, made)
    finally:
        os.close(dir_fd)
    if limits.max_entries is not None and len(made.files) + len(made.dirs) > limits.max_entries:
        check_file_count("input", limits.held_files + len(made.files) + len(made.dirs), limits.file_limit)


def _make_dir(dir_fd: int, archive: str, member: str, rel: str, made: Extracted) -> None:
    name = rel.rsplit("/", 1)[-1]
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    except FileExistsError:
        if not stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise ArchiveMemberError(archive, member, "the input sandbox holds a file of that name") from None
        return
    except OSError as exc:
        raise SandboxError(f"ZippedISB archive {archive}: cannot make {rel}: {exc.strerror}") from None
    made.dirs.append(rel)


def _write_file(dir_fd: int, archive: str, tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str,
                limits: ExtractLimits, made: Extracted) -> None:
    name = rel.rsplit("/", 1)[-1]
    if made.size + member.size > limits.max_bytes:
        raise QuotaExceededError(
            f"ZippedISB archive {archive}: extracting {member.name} takes the input sandbox past its limits"
            f" ({limits.max_bytes} bytes may be extracted)")
    source = tar.extractfile(member)
    if source is None:
        raise ArchiveMemberError(archive, member.name, "not a regular file")
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except FileExistsError:
        raise ArchiveMemberError(archive, member.name, "the input sandbox holds a file of that name already") from None
    except OSError as exc:
        raise SandboxError(f"ZippedISB archive {archive}: cannot create {rel}: {exc.strerror}") from None
    made.files.append(rel)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o600)
            while chunk := source.read(CHUNK_SIZE):
                made.size += len(chunk)
                if made.size > limits.max_bytes:
                    raise QuotaExceededError(
                        f"ZippedISB archive {archive}: {member.name} takes the input sandbox past its limits")
                out.write(chunk)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise QuotaExceededError(f"No space left to extract ZippedISB archive {archive}") from None
        raise SandboxError(f"ZippedISB archive {archive}: cannot write {rel}: {exc.strerror}") from None
