"""The CLI's own error: a local problem reported like a fault; and the bounded reading of the
local text files the CLI sends or reads ids from, whose failures it reports."""

from __future__ import annotations

import errno
import os
import stat

#: the largest local text file read (a JDL, an ``-i`` file of job or CE ids, ``--default-jdl``):
#: the service's default ``[limits] max_request_bytes``, the most one request may carry
MAX_TEXT_FILE = 16 * 1024 * 1024


def read_text_file(path: str | os.PathLike[str]) -> str:
    """The UTF-8 text of the regular file ``path``, read only up to :data:`MAX_TEXT_FILE` bytes
    (``/dev/zero``, a FIFO or a huge file never fill the memory or reach the service).

    Raises:
        OSError: it cannot be opened or read, is not a regular file (``EINVAL``) or is larger than
            :data:`MAX_TEXT_FILE` (``EFBIG``); ``strerror`` says which.
        UnicodeDecodeError: it is not UTF-8.
    """
    # O_NONBLOCK: opening a FIFO does not wait for a writer (it is refused below)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "it is not a regular file", str(path))
        data = fh.read(MAX_TEXT_FILE + 1)
    if len(data) > MAX_TEXT_FILE:
        raise OSError(errno.EFBIG, too_large("it is"), str(path))
    return data.decode("utf-8")


def too_large(what: str) -> str:
    """``<what> larger than 16 MiB, ...``: why a text is not sent or read."""
    return (f"{what} larger than {MAX_TEXT_FILE // (1024 * 1024)} MiB, the most a WMProxy request may carry "
            "(the service's default [limits] max_request_bytes)")


def unreadable(exc: OSError | UnicodeDecodeError) -> str:
    """Why a text file could not be read: the system's reason, or that it is not UTF-8."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    return exc.strerror or str(exc)


class CliError(Exception):
    """A local problem reported like a fault: ``Error - <kind>: <description>``; ``job_id``:
    the job it concerns, when one was registered (``"jobid"`` of the ``--json`` error)."""

    def __init__(self, kind: str, description: str, job_id: str | None = None) -> None:
        super().__init__(f"{kind}: {description}")
        self.kind = kind
        self.description = description
        self.job_id = job_id
