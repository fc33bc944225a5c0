"""Per-job sandbox areas on the local file system.

Layout (``wmproxy-behaviour.md`` §4.1), relative to the document root ``root``::

    <dir_name>/<first 2 chars of the unique id>/<to_filename(job id)>/
        input/     input sandbox: clients upload here (HTTPS PUT)
        output/    output sandbox: the execution worker writes here, clients GET
        peek/      perusal chunks

jobRegister creates only the job directory (issue 14: one ``mkdir`` per job, not four);
each of ``input/``, ``output/`` and ``peek/`` is created (0700, race-safe) by the first
write into it: an upload (:meth:`FilesystemSandboxStorage.create_area`), the collection of
the output sandbox, the first perusal chunk. Until then a missing area of an existing job
reads as an empty one everywhere (and an empty one, e.g. left by a first upload refused
while streaming, as a missing one).

jobSubmit creates no directory at all: its job is started at once, so no client may
upload into it. The execution worker makes the job directory when it claims the job
(``wmproxy.services.execution``), in the claim's transaction, with the job's row locked and
still Waiting: a removal of the area (jobPurge, the purger, which lock the row) comes
before it, and then there is no claim, or after it. No write ever creates the job
directory: a write racing ``remove_job_area`` or ``retire_job_area`` (an upload, or the
output or a perusal chunk of a job aborted while it still ran and purged at once) cannot
bring a removed area back (its ``mkdir`` of the area fails with ENOENT), and a file written
into an area moved aside goes with it (its rename into place fails with ENOENT).

and, relative to the work root (``[execution] work_dir``), the directory the job runs in,
``<to_filename(job id)>/``, with the job's proxy copy ``user.proxy`` (written there as the
job's account by the execution worker and the renewal worker, issue 8).

:class:`FilesystemSandboxStorage` is the only code that writes into these directories
and the one that computes their paths and URIs (:class:`JobArea`, from
:meth:`FilesystemSandboxStorage.job_area`). The nodes of a collection, DAG or
parametric job share their parent's input area: a node's ``JobArea.input_dir`` is the
parent's ``input/``, its output, peek and proxy are its own. Every path a client sends
goes through :meth:`FilesystemSandboxStorage.resolve`, which confines it to an
existing job's ``input/``, ``output/`` or ``peek/`` subtree.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import functools
import logging
import math
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple, Protocol

from wmproxy import domain
from wmproxy.errors import (
    InvalidArgumentError,
    QuotaExceededError,
    SandboxBusyError,
    SandboxError,
    SandboxFileCountError,
    SandboxNameError,
    SandboxPathError,
)
from wmproxy.sandbox.confined import ConfinementError, confined_parts, open_confined
from wmproxy.sandbox.trees import flock_directory, log_no_flock, remove_tree, tree_totals, try_flock
from wmproxy.text import log_text, xml_text

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
"""Bytes read from an upload stream at a time."""

AREAS = ("input", "output", "peek")
"""The sub-directories of a job area that clients may address (``peek`` holds perusal files)."""

MAX_PATH_DEPTH = 16
"""Components a client's path may have below its area (:meth:`FilesystemSandboxStorage.split_path`)."""

OUTPUT_HIDDEN = frozenset({".gacl", "Maradona.output"})
"""Output files never reported by :meth:`FilesystemSandboxStorage.output_files` (§4.5)."""

#: A perusal file of ``peek/``: a chunk ``<name>.<epoch>`` or a merged file ``<name>-<first>-<last>``.
_PERUSAL_PART = re.compile(r"(.+?)(?:\.[0-9]+|-[0-9]+-[0-9]+)")


def withheld(area: str, parts: Sequence[str]) -> str | None:
    """Why the path ``parts`` below a job's ``output/`` or ``peek/`` is never listed nor served:
    it holds what the service keeps in the work dir (:func:`~wmproxy.domain.service_file`), which
    collection and perusal refuse now but a job ended before they did may have left there: the
    job's proxy ``output/user.proxy`` (the owner's credential), ``output/.wmproxy/...``, its
    perusal parts ``peek/user.proxy.<epoch>`` and ``peek/user.proxy-<first>-<last>``. For the
    owner as for a reader the job's ACL admits. A name check (no directory is read); None for
    any other path and for ``input/`` (the owner's own uploads).
    """
    if area == "input" or not parts:
        return None
    if (why := domain.service_file("/".join(parts))) is not None:
        return why
    if area == "peek" and (part := _PERUSAL_PART.fullmatch(parts[0])) is not None:
        return domain.service_file(part.group(1))
    return None


TMP_SUFFIX = ".wmproxy-part"
"""Suffix of in-progress temporary files; hidden from listings and output lists."""

RETIRED_PREFIX = ".purging-"
"""Prefix of a job area moved aside by :meth:`FilesystemSandboxStorage.retire_job_area` (no job
directory name starts with ``.``: job ids start with their scheme)."""

#: Seconds a removal's areas (``.purging-*``) are taken for its own, on a file system without
#: ``flock``, after its lock file last changed: it is touched when made, as it moves areas aside,
#: before each area it deletes or puts back and while it deletes one
#: (:meth:`FilesystemSandboxStorage.touch_retirement`). A purge pass and a jobPurge leave them
#: alone that long; a removal that died leaves them that long too. The age is read against the
#: sandbox file system's own clock (:meth:`FilesystemSandboxStorage.file_system_time`), and a
#: time in the future counts by its distance (a file a clock set ahead cannot hold them for good).
UNLOCKED_RETIREMENT_AGE = 3600.0

#: Seconds between two touches of a removal's lock file while it moves areas aside or deletes
#: one (its transaction, or one huge area, may last longer than :data:`UNLOCKED_RETIREMENT_AGE`).
RETIREMENT_TOUCH_INTERVAL = 60.0

#: The file whose time, set to now, reads the sandbox file system's clock (in ``<dir_name>``).
CLOCK_PROBE = ".clock-probe"

_UNLOCKED_RETIREMENT = (f"a removal's sandbox areas (.purging-*) are told from leftovers by the age of their lock "
                        f"file: they are left alone until it is unchanged for {UNLOCKED_RETIREMENT_AGE:g} s")


@dataclass
class Retirement:
    """The areas one removal moves aside (:meth:`FilesystemSandboxStorage.retire_job_area`), all
    named with ``token``, and the lock that says it is settling them: an exclusive ``flock`` of
    the file ``<dir_name>/.purging-<token>``, taken before the first area is moved and let go
    (the file removed) once all are deleted or back (:meth:`FilesystemSandboxStorage.end_retirement`);
    a process that dies lets it go. One descriptor per removal, however many areas.
    """

    token: str = field(default_factory=lambda: secrets.token_hex(8))
    areas: list[Path] = field(default_factory=list)
    fd: int | None = None
    #: The lock file could not be made (no space or inode left): the areas are moved aside and
    #: settled without it, as a removal that frees space must still work on a full file system.
    unlocked: bool = False
    #: When (``time.monotonic``) the lock file was last touched by :meth:`touch_retirement`.
    touched: float = -math.inf
    #: The areas the removal's deadline left, once its transaction committed: the one it was
    #: deleting (part deleted) and those after it (whole), still aside for the purger to finish
    #: (:func:`wmproxy.services.quota.release_areas` with ``deadline``; their bytes are off the
    #: counter already).
    left: list[Path] = field(default_factory=list)


def _path_of(text: Callable[[JobArea], str]) -> functools.cached_property[Path]:
    """A :class:`JobArea` attribute: the :class:`~pathlib.Path` of ``text(area)``, made once."""
    return functools.cached_property(lambda area: Path(text(area)))


@dataclass(frozen=True)
class JobArea:
    """Where a job's files are, on disk and as URIs: the one source of these paths.

    Built by :meth:`FilesystemSandboxStorage.job_area`; nothing else derives them. The
    paths are kept as text and made :class:`~pathlib.Path` objects on first use (a jobSubmit
    reads three of the six: issue 14).

    Attributes:
        job_id: the job id.
        rel_dir: ``<dir_name>/<2ch>/<to_filename(job id)>``, relative to the root.
        dir: absolute path of the job's own directory.
        input_dir: where this job's input sandbox files really are: ``<dir>/input``,
            for a node of a compound job the parent's ``input``.
        output_dir: ``<dir>/output`` (always the job's own).
        peek_dir: ``<dir>/peek`` (perusal chunks).
        work_dir: ``<work root>/<to_filename(job id)>``, where the job runs.
        proxy_file: ``<work_dir>/user.proxy``, the job's proxy copy (``X509UserProxy``).
        base_uri: ``<base URL>/<rel_dir>`` (``WMPInputSandboxBaseURI``).
        input_uri: URI of ``input_dir``.
        output_uri: URI of ``output_dir``.
        peek_uri: URI of ``peek_dir``.
        dir_text, input_text, work_text: ``dir``, ``input_dir`` and ``work_dir`` as text
            (``output_text`` and ``proxy_text`` are ``output_dir`` and ``proxy_file``'s).
    """

    job_id: str
    rel_dir: str
    base_uri: str
    input_uri: str
    output_uri: str
    peek_uri: str
    dir_text: str
    input_text: str
    work_text: str

    @property
    def output_text(self) -> str:
        """``output_dir`` as text."""
        return f"{self.dir_text}/output"

    @property
    def proxy_text(self) -> str:
        """``proxy_file`` as text."""
        return f"{self.work_text}/{domain.JOB_PROXY_NAME}"

    dir = _path_of(lambda area: area.dir_text)
    input_dir = _path_of(lambda area: area.input_text)
    output_dir = _path_of(lambda area: area.output_text)
    peek_dir = _path_of(lambda area: f"{area.dir_text}/peek")
    work_dir = _path_of(lambda area: area.work_text)
    proxy_file = _path_of(lambda area: area.proxy_text)


Commit = Callable[[int, Callable[[], None]], None]
"""``commit(bytes written, replace)``: see :meth:`FilesystemSandboxStorage.stream_into`."""


class ReadableStream(Protocol):
    """What :meth:`FilesystemSandboxStorage.stream_into` reads: ``read(n)`` → up to n bytes, b"" at the end."""

    def read(self, size: int = ..., /) -> bytes: ...


class UnknownJobAreaError(SandboxPathError):
    """A well-formed sandbox path names a job area that does not exist (HTTP 404).

    Kept here rather than in :mod:`wmproxy.errors` because only the sandbox layer
    raises it; it is a :class:`SandboxPathError`, so generic handlers still work.
    """


class ResolvedPath(NamedTuple):
    """Result of :meth:`FilesystemSandboxStorage.resolve`.

    Attributes:
        job_rel_dir: ``<dir_name>/<2ch>/<job dir>``, the job area relative to the root.
        path: absolute real path inside the job's ``input/``, ``output/`` or ``peek/``
            subtree; its last component may not exist yet.
        area_exists: False when this area has not been created yet (nothing written to
            it), or its job directory has not (a job sent with jobSubmit, not claimed yet):
            it reads as an empty directory, and nothing below it exists.
    """

    job_rel_dir: str
    path: Path
    area_exists: bool = True


def is_temporary(name: str) -> bool:
    """True for the names of this module's in-progress temporary files.

    Such files are never counted in the owner's usage (:meth:`FilesystemSandboxStorage.counted_bytes`):
    an upload's is counted when it is renamed into place, and one left by a crash never is.
    :func:`check_file_name` refuses these names, so that no client file can pass for one.
    """
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


class AreaTally(NamedTuple):
    """Bytes and regular files: what a sandbox area holds (temporary files left out), or what a
    change adds to it (negative for fewer)."""

    size: int
    files: int


def _counted_bytes(top: Path) -> int:
    """Bytes of the regular files under the directory ``top`` but temporary ones
    (:func:`is_temporary`); 0 when ``top`` is missing or not a directory (a symlink in its place
    is not followed, nor are symlinked directories below it). Without recursion, at any depth
    (:func:`~wmproxy.sandbox.trees.tree_totals`).

    Raises:
        OSError: a directory below ``top`` could not be read.
    """
    return tree_totals(top, skip=is_temporary).size


class OutputCollection(NamedTuple):
    """What :meth:`FilesystemSandboxStorage.collect_output_files` did not collect whole.

    Names, in both lists and in the reasons, are the job's text made safe to quote
    (:func:`shown_name`): they go into the job's reason, the database and log lines.

    Attributes:
        missing: ``(name, reason)`` of each file not collected.
        truncated: ``(name, bytes kept, size)`` of each file cut at the output sandbox budget.
    """

    missing: list[tuple[str, str]]
    truncated: list[tuple[str, int, int]]


def _copy_at_most(source: ReadableStream, out: BinaryIO, limit: int) -> int:
    """Copy at most ``limit`` bytes of ``source`` into ``out`` (less at its end); bytes copied."""
    copied = 0
    while copied < limit:
        chunk = source.read(min(CHUNK_SIZE, limit - copied))
        if not chunk:
            break
        out.write(chunk)
        copied += len(chunk)
    return copied


NAME_MAX = 255
"""Bytes of one file name the file system takes (Linux ``NAME_MAX``)."""
#: Bytes of a path the system calls take (Linux's PATH_MAX, its NUL included): a longer one
#: fails with ENAMETOOLONG.
PATH_MAX = 4096


#: A control character (below U+0020, and DEL U+007F) in a name.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]").search


def shown_name(name: str) -> str:
    """A file name the job chose (a wildcard's match), safe in a job's reason, the database, a
    SOAP answer and a log line: NUL and the other control characters, lone surrogates (what
    a name that is not UTF-8 decodes to), U+2028/U+2029 escaped (``\\xff``-style,
    :mod:`wmproxy.text`); other text, accented letters included, kept as it is."""
    return log_text(xml_text(name))


def _shown(name: str) -> str:
    """``name`` in a message: escaped, at most 80 characters."""
    return name.encode("unicode_escape", "backslashreplace").decode("ascii")[:80]


def check_file_name(name: str, max_bytes: int = NAME_MAX, what: str = "sandbox file name") -> str:
    """Return ``name`` if it can name one sandbox file, else refuse it.

    Refused: an empty name, ``.`` and ``..``, ``/`` or ``\\``, control characters (below
    U+0020: newline, CR, ESC, NUL...; and DEL U+007F), text that is not valid Unicode, a
    name longer than ``max_bytes`` bytes of UTF-8 (at most :data:`NAME_MAX`), and the names of
    in-progress temporary files (:func:`is_temporary`: ``.`` first, :data:`TMP_SUFFIX` last),
    which are not counted in the owner's usage.

    Args:
        what: what ``name`` is, for the message ("InputSandbox file name").

    Raises:
        SandboxNameError: the message says why; control characters are shown escaped.
    """
    if name in ("", ".", ".."):
        raise SandboxNameError(f"Invalid {what} {_shown(name)!r}: empty, '.' and '..' are not file names")
    if "/" in name or "\\" in name:
        raise SandboxNameError(f"Invalid {what} {_shown(name)!r}: '/' and '\\' are not allowed in a file name")
    if _CONTROL_CHARACTER(name):
        raise SandboxNameError(f"Invalid {what} {_shown(name)!r}: control characters are not allowed")
    if is_temporary(name):
        raise SandboxNameError(
            f"Invalid {what} {_shown(name)!r}: names starting with '.' and ending in {TMP_SUFFIX!r} are kept for"
            " uploads in progress"
        )
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise SandboxNameError(f"Invalid {what} {_shown(name)!r}: not valid Unicode") from None
    limit = min(max_bytes, NAME_MAX)
    if size > limit:
        raise SandboxNameError(f"Invalid {what} {_shown(name)!r}...: {size} bytes long, at most {limit} allowed")
    return name


def served_name(name: str) -> bool:
    """Whether the sandbox edge serves a file so named (:func:`check_file_name` up to NAME_MAX,
    as it reads): a job collected before collection refused such names may have left one
    (control characters, ``\\``, bytes that are not UTF-8), which its listing leaves out."""
    try:
        check_file_name(name)
    except SandboxNameError:
        return False
    return True


#: Bytes a perusal part's name adds to the name of the file perused: a merged file's
#: ``-<first>-<last>`` (epoch seconds, 10 digits until 2286); a chunk's ``.<epoch>`` adds fewer.
PERUSAL_PART_BYTES = len("-0000000000-0000000000")


def check_perusal_name(name: str, max_bytes: int = NAME_MAX) -> str:
    """Return ``name`` if the sandbox edge can serve the perusal parts of the file so named (the
    chunks ``peek/<name>.<epoch>``, the merged files ``peek/<name>-<first>-<last>``), else refuse
    it as :func:`check_file_name` refuses a sandbox file name (``/`` or ``\\``, control
    characters, text that is not valid Unicode, the name of an upload in progress), and when its
    parts' names would be longer than ``max_bytes``: at most ``max_bytes`` less
    :data:`PERUSAL_PART_BYTES` bytes of UTF-8.

    Raises:
        SandboxNameError: the message says why.
    """
    return check_file_name(name, max(0, min(max_bytes, NAME_MAX) - PERUSAL_PART_BYTES), "perusal file name")


def check_file_count(area: str, count: int, limit: int) -> None:
    """Refuse ``count`` files in the ``area`` ("input" or "output") sandbox over ``limit``
    (``[limits] max_input_sandbox_files``/``max_output_sandbox_files``; 0 = no limit).

    Raises:
        SandboxFileCountError: "The maximum number of <area> sandbox files is reached"
            (the reference's abort message) with the numbers.
    """
    if limit > 0 and count > limit:
        raise SandboxFileCountError(
            f"The maximum number of {area} sandbox files is reached: {count} files, at most {limit} allowed"
        )


def _expand_wildcards(work_dir: Path, names: tuple[str, ...],
                      targets: Sequence[str]) -> Iterator[tuple[str, str]]:
    """``(entry, name to store it under or "")`` of ``names`` (with ``targets``), each entry whose
    last component has wildcards replaced by the paths in its directory that it matches (sorted;
    a leading ``.`` is matched only by a pattern starting with one; each under its own name;
    never what the service keeps there, :func:`~wmproxy.domain.service_file`: ``*`` is not the
    job's proxy), or kept as it is when nothing matches (it is then "not produced"). The
    directory is listed through descriptors opened without following a symbolic link; one that
    cannot be listed so (missing, a symlink, ``..``, absolute) matches nothing."""
    for index, entry in enumerate(names):
        directory, slash, pattern = entry.rpartition("/")
        if not any(w in pattern for w in "*?["):
            yield entry, targets[index] if index < len(targets) else ""
            continue
        matches = [name for name in _list_confined(work_dir, directory)
                   if fnmatch.fnmatchcase(name, pattern) and (pattern.startswith(".") or not name.startswith("."))
                   and domain.service_file(f"{directory}{slash}{name}") is None]
        yield from ((f"{directory}{slash}{name}", "") for name in sorted(matches) or [pattern])


def _list_confined(work_dir: Path, directory: str) -> list[str]:
    """The names in ``work_dir/directory``, each component opened with ``O_NOFOLLOW``; [] when it
    cannot be listed so."""
    parts = confined_parts(directory)
    if parts is None:
        return []
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        fd = os.open(work_dir, flags)
    except OSError:
        return []
    try:
        for part in parts:
            next_fd = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        return os.listdir(fd)
    except OSError:
        return []
    finally:
        os.close(fd)


class FilesystemSandboxStorage:
    """Job areas under ``root / dir_name``.

    Args:
        root: the document root (``SandboxSettings.root``); may itself be a symlink.
        dir_name: name of the staging directory under the root (``SandboxDir``).
        base_url: URL the document root is served at (``https://<host>:<port>``), the
            prefix of every :class:`JobArea` URI; ``""`` gives root-relative URIs.
        work_root: where jobs run (``[execution] work_dir``); default ``<root>/work``.
    """

    def __init__(self, root: Path | str, dir_name: str = "SandboxDir", base_url: str = "",
                 work_root: Path | str | None = None) -> None:
        if not dir_name or "/" in dir_name or dir_name in (".", ".."):
            raise ValueError(f"invalid sandbox directory name: {dir_name!r}")
        self.root = Path(root)
        self.dir_name = dir_name
        self.base_url = base_url.rstrip("/")
        self.work_root = Path(os.path.abspath(work_root)) if work_root is not None else self.root / "work"
        # The roots as text, for the job areas' paths (joined as text: issue 14).
        self._root_text, self._work_root_text = str(self.root), str(self.work_root)
        # A request asks for the same job's paths several times (jobSubmit: create, then the
        # JobArea): the id check and to_filename are done once per recent job (issue 14).
        self._rel_dirs = functools.lru_cache(maxsize=1024)(self._job_rel_dir)

    # --- job areas ---

    def job_rel_dir(self, job_id: str) -> str:
        """``<dir_name>/<2ch>/<to_filename(job id)>``.

        Raises:
            InvalidArgumentError: ``job_id`` is not a valid job id.
        """
        return self._rel_dirs(job_id)

    def _job_rel_dir(self, job_id: str) -> str:
        # checked: the 2-char fan-out must not be '..' or contain '/'
        return domain.checked_relative_dir(job_id, self.dir_name)

    def job_dir(self, job_id: str) -> Path:
        """Absolute path of the job area (whether or not it exists).

        Raises:
            InvalidArgumentError: ``job_id`` is not a valid job id.
        """
        return self.root / self.job_rel_dir(job_id)

    def job_area(self, job_id: str, parent_id: str | None = None) -> JobArea:
        """The paths and URIs of a job's area (whether or not it exists).

        Args:
            job_id: the job, or a node of a compound job.
            parent_id: the compound job ``job_id`` is a node of (its input sandbox is in
                the parent's input area), None for a job of its own.

        Raises:
            InvalidArgumentError: ``job_id`` or ``parent_id`` is not a valid job id.
        """
        rel_dir = self.job_rel_dir(job_id)
        input_rel = f"{self.job_rel_dir(parent_id) if parent_id else rel_dir}/input"
        base_uri = f"{self.base_url}/{rel_dir}"
        return JobArea(
            job_id=job_id,
            rel_dir=rel_dir,
            base_uri=base_uri,
            input_uri=f"{self.base_url}/{input_rel}",
            output_uri=f"{base_uri}/output",
            peek_uri=f"{base_uri}/peek",
            dir_text=os.path.join(self._root_text, rel_dir),
            input_text=os.path.join(self._root_text, input_rel),
            work_text=os.path.join(self._work_root_text, rel_dir.rsplit("/", 1)[1]),  # to_filename(job_id)
        )

    def has_job_area(self, job_id: str) -> bool:
        """True when the job area exists as a real directory (not a symlink)."""
        try:
            return stat.S_ISDIR(os.lstat(self.job_dir(job_id)).st_mode)
        except FileNotFoundError:
            return False

    def create_job_area(self, job_id: str, *, hand_over: bool = False) -> Path:
        """Create the job directory (mode 0700) and nothing in it; idempotent.

        ``input/``, ``output/`` and ``peek/`` are made by their first write (see the module
        docstring); the staging and fan-out directories get 0755 when this call creates them,
        the sandbox root 0700 (a new ``[sandbox] root`` made by the execution worker's claim).

        Args:
            job_id: the job.
            hand_over: give each directory this call creates its parent's owner and group
                when they are not this process's and it may (the execution worker making
                the job directory of a job sent with jobSubmit when it claims it; ``CAP_CHOWN``).

        Returns:
            The job directory.

        Raises:
            InvalidArgumentError: invalid job id.
            SandboxError: the directory cannot be created (or a non-directory is in its place).
        """
        job_dir = self.job_dir(job_id)
        try:
            try:  # the common case, a new job under an existing fan-out directory: one mkdir call
                _mkdir_new(job_dir, 0o700)
            except FileNotFoundError:
                self._create_parents_and(job_dir, hand_over)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(job_dir).st_mode):
                    raise
                return job_dir
            else:
                if hand_over:
                    _owned_like_parent(job_dir)
        except OSError as exc:
            raise SandboxError(f"Unable to create the job directory {job_dir}: {exc.strerror}") from exc
        return job_dir

    def create_area(self, job_rel_dir: str, area: str) -> Path:
        """Create ``<job dir>/<area>`` (mode 0700) unless it exists: the first upload's
        ``input/``, the first output file's ``output/``, the first perusal chunk's ``peek/``.

        Never creates the job directory itself: a job area removed meanwhile stays removed.
        Concurrent callers are fine (an existing directory is success). The area gets the
        job directory's owner and group, as when registration made all three: a process of
        another uid that made it (a root worker under a non-root server) hands it over
        when it may (``CAP_CHOWN``); the deployment's units run both as the service user.

        Args:
            job_rel_dir: ``<dir_name>/<2ch>/<job dir>`` (:meth:`job_rel_dir`, or checked
                by :meth:`split_path`).
            area: ``"input"``, ``"output"`` or ``"peek"``.

        Returns:
            The area's absolute path.

        Raises:
            UnknownJobAreaError: the job directory does not exist (never registered, or removed).
            SandboxError: something else is in the area's place, or the directory cannot be made.
        """
        if area not in AREAS:
            raise ValueError(f"not a job sandbox area: {area!r}")
        path = self.root / job_rel_dir / area
        try:
            _mkdir_new(path, 0o700)
            _owned_like_parent(path)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise SandboxError(f"The {area} sandbox of /{job_rel_dir} is not a directory") from None
        except (FileNotFoundError, NotADirectoryError):
            raise UnknownJobAreaError(f"No such job sandbox: /{job_rel_dir}/{area}") from None
        except OSError as exc:
            raise SandboxError(f"Unable to create the {area} sandbox of /{job_rel_dir}: {exc.strerror}") from exc
        return path

    def _create_parents_and(self, job_dir: Path, hand_over: bool = False) -> None:
        """Create the sandbox root (0700; its missing parents with the umask's mode), the staging
        and fan-out directories (0755) that are missing, then ``job_dir``; with ``hand_over``
        each one made here but the root's parents gets its parent's owner (see
        :meth:`create_job_area`).

        Raises:
            SandboxError: a concurrent ``remove_job_area`` kept removing the fan-out directory.
            OSError: a directory cannot be created.
        """
        def make(path: Path, mode: int) -> None:
            if _mkdir(path, mode) and hand_over:
                _owned_like_parent(path)

        for _attempt in range(3):  # a concurrent remove_job_area may rmdir the fan-out dir
            try:
                try:
                    make(job_dir.parent, 0o755)
                except FileNotFoundError:  # a new sandbox root: private, as `wmproxy-admin init` makes it
                    self.root.parent.mkdir(parents=True, exist_ok=True)
                    make(self.root, 0o700)
                    make(self.root / self.dir_name, 0o755)
                    make(job_dir.parent, 0o755)
                make(job_dir, 0o700)
                return
            except FileNotFoundError:
                continue
        raise SandboxError(f"Unable to create the job directory {job_dir}")

    def remove_job_area(self, job_id: str) -> int:
        """Delete the job area and, if it is now empty, its 2-char fan-out directory.

        A missing area is not an error. Symlinks inside the area are removed, never followed.

        Returns:
            The area's :meth:`counted_bytes` (what the owner's usage counter loses, perusal
            chunks included; 0 for a missing area).

        Raises:
            InvalidArgumentError: invalid job id.
            SandboxError: the area exists but cannot be removed.
        """
        freed = self.counted_bytes(job_id)
        self.discard_area(self.job_dir(job_id))
        return freed

    def retire_job_area(self, job_id: str, retirement: Retirement | None = None, *,
                        left_aside: bool = False) -> tuple[int, Path | None]:
        """Count the job area and move it aside, out of its job's reach: renamed
        ``.purging-<token>-<job dir>`` (:data:`RETIRED_PREFIX`) in its fan-out directory. A removal
        in a transaction retires the area, then deletes it (:meth:`discard_area`) once the
        transaction has committed, or puts it back (:meth:`restore_area`) when it has not: the
        files are not gone while the job's row and its bytes on the owner's counter are kept.
        With ``retirement``, its lock is taken first (once) and the area added to its ``areas``.

        ``left_aside`` when the caller holds the job's row and the job is neither removed nor
        Cleared (its area's bytes are on the counter): an area found aside instead
        (``.purging-*-<job dir>``, a removal that did not commit, whose lock is not held) is the
        job's, put back first, then retired (a jobPurge tried again after one whose commit failed
        took nothing off the counter, and the purger deleted the area). An area found aside whose
        lock is held (:meth:`retirement_busy`) is another removal's, still deleting it or putting it
        back: neither counted nor skipped, the removal is refused (SandboxBusyError) and can be
        tried again once that one has ended.

        Returns:
            The area's :meth:`counted_bytes` and where it is now; ``(0, None)`` for a missing area.

        Raises:
            InvalidArgumentError: invalid job id.
            SandboxError: something else than a directory is in the area's place, or it cannot be moved.
            SandboxBusyError: the area is missing and one of its retired areas is held by
                another removal (:meth:`retirement_busy`).
        """
        job_dir = self.job_dir(job_id)
        try:
            if not stat.S_ISDIR(os.lstat(job_dir).st_mode):
                raise SandboxError(f"Unable to remove the job directory {job_dir}: not a directory")
        except FileNotFoundError:
            left = self._left_aside(job_id, job_dir, take=left_aside)
            if left is None:
                return 0, None
            self.restore_area(left)
        freed = self.counted_bytes(job_id)
        if retirement is None:
            retirement = Retirement()
        elif retirement.fd is None and not retirement.unlocked:
            retirement.fd = self._hold_retirement_lock(retirement.token)
            retirement.unlocked = retirement.fd is None
        retired = job_dir.with_name(f"{RETIRED_PREFIX}{retirement.token}-{job_dir.name}")
        try:
            os.rename(job_dir, retired)
        except OSError as exc:
            raise SandboxError(f"Unable to remove the job directory {job_dir}: {exc.strerror}") from exc
        retirement.areas.append(retired)
        # alive: a transaction moving thousands of areas may outlast UNLOCKED_RETIREMENT_AGE
        self.touch_retirement(retirement, every=RETIREMENT_TOUCH_INTERVAL)
        return freed, retired

    def _left_aside(self, job_id: str, job_dir: Path, *, take: bool) -> Path | None:
        """With ``take``, a retired area of ``job_dir`` in its fan-out directory whose removal is
        not settling it; else None.

        Raises:
            SandboxBusyError: a removal is settling (deleting or putting back) one of them.
        """
        try:
            with os.scandir(job_dir.parent) as entries:
                found = [Path(e.path) for e in entries if self.retired_job_dir(e.name) == job_dir.name]
        except FileNotFoundError:
            return None
        if any(self.retirement_busy(path) for path in found):
            raise SandboxBusyError(f"operation aborted: the sandbox of job {job_id} is being removed (or put "
                                   "back) by another request; try again later")
        return found[0] if take and found else None

    def _retirement_lock(self, token: str) -> Path:
        return self.root / self.dir_name / f"{RETIRED_PREFIX}{token}"

    def _hold_retirement_lock(self, token: str) -> int | None:
        """Create the lock file of ``token`` and take its ``flock``; its descriptor. Made again
        when a purge pass removed it between the two (it found it unlocked: :meth:`sweep_retirement_locks`).
        None, with a warning, when the file system has no space or inode left for it: a removal
        frees space and must work then (a purge pass starting while its areas are deleted may
        then take them for leftovers, as before the lock)."""
        path = self._retirement_lock(token)
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                             0o600)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    log.warning("sandbox areas removed without their lock %s: %s", path, exc.strerror)
                    return None
                raise SandboxError(f"Unable to create the lock {path}: {exc.strerror}") from exc
            try:
                flock_directory(fd, path, wait=True, unlocked=_UNLOCKED_RETIREMENT)
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def touch_retirement(self, retirement: Retirement, *, every: float = 0.0) -> None:
        """Show that ``retirement``'s removal is settling its areas: its lock file's time set to
        now (read on a file system without ``flock``: :data:`UNLOCKED_RETIREMENT_AGE`); with
        ``every``, only when the last touch is that many seconds old (monotonic clock)."""
        if retirement.fd is None:
            return
        now = time.monotonic()
        if every and now - retirement.touched < every:
            return
        with contextlib.suppress(OSError):
            os.utime(retirement.fd)
            retirement.touched = now

    def file_system_time(self) -> float:
        """Now by the sandbox file system's clock (a file server's, on NFS): the time of
        :data:`CLOCK_PROBE`, set to now; this host's clock when the probe cannot be written. A
        lock file is touched by that clock, which may be far from this host's."""
        path = self.root / self.dir_name / CLOCK_PROBE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
            try:
                os.utime(fd)
                return os.fstat(fd).st_mtime
            finally:
                os.close(fd)
        except OSError:
            return time.time()

    def end_retirement(self, retirement: Retirement) -> None:
        """Let the lock of ``retirement`` go, its file removed (once its areas are settled)."""
        if retirement.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self._retirement_lock(retirement.token))
        os.close(retirement.fd)
        retirement.fd = None

    def retirement_busy(self, retired: Path) -> bool:
        """Whether the removal that moved ``retired`` aside is settling it (still holds its lock):
        false once it has ended, or died (its ``flock`` went with it). On a file system without
        ``flock`` (:func:`lock_held`), true while its lock file is younger than
        :data:`UNLOCKED_RETIREMENT_AGE`."""
        token = retired.name[len(RETIRED_PREFIX):].partition("-")[0]
        try:
            fd = os.open(self._retirement_lock(token), os.O_RDWR | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError:  # none: ended (or never held)
            return False
        try:
            return lock_held(fd, retired, now=self.file_system_time)
        finally:
            os.close(fd)

    def sweep_retirement_locks(self) -> int:
        """Remove the lock files (``<dir_name>/.purging-<token>``) no removal holds (:func:`lock_held`),
        left by processes that died; how many."""
        try:
            with os.scandir(self.root / self.dir_name) as entries:
                names = [e.name for e in entries if e.name.startswith(RETIRED_PREFIX)
                         and e.is_file(follow_symlinks=False)]
        except FileNotFoundError:
            return 0
        removed = 0
        for name in names:
            path = self.root / self.dir_name / name
            try:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue
            try:
                if not lock_held(fd, path, now=self.file_system_time):
                    os.unlink(path)  # held: a removal creating it takes another (_hold_retirement_lock)
                    removed += 1
            except OSError:
                pass
            finally:
                os.close(fd)
        return removed

    @staticmethod
    def retired_job_dir(name: str) -> str | None:
        """The job directory name of the retired area ``name`` (:meth:`retire_job_area`); None
        when ``name`` is not one."""
        if not name.startswith(RETIRED_PREFIX):
            return None
        _token, dash, job_dir = name[len(RETIRED_PREFIX):].partition("-")
        return job_dir if dash and job_dir else None

    def discard_area(self, path: Path, *, retirement: Retirement | None = None,
                     deadline: float | None = None) -> None:
        """Delete ``path``, a retired area or a job area (as :meth:`remove_job_area`, uncounted),
        and its fan-out directory if it is now empty; a missing one is not an error. With
        ``retirement`` (``path`` is one of its areas), its lock file is touched as directories are
        deleted (:meth:`touch_retirement`, every :data:`RETIREMENT_TOUCH_INTERVAL`): one huge area
        may take longer to delete than :data:`UNLOCKED_RETIREMENT_AGE`. With ``deadline``
        (``time.monotonic()`` seconds) the delete stops once it passed, inside the tree
        (:func:`~wmproxy.sandbox.trees.remove_tree`): call it again to go on.

        Raises:
            SandboxError: it cannot be removed.
            wmproxy.sandbox.trees.RemovalPaused: ``deadline`` passed first (part of ``path`` is gone).
        """
        try:
            remove_tree(path, tick=None if retirement is None else functools.partial(  # no recursion: any depth
                self.touch_retirement, retirement, every=RETIREMENT_TOUCH_INTERVAL), deadline=deadline)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise SandboxError(f"Unable to remove the job directory {path}: {exc.strerror}") from exc
        with contextlib.suppress(OSError):  # not empty (other jobs) or already gone
            path.parent.rmdir()

    def restore_area(self, retired: Path) -> Path:
        """Give the retired area ``retired`` its job directory name back; returns that path.

        Raises:
            SandboxError: ``retired`` is not a retired area's path, or it cannot be renamed (a
                job directory made since holds something).
        """
        name = self.retired_job_dir(retired.name)
        if name is None:
            raise SandboxError(f"Not a retired job directory: {retired}")
        job_dir = retired.with_name(name)
        try:
            os.rename(retired, job_dir)
        except OSError as exc:
            raise SandboxError(f"Unable to restore the job directory {job_dir}: {exc.strerror}") from exc
        return job_dir

    def area_dirs(self) -> list[Path]:
        """Every directory in the fan-out directories: job areas, retired ones
        (:meth:`retire_job_area`) and any other; none without a staging directory."""
        try:
            fans = sorted(entry.path for entry in os.scandir(self.root / self.dir_name)
                          if entry.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            return []
        found: list[Path] = []
        for fan in fans:
            # a fan-out directory removed meanwhile (its last area purged) holds nothing
            with contextlib.suppress(FileNotFoundError), os.scandir(fan) as entries:
                found.extend(Path(entry.path) for entry in entries if entry.is_dir(follow_symlinks=False))
        return found

    def input_file_count(self, job_id: str) -> int:
        """Regular files and directories under the job's ``input/`` (recursively), in-progress
        uploads included; 0 while nothing has been uploaded (no ``input/`` yet).
        """
        return _tree_size(self._area(job_id, "input", must_exist=False), count=True)

    def input_size(self, job_id: str) -> int:
        """Total bytes of the regular files under the job's ``input/`` (recursively).

        In-progress uploads count too, so concurrent uploads are judged conservatively; 0
        while nothing has been uploaded (no ``input/`` yet).
        """
        return _tree_size(self._area(job_id, "input", must_exist=False))

    # --- perusal (wmproxy-behaviour.md §8) ---

    def write_perusal_chunk(self, job_id: str, name: str, data: bytes, timestamp: int) -> None:
        """Write ``data`` as the new chunk ``peek/<name>.<timestamp>`` (epoch seconds), whole
        or not at all (a temporary name, then a rename), so that getPerusalFiles merging at the
        same moment sees either nothing or all of it. Chunks are never appended to: the caller
        gives each chunk of a file its own, increasing timestamp. The first chunk creates ``peek/``.

        Raises:
            SandboxError: the job area does not exist, its ``peek/`` cannot be made, or the
                temporary file cannot be made (raised from the OSError: the file system full).
            OSError: the chunk cannot be written (e.g. the file system full); nothing is left.
        """
        peek = self._area(job_id, "peek", create=True)
        chunk_path = peek / f"{name}.{timestamp}"
        fd, tmp = _mkstemp(chunk_path)  # a name within NAME_MAX whatever the chunk's (not ".<chunk>.wmproxy-part")
        try:
            with os.fdopen(fd, "wb") as chunk:
                chunk.write(data)
            os.replace(tmp, chunk_path)
        except OSError:
            _unlink_quietly(tmp)
            raise

    def input_changes(self, job_id: str) -> contextlib.AbstractContextManager[None]:
        """Hold the job's input changes: an exclusive ``flock`` of the job's directory (across
        processes), under which the sandbox edge reads what ``input/`` holds and commits one
        change of it, so that changes of one job take turns while the walk of its ``input/``
        holds no database lock, and under which jobStart changes the job's state (an upload
        then commits before the start or is refused after it). Nothing is held for a job
        without a directory (its uploads find no area).

        Raises:
            InvalidArgumentError: ``job_id`` is not a valid job id.
        """
        return self.area_changes(self.job_rel_dir(job_id))

    @contextlib.contextmanager
    def area_changes(self, job_rel_dir: str) -> Iterator[None]:
        """:meth:`input_changes` of the job whose area is ``job_rel_dir`` (relative to the root,
        as :meth:`split_path` gives it): the sandbox edge takes it before it looks the job up."""
        with _locked_directory(self.root / job_rel_dir):
            yield

    def merge_perusal_chunks(self, job_id: str, name: str) -> list[str]:
        """Concatenate the chunks of ``name`` in time order into ``peek/<name>-<first>-<last>``.

        The chunks are deleted. Returns the names of the merged files made now ([] if none,
        as for a job without ``peek/``: no chunk written yet). Merges of one job take turns
        (an exclusive ``flock`` of its ``peek/``, across processes): a getPerusalFiles that came
        while another merged sees the chunks that one took as merged already, not half gone.
        """
        peek = self._area(job_id, "peek", must_exist=False)
        with _locked_directory(peek) as locked:
            return self._merge_chunks(peek, name) if locked else []

    def _merge_chunks(self, peek: Path, name: str) -> list[str]:
        """:meth:`merge_perusal_chunks` once its lock is held."""
        chunks = sorted(
            (int(p.name.rsplit(".", 1)[1]), p)
            for p in peek.glob(f"{_glob_escape(name)}.*")
            if p.name.rsplit(".", 1)[1].isdigit() and p.name.rsplit(".", 1)[0] == name
        )
        if not chunks:
            return []
        merged = f"{name}-{chunks[0][0]}-{chunks[-1][0]}"
        fd, tmp = _mkstemp(peek / merged)
        try:
            with os.fdopen(fd, "wb") as out:
                for _, chunk in chunks:
                    out.write(chunk.read_bytes())
            os.replace(tmp, peek / merged)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        for _, chunk in chunks:
            chunk.unlink()
        return [merged]

    def merged_perusal_files(self, job_id: str, name: str) -> list[str]:
        """Every merged file of ``name`` so far, oldest first ([] without ``peek/``).
        """
        peek = self._area(job_id, "peek", must_exist=False)
        if not peek.is_dir():
            return []
        found = []
        for p in peek.glob(f"{_glob_escape(name)}-*-*"):
            first, _, last = p.name[len(name) + 1 :].partition("-")
            if first.isdigit() and last.isdigit():
                found.append((int(first), p.name))
        return [n for _, n in sorted(found)]

    def counted_bytes(self, job_id: str) -> int:
        """Bytes of the job area that its owner's usage counter holds: the regular files under
        its ``input/`` (uploads), ``output/`` (the collected output sandbox) and ``peek/``
        (perusal chunks and the files merged from them); in-progress temporary files
        (:func:`is_temporary`: an upload or chunk not renamed into place yet, a merge in
        progress, or one a crash left) are not counted. ``peek/`` is counted while no merge
        runs (its lock, as :meth:`merge_perusal_chunks` takes it): a merged file and the chunks
        it replaces are never counted together. 0 when the area does not exist."""
        job_dir = self.job_dir(job_id)
        with _locked_directory(job_dir / "peek"):
            peek = _counted_bytes(job_dir / "peek")
        return peek + sum(_counted_bytes(job_dir / area) for area in ("input", "output"))

    def perusal_bytes(self, job_id: str) -> int:
        """Bytes of the regular files under the job's ``peek/`` (chunks and merged files) that
        :meth:`counted_bytes` counts, read without waiting for a merge (one in progress may
        count a merged file and its chunks together for a moment); 0 without ``peek/``."""
        return _counted_bytes(self.job_dir(job_id) / "peek")

    def output_bytes(self, job_id: str) -> int:
        """Bytes of the regular files under the job's ``output/`` that :meth:`counted_bytes`
        counts (temporary files left out; 0 when it does not exist)."""
        return _counted_bytes(self.job_dir(job_id) / "output")

    def input_tally(self, job_id: str) -> AreaTally:
        """Bytes of the regular files under the job's ``input/`` (recursively), and how many
        regular files and directories there are (a directory counts against
        ``max_input_sandbox_files`` as in :meth:`input_file_count`), those in place: uploads in
        progress (temporary files) left out, unlike :meth:`input_size`; ``(0, 0)`` while nothing
        has been uploaded. For the limits' check when an upload is renamed into place.
        """
        totals = tree_totals(self.job_dir(job_id) / "input", skip=is_temporary)
        return AreaTally(totals.size, totals.files + totals.dirs)

    def output_files(self, job_id: str) -> list[tuple[str, int]]:
        """``(name, size in bytes)`` of the regular files directly in ``output/``, sorted by name.

        ``.gacl``, ``Maradona.output``, symlinks, directories, in-progress
        temporary files (``wmproxy-behaviour.md`` §4.5) and the job's proxy ``user.proxy`` a
        collection before it was refused left there (:func:`withheld`) are left out. A job area
        without ``output/`` (not started yet) has no output files.
        """
        output = self._area(job_id, "output", must_exist=False)
        result: list[tuple[str, int]] = []
        try:
            entries = list(os.scandir(output))
        except FileNotFoundError:
            return result
        for entry in entries:
            if entry.name in OUTPUT_HIDDEN or is_temporary(entry.name) or withheld("output", (entry.name,)):
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                result.append((entry.name, st.st_size))
        return sorted(result)

    def _area(self, job_id: str, area: str, *, must_exist: bool = True, create: bool = False) -> Path:
        """The path of a job's ``area``.

        With ``create`` the area is made (:meth:`create_area`) if missing, never the job
        directory. Without ``must_exist`` a missing area, or job directory (a job sent with
        jobSubmit that no worker has claimed yet), is a path that does not exist (read as an
        empty area).

        Raises:
            SandboxError: (``create``) the job directory does not exist, or the area cannot
                be made; (``must_exist``) the area does not exist.
        """
        if create:
            if not self.has_job_area(job_id):
                raise SandboxError(f"The job directory of {job_id} does not exist")
            return self.create_area(self.job_rel_dir(job_id), area)
        path = self.job_dir(job_id) / area
        if must_exist and not path.is_dir():
            raise SandboxError(f"The {area} sandbox directory of {job_id} does not exist")
        return path

    # --- client paths ---

    def split_path(self, rel_path: str) -> tuple[str, str, tuple[str, ...]]:
        """Check a client path syntactically, without touching the disk.

        Args:
            rel_path: URL path below the document root, already percent-decoded, without
                the leading ``/``: ``SandboxDir/Ab/<job dir>/input/sub/file.txt``. One
                trailing ``/`` is allowed (directories).

        Returns:
            ``(job_rel_dir, area, rest)``: area is ``"input"`` or ``"output"``, rest the
            components below it (empty for the area itself).

        Raises:
            SandboxPathError: NUL, backslash, empty, ``.`` or ``..`` components, an
                absolute path, a path outside ``<dir_name>/<2ch>/<job dir>/{input,output}``,
                more than :data:`MAX_PATH_DEPTH` components below the area.
            SandboxNameError: control characters (below U+0020, DEL).
        """
        if "\x00" in rel_path or "\\" in rel_path:
            raise SandboxPathError("Sandbox paths may not contain NUL or backslash characters")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in rel_path):
            raise SandboxNameError("Sandbox paths may not contain control characters (newline, CR, ESC...)")
        if rel_path.startswith("/"):
            raise SandboxPathError("Sandbox paths must be relative to the document root")
        parts = rel_path.split("/")
        if parts and parts[-1] == "":
            parts.pop()  # one trailing slash
        if any(p in ("", ".", "..") for p in parts):
            raise SandboxPathError("Sandbox paths may not contain empty, '.' or '..' components")
        if len(parts) < 4 or parts[0] != self.dir_name or len(parts[1]) != 2:
            raise SandboxPathError(
                f"Not a job sandbox path: only {self.dir_name}/<xx>/<job>/input and output are served"
            )
        if parts[3] not in AREAS:
            raise SandboxPathError("Only the input, output and peek directories of a job are served")
        if len(parts) - 4 > MAX_PATH_DEPTH:
            raise SandboxPathError(f"Sandbox paths may have at most {MAX_PATH_DEPTH} components below {parts[3]}/")
        return "/".join(parts[:3]), parts[3], tuple(parts[4:])

    def resolve(self, rel_path: str) -> ResolvedPath:
        """Map a client path to a real path inside an existing job's ``input/`` or ``output/``.

        The caller has checked that the job exists (the sandbox edge asks the store first).

        Args:
            rel_path: as for :meth:`split_path`.

        Returns:
            :class:`ResolvedPath`. The path may not exist; every existing component
            is a real directory (or, for the last one, a non-symlink). An area that has not
            been created yet, or whose job directory has not (a job sent with jobSubmit that
            no worker has claimed yet), gives ``area_exists=False``.

        Raises:
            UnknownJobAreaError: something other than a directory where the job's
                directory or its fan-out directory should be.
            SandboxPathError: a syntactically bad path (see :meth:`split_path`), a
                symlink anywhere below the root, or a non-directory in the middle.
            SandboxNameError: the path on disk would be longer than :data:`PATH_MAX` (a MOVE's
                Destination, deep long names): no system call could use it.
        """
        job_rel_dir, area, rest = self.split_path(rel_path)
        job_dir = self.root / job_rel_dir
        if len(os.fsencode(job_dir.joinpath(area, *rest))) >= PATH_MAX:  # lstat: ENAMETOOLONG, a 500
            raise SandboxNameError(f"Sandbox path too long: its path on the server has {PATH_MAX} bytes or more")
        current = self.root
        for i, name in enumerate([*job_rel_dir.split("/"), area]):
            current = current / name
            try:
                st = os.lstat(current)
            except FileNotFoundError:  # the area is made by its first write, the job directory of a
                # job sent with jobSubmit by the claim of a worker
                return ResolvedPath(job_rel_dir, job_dir.joinpath(area, *rest), area_exists=False)
            except NotADirectoryError:
                raise UnknownJobAreaError(f"No such job sandbox: /{job_rel_dir}/{area}") from None
            if not stat.S_ISDIR(st.st_mode):  # symlinks included
                if i < 3:
                    raise UnknownJobAreaError(f"No such job sandbox: /{job_rel_dir}/{area}")
                raise SandboxPathError("Symbolic links are not allowed in sandbox paths")
        for i, name in enumerate(rest):
            current = current / name
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                current = current.joinpath(*rest[i + 1 :])  # nothing below exists: no symlinks
                break
            if stat.S_ISLNK(st.st_mode):
                raise SandboxPathError("Symbolic links are not allowed in sandbox paths")
            if i < len(rest) - 1 and not stat.S_ISDIR(st.st_mode):
                raise SandboxPathError(f"Not a directory: {'/'.join(rest[: i + 1])}")
        if current != job_dir.joinpath(area, *rest):  # cannot happen: every component was checked above
            raise SandboxPathError("Sandbox path outside its job area")
        return ResolvedPath(job_rel_dir, current)

    # --- the job's own files ---

    def collect_output_files(
        self, job_id: str, work_dir: Path, names: tuple[str, ...], budget: int | None = None, max_files: int = 0,
        targets: Sequence[str] = (), max_name_bytes: int = NAME_MAX,
    ) -> OutputCollection:
        """Copy the job's output sandbox files from ``work_dir`` into its ``output/`` (atomically each).

        Only regular files inside ``work_dir`` are copied, opened through descriptors
        without following any symbolic link (:func:`open_confined`); a symlink, a hard
        link (``st_nlink > 1``: the job could have linked a file it cannot read into its
        directory), a FIFO or device, or a name leaving ``work_dir`` is not collected. Nor is
        what the service keeps there (:func:`~wmproxy.domain.service_file`: the job's proxy
        ``user.proxy``, the owner's credential, and ``.wmproxy/``), for the owner as for the
        readers the job's ACL admits: a wildcard never matches it, and an entry naming it (a
        JDL registered before registration refused that) is not collected, with the reason.

        Each file is copied up to its size when opened (``fstat``; what the job's leftovers add
        during the copy is not read) and, with a ``budget``, up to what is left of it after the
        files before it: a file over that is truncated to it (an empty file once the budget is
        spent), as the reference's JobWrapper truncated files beyond its output sandbox limit.
        A sparse file is read, so its holes are written as zeros: the budget bounds that too.

        An entry with wildcards (``*``, ``?``, ``[``) in its last component stands for every
        name in its directory (listed without following a symbolic link, :func:`_expand_wildcards`)
        it matches (:func:`fnmatch.fnmatchcase`; ``*`` and ``?`` match no leading ``.``), in name
        order, each collected as a plain entry; one matching nothing is ``"not produced"``.

        Args:
            job_id: the job.
            work_dir: the directory the job ran in.
            names: ``OutputSandbox`` names relative to ``work_dir``.
            targets: the file name in ``output/`` of each entry of ``names``, the last segment of
                its registered destination (:attr:`~wmproxy.jdl.description.JobDescription.output_names`);
                ``""`` or none: the entry's own file name. An entry whose name an earlier one has
                taken is not collected (``"it has the same name ... as <earlier entry>"``), never
                written over it; nor one stored under a name never served (:func:`withheld`:
                ``user.proxy``, a JDL registered before such destinations were refused).
            budget: bytes all the files together may take (None: no limit).
            max_files: files at most collected (``[limits] max_output_sandbox_files``: wildcards
                can name more than the entries registration counted); 0: no limit. A file
                beyond it is not collected.
            max_name_bytes: bytes of UTF-8 a name stored in ``output/`` may have (``[limits]
                max_sandbox_name_bytes``, what every creation of a sandbox name allows): a
                longer one is not collected ("its destination name cannot be served").

        Returns:
            :class:`OutputCollection`: ``(name, reason)`` of each file not collected, in order;
            reasons are ``"not produced"``, ``"symbolic link"``, ``"hard link"``, ``"not a
            regular file"``, ``"outside the work directory"``, what
            :func:`~wmproxy.domain.service_file` says of a reserved name, ``"its destination name
            cannot be served: ..."`` for a name the sandbox edge refuses (:func:`check_file_name`:
            control characters, bytes that are not UTF-8, ``\\``, longer than ``max_name_bytes``:
            its download and its directory's listing would fail), names escaped
            (:func:`shown_name`); and ``(name, kept, size)`` of each file truncated to the budget.

        Raises:
            SandboxError: the job area does not exist (with a file to collect), ``output/``
                cannot be made, or a file cannot be written.
        """
        # A job's first output sandbox creates output/ (a job without one leaves none).
        output = self._area(job_id, "output", must_exist=False, create=bool(names))
        missing: list[tuple[str, str]] = []
        truncated: list[tuple[str, int, int]] = []
        left = budget
        collected = 0
        stored: dict[str, str] = {}  # name in output/ -> the entry stored under it
        for entry, target in _expand_wildcards(work_dir, names, targets):
            if (why := domain.service_file(entry)) is not None:  # named: a JDL registered before it was refused
                missing.append((shown_name(entry), why))
                continue
            base = os.path.basename(entry)
            if base in ("", ".", ".."):  # "dir/": no file name to store it under (os.replace onto output/)
                missing.append((shown_name(entry), "not a regular file"))
                continue
            name = target or base
            if name in ("", ".", "..") or "/" in name or "\0" in name or is_temporary(name) or name in OUTPUT_HIDDEN:
                missing.append((shown_name(entry), f"its destination name {shown_name(repr(name))} is not a file name"))
                continue
            if (why := withheld("output", (name,))) is not None:  # stored there, it would never be served
                missing.append((shown_name(entry), f"its destination name {shown_name(repr(name))} is reserved: {why}"))
                continue
            if name in stored:
                why = f"it has the same name {shown_name(name)} in the output sandbox as {shown_name(stored[name])}"
                missing.append((shown_name(entry), why))
                continue
            if max_files > 0 and collected >= max_files:
                missing.append((shown_name(entry),
                                f"the maximum number of output sandbox files ({max_files}) is reached"))
                continue
            try:
                source = open_confined(work_dir, entry)
            except ConfinementError as exc:
                missing.append((shown_name(base), exc.reason))
                continue
            try:  # a name the edge refuses (a newline, bytes not UTF-8...) broke its download and the listing
                check_file_name(name, max_name_bytes, "output sandbox file name")
            except SandboxNameError as exc:
                os.close(source)
                missing.append((shown_name(entry), f"its destination name cannot be served: {exc.message}"))
                continue
            collected += 1
            stored[name] = entry
            fd, tmp = _mkstemp(output / name)
            try:
                with os.fdopen(fd, "wb") as out, os.fdopen(source, "rb", buffering=0) as data:
                    os.fchmod(out.fileno(), 0o600)
                    size = os.fstat(data.fileno()).st_size
                    wanted = size if left is None else min(size, left)
                    copied = _copy_at_most(data, out, wanted)
                os.replace(tmp, output / name)
            except OSError as exc:
                _unlink_quietly(tmp)
                raise SandboxError(f"Unable to store the output file {shown_name(name)}: {exc.strerror}") from exc
            if left is not None:
                left -= copied
                if size > wanted:
                    truncated.append((shown_name(name), copied, size))
        return OutputCollection(missing, truncated)

    # --- writing ---

    def write_file_atomic(self, path: Path, data: bytes, mode: int = 0o600) -> None:
        """Write ``data`` to ``path`` atomically: temp file in the same directory, fsync, rename.

        Readers see either the old or the complete new content, never a partial file.

        Raises:
            SandboxError: the file cannot be written.
        """
        path = Path(path)
        fd, tmp = _mkstemp(path)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), mode)
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            _unlink_quietly(tmp)
            raise SandboxError(f"Unable to write {path.name}: {exc.strerror}") from exc
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def stream_into(
        self, path: Path, stream: ReadableStream, length: int | None, limit: int, *,
        commit: Commit | None = None, prepare: Callable[[], object] | None = None,
    ) -> int:
        """Copy an upload into ``path`` atomically, at most ``limit`` bytes.

        Args:
            path: destination file; its directory must exist. Replaced atomically.
            stream: object with ``read(n) -> bytes``; b"" means end of data.
            length: announced size in bytes (``Content-Length``), or None (chunked):
                then the stream is read until it ends.
            limit: maximum bytes accepted.
            commit: ``commit(bytes written, replace)`` once the data is on disk: it must
                call ``replace()`` (the atomic rename into ``path``), e.g. inside the
                transaction that counts the bytes; if it raises, nothing is left on disk.
            prepare: called once an announced ``length`` is within ``limit``, before anything
                is written (e.g. :meth:`create_area` for the first upload into ``input/``).

        Returns:
            Bytes written.

        Raises:
            QuotaExceededError: ``length`` or the bytes received exceed ``limit``; checked
                before reading when ``length`` is known. Nothing is left on disk.
            InvalidArgumentError: the stream ended before ``length`` bytes arrived, or a read of
                it failed (a connection cut, a malformed chunk: the request, not the disk).
            SandboxError: the file cannot be written.
        """
        path = Path(path)
        if length is not None and length > limit:
            raise _too_big(path, limit)
        if prepare is not None:
            prepare()
        fd, tmp = _mkstemp(path)
        total = 0
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o600)
                while True:
                    want = CHUNK_SIZE if length is None else min(CHUNK_SIZE, length - total)
                    if want <= 0:
                        break
                    chunk = _read_body(stream, want, path)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > limit:
                        raise _too_big(path, limit)
                    out.write(chunk)
                if length is not None and total < length:
                    raise InvalidArgumentError(
                        f"Upload of {path.name} truncated: {total} of {length} bytes received"
                    )
                # No fsync (issue 14): the rename below keeps readers from a partial file; an upload is
                # not promised to survive a power loss, which a client sees as a missing input file.
                out.flush()
            if commit is None:
                os.replace(tmp, path)
            else:
                commit(total, lambda: os.replace(tmp, path))
        except OSError as exc:
            _unlink_quietly(tmp)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise QuotaExceededError(f"No space left to store {path.name}") from exc
            raise SandboxError(f"Unable to store {path.name}: {exc.strerror}") from exc
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return total


def _read_body(stream: ReadableStream, size: int, path: Path) -> bytes:
    """``stream.read(size)``; whatever a read raises (the server's NoMoreData, an OSError, for a
    request cut off; its InvalidChunkSize for a malformed chunked body) is the request's fault.
    A BaseException (a stalled client's PeerStalledError) passes as it is.

    Raises:
        InvalidArgumentError: the read failed.
    """
    try:
        return stream.read(size)
    except Exception as exc:
        raise InvalidArgumentError(f"Upload of {path.name}: truncated or malformed request body") from exc


def _too_big(path: Path, limit: int) -> QuotaExceededError:
    return QuotaExceededError(
        f"The upload of {path.name} exceeds the maximum input sandbox size of {limit} bytes"
        " (bytes still free in this job's input sandbox)"
    )


def _mkdir_new(path: Path, mode: int) -> None:
    """Create ``path`` with exactly ``mode``: one ``mkdir`` call, and a ``chmod`` only when the
    process umask takes bits of ``mode`` away.

    Raises:
        FileExistsError, FileNotFoundError, OSError: as ``os.mkdir``.
    """
    os.mkdir(path, mode)
    if mode & _process_umask():
        os.chmod(path, mode)


def _owned_like_parent(path: Path) -> None:
    """Give the new directory ``path`` its parent's owner and group when they are not this
    process's (nothing to do in the usual case: one ``lstat``); left as it is when the
    process may not chown."""
    parent = os.lstat(path.parent)
    if (parent.st_uid, parent.st_gid) != (os.geteuid(), os.getegid()):
        with contextlib.suppress(PermissionError):
            os.chown(path, parent.st_uid, parent.st_gid, follow_symlinks=False)


@functools.cache
def _process_umask() -> int:
    """The process umask, read once (``/proc/self/status``; the service never changes it);
    0o777 when it cannot be read, so that every mode is set explicitly."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o777


def _mkdir(path: Path, mode: int) -> bool:
    """Create ``path`` with exactly ``mode`` (umask ignored) unless it exists as a directory;
    True when this call created it."""
    try:
        _mkdir_new(path, mode)
    except FileExistsError:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise
        return False
    return True


#: Bytes of the target name kept in a temporary file's name: ``.<name>.<8 random>`` plus
#: :data:`TMP_SUFFIX` then fits in :data:`NAME_MAX` even for a 255-byte target name.
_TMP_NAME_BYTES = NAME_MAX - len(TMP_SUFFIX) - 2 - 8


def _mkstemp(path: Path) -> tuple[int, str]:
    stem = path.name.encode("utf-8", "surrogateescape")[:_TMP_NAME_BYTES].decode("utf-8", "ignore")
    try:
        return tempfile.mkstemp(dir=path.parent, prefix=f".{stem}.", suffix=TMP_SUFFIX)
    except OSError as exc:
        raise SandboxError(f"Unable to create {path.name}: {exc.strerror}") from exc


@contextlib.contextmanager
def _locked_directory(path: Path) -> Iterator[bool]:
    """Hold an exclusive ``flock`` of the directory ``path`` (across processes) until the block
    ends; yields False, holding nothing, when there is no directory at ``path``.

    A file system without ``flock`` for directories (NFS emulates it with byte-range locks, which
    need a file open for writing: EBADF; Lustre mounted ``noflock``: ENOSYS) goes on without the
    lock, logged once per file system: the changes of one job then do not take turns across
    hosts, as without this lock, rather than every one of them failing.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        yield False
        return
    try:
        flock_directory(fd, path, wait=True,  # let go when closed
                        unlocked="changes of one job's sandbox go on without taking turns across processes")
        yield True
    finally:
        os.close(fd)


def lock_held(fd: int, path: Path, now: float | Callable[[], float] | None = None) -> bool:
    """Whether a removal holds the retirement lock file open at ``fd`` (``path`` names it in the
    log): its ``flock`` is held (taken here, when free, and let go when ``fd`` is closed).

    On a file system without ``flock`` (NFS without its lock manager: ENOLCK; EOPNOTSUPP, ...;
    :data:`~wmproxy.sandbox.trees.NO_FLOCK_ERRNOS`) nothing tells a live removal from one that
    died: it is taken for held while the file changed less than :data:`UNLOCKED_RETIREMENT_AGE`
    seconds from ``now`` (a time, or a function read only then: the storage passes the file
    system's clock, :meth:`FilesystemSandboxStorage.file_system_time`, as the file's time is the
    file server's; default this host's clock), as a live removal touches it as it goes
    (:meth:`FilesystemSandboxStorage.touch_retirement`). A time ahead of ``now`` counts by its
    distance: a file set ahead (a clock skewed, a time copied) held the areas until ``now``
    caught up. Logged once per process and file system.
    """
    taken = try_flock(fd, wait=False)
    if taken is not None:
        return not taken
    log_no_flock(fd, path, _UNLOCKED_RETIREMENT)
    at = time.time() if now is None else now() if callable(now) else now
    return abs(at - os.fstat(fd).st_mtime) < UNLOCKED_RETIREMENT_AGE


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _tree_size(top: Path, *, count: bool = False) -> int:
    """Bytes of the regular files under ``top`` (or, with ``count``, how many regular files and
    directories there are), symlinks not followed, without recursion (:func:`tree_totals`)."""
    totals = tree_totals(top)
    return totals.files + totals.dirs if count else totals.size


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
