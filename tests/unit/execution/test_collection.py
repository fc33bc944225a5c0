"""Collection from a job's work dir copies regular files only: no symlink is followed, no
hard link taken, nothing outside the work dir read, and each refusal has a reason."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from wmproxy.sandbox.confined import ConfinementError, open_confined
from wmproxy.sandbox.storage import FilesystemSandboxStorage

JOB = "https://lb.example.org:9000/CoLLectAAAAAAAAAAAAAAAA"


@pytest.fixture
def storage(tmp_path: Path) -> FilesystemSandboxStorage:
    storage = FilesystemSandboxStorage(tmp_path / "root")
    storage.create_job_area(JOB)
    return storage


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    (path / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_text("the worker's key")
    return path


def test_regular_files_are_collected_and_everything_else_refused_with_its_reason(
    storage: FilesystemSandboxStorage, work: Path, tmp_path: Path
) -> None:
    (work / "good.out").write_text("ok")
    (work / "sub" / "nested.out").write_text("nested")
    (work / "link.out").symlink_to(tmp_path / "secret")
    (work / "inner-link.out").symlink_to(work / "good.out")  # even a link inside the work dir
    os.link(tmp_path / "secret", work / "hard.out")
    os.mkfifo(work / "fifo.out")
    (work / "dir.out").mkdir()
    (work / "via").symlink_to(tmp_path)
    (tmp_path / "plain").write_text("outside")

    missing = storage.collect_output_files(JOB, work, (
        "good.out", "sub/nested.out", "link.out", "inner-link.out", "hard.out", "fifo.out", "dir.out",
        "via/plain", "../secret", "/etc/passwd", "absent.out",
    )).missing

    assert missing == [
        ("link.out", "symbolic link"),
        ("inner-link.out", "symbolic link"),
        ("hard.out", "hard link"),
        ("fifo.out", "not a regular file"),
        ("dir.out", "not a regular file"),
        ("plain", "symbolic link"),
        ("secret", "outside the work directory"),
        ("passwd", "outside the work directory"),
        ("absent.out", "not produced"),
    ]
    assert storage.output_files(JOB) == [("good.out", 2), ("nested.out", 6)]
    assert storage.collect_output_files(JOB, work, ("link.out", "good.out")).missing == [("link.out", "symbolic link")]


def test_an_entry_without_a_file_name_is_refused_and_the_others_are_collected(
    storage: FilesystemSandboxStorage, work: Path
) -> None:
    # "sub/" was stored as output/ itself: os.replace onto the directory failed, and with it the
    # whole collection (the job's end retried, the files after it never collected)
    (work / "sub" / "nested.out").write_text("nested")
    (work / "after.out").write_text("after")
    missing = storage.collect_output_files(JOB, work, ("sub/", ".", "after.out")).missing
    assert missing == [("sub/", "not a regular file"), (".", "not a regular file")]
    assert (storage.job_dir(JOB) / "output" / "after.out").read_text() == "after"


def test_the_first_collected_output_makes_a_private_output_area(storage: FilesystemSandboxStorage,
                                                                 work: Path) -> None:
    job_dir = storage.job_dir(JOB)
    assert storage.collect_output_files(JOB, work, ()) == ([], [])
    assert os.listdir(job_dir) == []  # registration made only the job directory; no outputs, no output/
    (work / "good.out").write_text("ok")
    collected = storage.collect_output_files(JOB, work, ("good.out", "absent.out"))
    assert collected.missing == [("absent.out", "not produced")]
    assert os.listdir(job_dir) == ["output"]
    assert stat.S_IMODE(os.lstat(job_dir / "output").st_mode) == 0o700
    assert os.lstat(job_dir / "output").st_uid == os.geteuid()  # the worker's, as registration's were
    assert storage.output_files(JOB) == [("good.out", 2)]


def test_open_confined_gives_a_descriptor_of_the_file_itself(work: Path) -> None:
    (work / "f").write_text("data")
    fd = open_confined(work, "f")
    with os.fdopen(fd, "rb") as f:
        assert f.read() == b"data"
    with pytest.raises(ConfinementError) as info:
        open_confined(work / "missing-dir", "f")
    assert info.value.reason == "not produced"


def test_a_budget_truncates_the_files_over_it_in_order_and_reads_no_further(
    storage: FilesystemSandboxStorage, work: Path
) -> None:
    (work / "first.out").write_bytes(b"a" * 600)
    (work / "second.out").write_bytes(b"b" * 700)  # 400 of it fit
    (work / "third.out").write_bytes(b"c" * 10)  # nothing left: kept empty
    (work / "link.out").symlink_to(work / "first.out")

    collected = storage.collect_output_files(JOB, work, ("first.out", "link.out", "second.out", "third.out"),
                                             budget=1000)

    assert collected.missing == [("link.out", "symbolic link")]
    assert collected.truncated == [("second.out", 400, 700), ("third.out", 0, 10)]
    output = storage.job_area(JOB).output_dir
    assert (output / "second.out").read_bytes() == b"b" * 400
    assert storage.output_files(JOB) == [("first.out", 600), ("second.out", 400), ("third.out", 0)]
    assert storage.output_bytes(JOB) == 1000


def test_a_sparse_file_is_not_made_larger_than_the_budget(storage: FilesystemSandboxStorage, work: Path) -> None:
    # `truncate -s 1T out` in a job: no block on the work dir's disk, a terabyte of zeros to read
    with open(work / "out", "wb") as sparse:
        sparse.truncate(1 << 40)
    (work / "small.out").write_bytes(b"kept whole")

    collected = storage.collect_output_files(JOB, work, ("small.out", "out"), budget=1 << 20)

    assert collected == ([], [("out", (1 << 20) - 10, 1 << 40)])
    kept = os.stat(storage.job_area(JOB).output_dir / "out")
    assert kept.st_size == (1 << 20) - 10 and kept.st_blocks * 512 <= 2 << 20
    assert storage.output_bytes(JOB) == 1 << 20


def test_without_a_budget_every_file_is_copied_whole(storage: FilesystemSandboxStorage, work: Path) -> None:
    (work / "big.out").write_bytes(os.urandom(3 * 1024 * 1024 + 5))  # over CHUNK_SIZE: several reads

    assert storage.collect_output_files(JOB, work, ("big.out",)) == ([], [])
    assert (storage.job_area(JOB).output_dir / "big.out").read_bytes() == (work / "big.out").read_bytes()
