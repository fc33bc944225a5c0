"""The gLite job-id file written by ``submit -o`` and read by ``status -i`` / ``output -i``.

Format (``peers.md`` §9.1, UI ``utils.cpp`` JOBID_FILE_HEADER): first line
``###Submitted Job Ids###``, then one job id per line, appended. Lines starting with
``#`` (such as ``#*Following Job Registered but Submission failed...``) are comments.
"""

from __future__ import annotations

import os
from pathlib import Path

HEADER = "###Submitted Job Ids###"
FAILED_HEADER = "#*Following Job Registered but Submission failed (try use --start option)"


def append_job_id(path: str | os.PathLike[str], job_id: str) -> Path:
    """Append ``job_id`` to the file, writing the header first if the file is new or empty.

    Returns:
        The file's absolute path.

    Raises:
        OSError: the file cannot be written.
    """
    target = Path(path).absolute()
    exists = target.is_file() and target.stat().st_size > 0
    with target.open("a", encoding="utf-8") as fh:
        if not exists:
            fh.write(HEADER + "\n")
        fh.write(job_id + "\n")
    return target


def read_job_ids(path: str | os.PathLike[str]) -> list[str]:
    """The job ids of a job-id file, in order, without comments and blank lines.

    Raises:
        OSError: the file cannot be read.
    """
    ids = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            ids.append(line)
    return ids


def append_failed_job_id(path: str | os.PathLike[str], job_id: str) -> Path:
    """Append a registered job whose start failed: the :data:`FAILED_HEADER` marker, then the id.

    Raises:
        OSError: the file cannot be written.
    """
    target = Path(path).absolute()
    exists = target.is_file() and target.stat().st_size > 0
    with target.open("a", encoding="utf-8") as fh:
        if not exists:
            fh.write(HEADER + "\n")
        fh.write(FAILED_HEADER + "\n" + job_id + "\n")
    return target
