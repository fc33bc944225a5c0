"""The gLite job-id file written by ``submit -o`` and read by ``status -i`` / ``output -i``.

Format (``peers.md`` §9.1, UI ``utils.cpp`` JOBID_FILE_HEADER): first line
``###Submitted Job Ids###``, then one job id per line, appended. Lines starting with
``#`` (such as ``#*Following Job Registered but Submission failed...``) or ``//`` are
comments; a job id listed twice (``submit --start ID -o`` after ``--register-only -o``) is
read once.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from wmproxy.cli.errors import read_text_file

HEADER = "###Submitted Job Ids###"
FAILED_HEADER = "#*Following Job Registered but Submission failed (try use --start option)"


class NotAJobIdFileError(OSError):
    """A non-empty file whose first line is not :data:`HEADER`: job ids are not appended to it
    (it may be the JDL itself, or any other file given to ``-o`` by mistake)."""


def check_job_id_file(path: str | os.PathLike[str]) -> None:
    """Check, before anything is submitted, that job ids can be appended to ``path``: an
    existing regular file that is empty or starts with :data:`HEADER`, or a new file in an
    existing directory (the write itself may still fail later: a full disk, a race).

    Raises:
        OSError: not so; ``strerror`` says why (:class:`NotAJobIdFileError` for a file that is
            not a job-id file).
    """
    target = Path(path).absolute()
    if target.is_symlink():
        raise OSError(errno.ELOOP, _LINK, str(target))
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "it is a directory", str(target))
    if target.exists() and not target.is_file():
        raise OSError(errno.EINVAL, "it is not a regular file", str(target))
    if target.exists():
        if not os.access(target, os.W_OK):
            raise PermissionError(errno.EACCES, "Permission denied", str(target))
        _check_header(target)
        return
    parent = target.parent
    if not parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"the directory {parent} does not exist", str(target))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"the directory {parent} is not writable", str(target))


def _check_header(target: Path) -> bool:
    """Whether ``target`` is a non-empty job-id file (False: empty or absent).

    Raises:
        NotAJobIdFileError: non-empty, and its first line is not :data:`HEADER`.
        OSError: it cannot be read.
    """
    if not target.is_file() or target.stat().st_size == 0:
        return False
    with target.open("rb") as fh:
        return _header_line(fh.readline(len(HEADER) + 16), target)


def _header_line(first: bytes, target: Path) -> bool:
    """True when ``first`` (the start of the file's first line) is :data:`HEADER`.

    Raises:
        NotAJobIdFileError: it is not.
    """
    if first.split(b"\n", 1)[0].decode("utf-8", "replace").lstrip("\ufeff").strip() != HEADER:
        raise NotAJobIdFileError(errno.EINVAL, f"it is not a job id file (its first line is not {HEADER}): "
                                 "job ids are not appended to it", str(target))
    return True


#: why a job-id file that is a symbolic link is refused
_LINK = "it is a symbolic link, which is not followed: give the file itself"


def _append(path: str | os.PathLike[str], lines: str) -> Path:
    """Append ``lines`` to the job-id file, writing :data:`HEADER` first if it is new or empty.

    The file is opened once (``O_APPEND|O_CREAT``, mode 0666 less the umask for a new one, as
    any file the user makes) and never through a link (``O_NOFOLLOW``): a link planted in a
    shared directory such as ``/tmp`` under the name the user gives would have had the ids
    appended to whatever it points to. The header is read from what was opened, and a FIFO or
    device is refused (``O_NONBLOCK``: opening one does not wait).
    """
    target = Path(path).absolute()
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, _LINK, str(target)) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "it is not a regular file", str(target))
        exists = info.st_size > 0 and _header_line(os.pread(fd, len(HEADER) + 16, 0), target)
        data = ("" if exists else HEADER + "\n") + lines
        os.write(fd, data.encode("utf-8"))
    finally:
        os.close(fd)
    return target


def append_job_id(path: str | os.PathLike[str], job_id: str) -> Path:
    """Append ``job_id`` to the file, writing the header first if the file is new or empty.

    Returns:
        The file's absolute path.

    Raises:
        OSError: the file cannot be written, or is not a job-id file (:class:`NotAJobIdFileError`).
    """
    return _append(path, job_id + "\n")


def read_job_ids(path: str | os.PathLike[str]) -> list[str]:
    """The job ids of a job-id file, in order of first appearance, once each, without
    comments (lines starting with ``#`` or ``//``, as gLite's ``Utils::getItemsFromFile``),
    blank lines and a leading UTF-8 BOM (which :func:`check_job_id_file` accepts too).

    Raises:
        OSError: the file cannot be read, is not a regular file or is larger than 16 MiB
            (:func:`wmproxy.cli.errors.read_text_file`).
    """
    text = read_text_file(path).removeprefix("\ufeff")
    ids: dict[str, None] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "//")):
            ids.setdefault(line)
    return list(ids)


def append_failed_job_id(path: str | os.PathLike[str], job_id: str) -> Path:
    """Append a registered job whose start failed: the :data:`FAILED_HEADER` marker, then the id.

    Raises:
        OSError: the file cannot be written, or is not a job-id file (:class:`NotAJobIdFileError`).
    """
    return _append(path, FAILED_HEADER + "\n" + job_id + "\n")
