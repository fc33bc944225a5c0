"""Moving sandbox files between a job's area and its work directory.

Reads come from the job's :class:`~wmproxy.sandbox.storage.JobArea`; every write into
the area goes through :class:`~wmproxy.sandbox.storage.FilesystemSandboxStorage`
(``write_proxy``, ``collect_output``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from wmproxy.errors import SandboxError
from wmproxy.sandbox.storage import FilesystemSandboxStorage, JobArea
from wmproxy.security.proxy import load_credential


def stage_in(area: JobArea, work_dir: Path, files: tuple[str, ...]) -> None:
    """Copy the named input sandbox files from ``area.input_dir`` into ``work_dir``.

    Raises:
        SandboxError: a file named in the registered InputSandbox was never uploaded.
    """
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in files:
        source = area.input_dir / name
        if not source.is_file() or source.is_symlink():
            raise SandboxError(f"input sandbox file {name} has not been uploaded")
        shutil.copyfile(source, work_dir / name)


def stage_out(storage: FilesystemSandboxStorage, area: JobArea, work_dir: Path, files: tuple[str, ...]) -> list[str]:
    """Copy the output sandbox files the job produced into ``area.output_dir``.

    Returns:
        The names the job did not produce.

    Raises:
        SandboxError: the output area is missing or a file cannot be written.
    """
    return storage.collect_output(area.job_id, work_dir, files)


def write_job_proxy(storage: FilesystemSandboxStorage, area: JobArea, proxy_pem: bytes) -> Path:
    """Check the job's proxy and write it to ``area.proxy_file`` (mode 0600, atomic replace).

    Raises:
        ProxyError: the stored delegation is missing or unreadable.
        SandboxError: the file cannot be written.
    """
    load_credential(proxy_pem)  # refuse to hand a broken credential to a job
    return storage.write_proxy(area.job_id, proxy_pem)
