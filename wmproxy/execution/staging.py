"""Moving sandbox files between a job's area and its work directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from wmproxy.errors import SandboxError
from wmproxy.security.proxy import load_credential


def stage_in(isb_dir: Path, work_dir: Path, files: tuple[str, ...]) -> None:
    """Copy the named input sandbox files from ``isb_dir`` (an ``input`` area) into ``work_dir``.

    Raises:
        SandboxError: a file named in the JDL's InputSandbox was never uploaded.
    """
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name in files:
        source = isb_dir / name
        if not source.is_file() or source.is_symlink():
            raise SandboxError(f"input sandbox file {name} has not been uploaded")
        shutil.copyfile(source, work_dir / name)


def stage_out(work_dir: Path, job_dir: Path, files: tuple[str, ...]) -> list[str]:
    """Copy the output sandbox files the job produced into ``<job_dir>/output``.

    Returns the names that the job did not produce.
    """
    missing: list[str] = []
    output = job_dir / "output"
    for entry in files:
        name = os.path.basename(entry)
        source = (work_dir / entry).resolve()
        if not source.is_relative_to(work_dir.resolve()) or not source.is_file():
            missing.append(name)
            continue
        tmp = output / f".{name}.part"
        shutil.copyfile(source, tmp)
        os.replace(tmp, output / name)
    return missing


def write_job_proxy(job_dir: Path, proxy_pem: bytes) -> Path:
    """Write the job's proxy file ``<job_dir>/user.proxy`` (mode 0600, atomic replace).

    Raises:
        ProxyError: the stored delegation is missing or unreadable.
    """
    load_credential(proxy_pem)  # refuse to hand a broken credential to a job
    target = job_dir / "user.proxy"
    tmp = job_dir / ".user.proxy.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(proxy_pem)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return target
