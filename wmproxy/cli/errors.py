"""The CLI's own error: a local problem reported like a fault; and the bounded reading of the
local text files the CLI sends or reads ids from, whose failures it reports."""

from __future__ import annotations

import errno
import logging
import os
import stat

_log = logging.getLogger("wmproxy.cli")

#: the largest local text file read (a JDL, an ``-i`` file of job or CE ids, ``--default-jdl``):
#: the service's default ``[limits] max_request_bytes``, the most one request may carry
MAX_TEXT_FILE = 16 * 1024 * 1024


def read_text_file(path: str | os.PathLike[str]) -> str:
    """The text of the regular file ``path``, read only up to :data:`MAX_TEXT_FILE` bytes
    (``/dev/zero``, a FIFO or a huge file never fill the memory or reach the service).

    The bytes are decoded as UTF-8, else as Latin-1 (ISO 8859-1): every byte is taken, as the
    gLite UI's parser took a file's bytes, so a JDL, ids or configuration file written in
    Latin-1 (``"caf\\xe9"``) is read as its author meant (``café``). A character so read is
    a character: a local file a Latin-1 JDL names (an InputSandbox entry) is looked up under
    its UTF-8 spelling, where gLite looked up the bytes. A file holding a NUL or starting with
    a UTF-16 byte order mark is refused (UTF-16 text, a binary file), not read as Latin-1.

    Raises:
        OSError: it cannot be opened or read, is not a regular file (``EINVAL``), is larger than
            :data:`MAX_TEXT_FILE` (``EFBIG``) or is not text (``EILSEQ``); ``strerror`` says
            which.
    """
    # O_NONBLOCK: opening a FIFO does not wait for a writer (it is refused below)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "it is not a regular file", str(path))
        data = fh.read(MAX_TEXT_FILE + 1)
    if len(data) > MAX_TEXT_FILE:
        raise OSError(errno.EFBIG, too_large("it is"), str(path))
    if (nul := data.find(b"\0")) >= 0 or data.startswith((b"\xff\xfe", b"\xfe\xff")):
        at = max(nul, 0)
        raise OSError(errno.EILSEQ, f"not UTF-8 or Latin-1 text: UTF-16 or binary (byte 0x{data[at]:02x} at "
                                    f"offset {at})", str(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _log.info("%s is not UTF-8 (byte 0x%02x at offset %d): read as Latin-1", path, data[exc.start], exc.start)
        return data.decode("latin-1")


def too_large(what: str) -> str:
    """``<what> larger than 16 MiB, ...``: why a text is not sent or read."""
    return (f"{what} larger than {MAX_TEXT_FILE // (1024 * 1024)} MiB, the most a WMProxy request may carry "
            "(the service's default [limits] max_request_bytes)")


def unreadable(exc: OSError) -> str:
    """Why a text file could not be read (:func:`read_text_file`): the system's reason."""
    return exc.strerror or str(exc)


class CliError(Exception):
    """A local problem reported like a fault: ``Error - <kind>: <description>``; ``job_id``:
    the job it concerns, when one was registered (``"jobid"`` of the ``--json`` error)."""

    def __init__(self, kind: str, description: str, job_id: str | None = None) -> None:
        super().__init__(f"{kind}: {description}")
        self.kind = kind
        self.description = description
        self.job_id = job_id
