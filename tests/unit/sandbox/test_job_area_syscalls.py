"""A new job area costs one ``mkdir`` call (the job directory; its three areas are made by
their first write; two more under a new fan-out directory) and no ``chmod`` under an
ordinary umask, and every directory still gets exactly its mode under one that would take
bits away (wmproxy/sandbox/storage.py, ``create_job_area`` and ``create_area``)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wmproxy.sandbox import storage as storage_module
from wmproxy.sandbox.storage import AREAS, FilesystemSandboxStorage

JOB = "https://lb.example.org:9000/AbC-x_1yz"
NEIGHBOUR = "https://lb.example.org:9000/AbQQQQQQQQ"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ``mkdir``/``chmod`` calls the storage module makes (each still done for real)."""
    seen: list[str] = []
    real_mkdir, real_chmod = os.mkdir, os.chmod

    def mkdir(path: Any, mode: int = 0o777, *args: Any, **kwargs: Any) -> None:
        seen.append(f"mkdir {Path(path).name}")
        real_mkdir(path, mode, *args, **kwargs)

    def chmod(path: Any, mode: int, *args: Any, **kwargs: Any) -> None:
        seen.append(f"chmod {Path(path).name}")
        real_chmod(path, mode, *args, **kwargs)

    monkeypatch.setattr(storage_module.os, "mkdir", mkdir)
    monkeypatch.setattr(storage_module.os, "chmod", chmod)
    return seen


@pytest.fixture
def umask() -> Iterator[Any]:
    """Set the process umask for one test (the module reads it once: its cache is cleared)."""
    saved = os.umask(0o022)
    os.umask(saved)

    def set_mask(mask: int) -> None:
        os.umask(mask)
        storage_module._process_umask.cache_clear()

    yield set_mask
    os.umask(saved)
    storage_module._process_umask.cache_clear()


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_new_area_under_an_existing_fan_out_costs_one_mkdir(tmp_path: Path, calls: list[str],
                                                              umask: Any) -> None:
    umask(0o022)
    storage = FilesystemSandboxStorage(tmp_path / "root")
    storage.create_job_area(NEIGHBOUR)
    calls.clear()
    job_dir = storage.create_job_area(JOB)
    assert calls == [f"mkdir {job_dir.name}"]
    assert _mode(job_dir) == 0o700 and os.listdir(job_dir) == []


def test_a_new_fan_out_directory_costs_one_more(tmp_path: Path, calls: list[str], umask: Any) -> None:
    umask(0o022)
    storage = FilesystemSandboxStorage(tmp_path / "root")
    storage.create_job_area("https://lb.example.org:9000/ZZfirstjob")  # the staging directory exists
    calls.clear()
    job_dir = storage.create_job_area(JOB)
    assert calls == [f"mkdir {job_dir.name}", f"mkdir {job_dir.parent.name}", f"mkdir {job_dir.name}"]
    assert _mode(job_dir.parent) == 0o755


def test_an_area_costs_one_mkdir_at_its_first_write_and_none_after(tmp_path: Path, calls: list[str],
                                                                    umask: Any) -> None:
    umask(0o022)
    storage = FilesystemSandboxStorage(tmp_path / "root")
    job_dir = storage.create_job_area(JOB)
    calls.clear()
    storage.write_perusal_chunk(JOB, "out.txt", b"1", 1)
    storage.write_perusal_chunk(JOB, "out.txt", b"2", 2)
    assert calls == ["mkdir peek", "mkdir peek"]  # the second finds it made (EEXIST): no chmod
    assert _mode(job_dir / "peek") == 0o700


def test_modes_are_exact_under_a_umask_that_takes_bits_away(tmp_path: Path, umask: Any) -> None:
    umask(0o277)
    storage = FilesystemSandboxStorage(tmp_path / "root")
    job_dir = storage.create_job_area(JOB)
    assert _mode(storage.root / storage.dir_name) == 0o755
    assert _mode(job_dir.parent) == 0o755
    assert _mode(job_dir) == 0o700
    for area in AREAS:
        storage.create_area(storage.job_rel_dir(JOB), area)
    assert all(_mode(path) == 0o700 for path in (job_dir, *(job_dir / area for area in AREAS)))
    second = storage.create_job_area(NEIGHBOUR)
    assert _mode(second) == 0o700


def test_a_new_sandbox_root_is_private_under_the_usual_umask(tmp_path: Path, umask: Any) -> None:
    """The execution worker makes the job directory when it claims a job sent with jobSubmit,
    so it may make a new ``[sandbox] root`` (and its missing parents): under its umask 0022 the
    root got 0755 and any local account could list ``SandboxDir/<xx>/`` (the job ids)."""
    umask(0o022)
    storage = FilesystemSandboxStorage(tmp_path / "srv" / "root")
    job_dir = storage.create_job_area(JOB, hand_over=True)
    assert _mode(storage.root) == 0o700
    assert _mode(storage.root.parent) == 0o755  # a missing parent: the umask's mode, as before
    assert (_mode(storage.root / storage.dir_name), _mode(job_dir.parent), _mode(job_dir)) == (0o755, 0o755, 0o700)


def test_an_existing_area_is_kept_and_a_file_in_its_place_refused(tmp_path: Path, umask: Any) -> None:
    from wmproxy.errors import SandboxError

    umask(0o022)
    storage = FilesystemSandboxStorage(tmp_path / "root")
    job_dir = storage.create_job_area(JOB)
    (job_dir / "input").mkdir()
    (job_dir / "input" / "f").write_bytes(b"x")
    assert storage.create_job_area(JOB) == job_dir
    assert (job_dir / "input" / "f").read_bytes() == b"x"
    blocker = storage.job_dir(NEIGHBOUR)
    blocker.write_bytes(b"not a directory")
    with pytest.raises(SandboxError):
        storage.create_job_area(NEIGHBOUR)
