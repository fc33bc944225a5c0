from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import stat
import subprocess
import threading
import types
from pathlib import Path

import pytest
from gunicorn.http.errors import InvalidChunkSize, NoMoreData  # type: ignore[import-untyped]

from tests.deep_trees import DEPTH, make_chain, removed_afterwards
from tests.support import WAIT_TIMEOUT, flock_waiters, start_thread, wait_for
from wmproxy.errors import InvalidArgumentError, QuotaExceededError, SandboxError, SandboxPathError
from wmproxy.sandbox import storage as storage_module
from wmproxy.sandbox import trees
from wmproxy.sandbox.storage import (
    AREAS,
    MAX_PATH_DEPTH,
    TMP_SUFFIX,
    UNLOCKED_RETIREMENT_AGE,
    FilesystemSandboxStorage,
    Retirement,
    UnknownJobAreaError,
    lock_held,
)

JOB = "https://lb.example.org:9000/AbC-x_1yz"
OTHER = "https://lb.example.org:9000/AbZZZZZZZZ"
JOB2 = "https://lb.example.org:9000/Cd2"
JOB_DIR = "SandboxDir/Ab/https_3a_2f_2flb.example.org_3a9000_2fAbC-x_5f1yz"


@pytest.fixture
def storage(tmp_path: Path) -> FilesystemSandboxStorage:
    return FilesystemSandboxStorage(tmp_path / "root")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _written(storage: FilesystemSandboxStorage, job_id: str) -> Path:
    """A registered job's directory after its first upload, output and perusal chunk: the
    three areas exist (registration alone makes only the job directory)."""
    job_dir = storage.create_job_area(job_id)
    for area in AREAS:
        storage.create_area(storage.job_rel_dir(job_id), area)
    return job_dir


class TestJobArea:
    def test_job_dir_follows_the_reference_layout(self, storage: FilesystemSandboxStorage) -> None:
        assert storage.job_dir(JOB) == storage.root / JOB_DIR

    def test_invalid_job_id_cannot_escape_the_fan_out(self, storage: FilesystemSandboxStorage) -> None:
        for _ in range(2):  # the paths of recent jobs are kept: a refusal never is
            with pytest.raises(InvalidArgumentError):
                storage.job_dir("https://h:9000/../../x")

    def test_create_makes_only_the_private_job_directory(self, storage: FilesystemSandboxStorage) -> None:
        job_dir = storage.create_job_area(JOB)
        assert job_dir == storage.root / JOB_DIR
        assert job_dir.is_dir() and _mode(job_dir) == 0o700
        assert os.listdir(job_dir) == []  # input/, output/, peek/ come with their first write
        assert _mode(job_dir.parent) == 0o755
        assert _mode(storage.root / "SandboxDir") == 0o755

    def test_create_is_idempotent(self, storage: FilesystemSandboxStorage) -> None:
        job_dir = _written(storage, JOB)
        (job_dir / "input" / "f").write_bytes(b"x")
        assert storage.create_job_area(JOB) == job_dir
        assert (job_dir / "input" / "f").read_bytes() == b"x"

    @pytest.mark.parametrize("area", AREAS)
    def test_an_area_is_created_private_once_and_then_kept(self, storage: FilesystemSandboxStorage,
                                                           area: str) -> None:
        job_dir = storage.create_job_area(JOB)
        assert storage.create_area(JOB_DIR, area) == job_dir / area
        assert _mode(job_dir / area) == 0o700
        (job_dir / area / "f").write_bytes(b"x")
        assert storage.create_area(JOB_DIR, area) == job_dir / area  # a second (racing) writer: fine
        assert (job_dir / area / "f").read_bytes() == b"x"

    def test_creating_an_area_never_brings_a_removed_job_back(self, storage: FilesystemSandboxStorage,
                                                               tmp_path: Path) -> None:
        job_dir = storage.create_job_area(JOB)
        storage.remove_job_area(JOB)
        (tmp_path / "out.txt").write_bytes(b"x")
        with pytest.raises(UnknownJobAreaError):
            storage.create_area(JOB_DIR, "input")
        with pytest.raises(SandboxError):  # a job aborted while it ran, purged before its end
            storage.collect_output_files(JOB, tmp_path, ("out.txt",))
        with pytest.raises(SandboxError):
            storage.write_perusal_chunk(JOB, "out.txt", b"x", 1)
        assert not job_dir.exists() and not job_dir.parent.exists()

    def test_a_job_without_a_directory_reads_as_empty(self, storage: FilesystemSandboxStorage) -> None:
        assert storage.output_files(JOB) == []
        assert storage.input_size(JOB) == storage.input_file_count(JOB) == 0
        assert storage.merge_perusal_chunks(JOB, "out.txt") == []
        assert storage.merged_perusal_files(JOB, "out.txt") == []
        assert storage.counted_bytes(JOB) == storage.output_bytes(JOB) == 0
        assert not storage.root.exists()  # reading made nothing

    @pytest.mark.skipif(os.geteuid() != 0, reason="handing a directory to another uid needs root")
    def test_a_job_directory_handed_over_gets_the_owner_of_its_parent(self, storage: FilesystemSandboxStorage) -> None:
        storage.create_job_area(OTHER)  # the server (here: uid 65534) made the root and the fan-out at registration
        for path in (storage.root, storage.root / "SandboxDir", storage.job_dir(OTHER).parent):
            os.chown(path, 65534, 65534)
        job_dir = storage.create_job_area(JOB, hand_over=True)  # a root worker claiming a job: same fan-out "Ab"
        assert (os.lstat(job_dir).st_uid, os.lstat(job_dir).st_gid, _mode(job_dir)) == (65534, 65534, 0o700)
        third = "https://lb.example.org:9000/QqQQQQQQQQ"  # a new fan-out directory too
        storage.create_job_area(third, hand_over=True)
        for path in (storage.job_dir(third), storage.job_dir(third).parent):
            assert (os.lstat(path).st_uid, os.lstat(path).st_gid) == (65534, 65534)
        assert os.lstat(storage.create_job_area("https://lb.example.org:9000/Zz0")).st_uid == 0  # not handed over

    @pytest.mark.skipif(os.geteuid() != 0, reason="handing a directory to another uid needs root")
    def test_a_new_sandbox_root_handed_over_gets_the_owner_of_its_parent(self, tmp_path: Path) -> None:
        parent = tmp_path / "state"  # the service user's (here: uid 65534) state directory
        parent.mkdir()
        os.chown(parent, 65534, 65534)
        storage = FilesystemSandboxStorage(parent / "root")
        job_dir = storage.create_job_area(JOB, hand_over=True)  # a root worker's claim makes the root
        for path in (storage.root, storage.root / "SandboxDir", job_dir.parent, job_dir):
            assert (os.lstat(path).st_uid, os.lstat(path).st_gid) == (65534, 65534)
        assert _mode(storage.root) == 0o700

    @pytest.mark.skipif(os.geteuid() != 0, reason="handing a directory to another uid needs root")
    def test_an_area_made_by_another_uid_gets_the_job_directory_owner(
        self, storage: FilesystemSandboxStorage
    ) -> None:
        job_dir = storage.create_job_area(JOB)  # as the server (here: uid 65534) made it at registration
        os.chown(job_dir, 65534, 65534)
        output = storage.create_area(JOB_DIR, "output")  # as a root worker would, later
        st = os.lstat(output)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o700)

    def test_a_file_in_the_place_of_an_area_is_refused(self, storage: FilesystemSandboxStorage) -> None:
        job_dir = storage.create_job_area(JOB)
        (job_dir / "input").write_bytes(b"not a directory")
        with pytest.raises(SandboxError, match="not a directory"):
            storage.create_area(JOB_DIR, "input")

    def test_areas_not_written_yet_read_as_empty(self, storage: FilesystemSandboxStorage) -> None:
        storage.create_job_area(JOB)
        assert storage.input_size(JOB) == 0
        assert storage.input_file_count(JOB) == 0
        assert storage.output_files(JOB) == []
        assert storage.output_bytes(JOB) == 0
        assert storage.counted_bytes(JOB) == 0
        assert storage.merge_perusal_chunks(JOB, "out.txt") == []
        assert storage.merged_perusal_files(JOB, "out.txt") == []
        assert storage.collect_output_files(JOB, storage.root, ()).missing == []  # no output sandbox: no output/
        assert os.listdir(storage.job_dir(JOB)) == []

    def test_remove_deletes_area_and_empty_fan_out_dir(self, storage: FilesystemSandboxStorage) -> None:
        job_dir = _written(storage, JOB)
        (job_dir / "input" / "f").write_bytes(b"x")
        storage.remove_job_area(JOB)
        assert not job_dir.exists()
        assert not job_dir.parent.exists()
        assert (storage.root / "SandboxDir").is_dir()
        storage.remove_job_area(JOB)  # already gone: fine

    def test_remove_keeps_fan_out_dir_of_other_jobs(self, storage: FilesystemSandboxStorage) -> None:
        _written(storage, JOB)
        other = storage.create_job_area(OTHER)
        storage.remove_job_area(JOB)
        assert other.is_dir()

    def test_remove_does_not_follow_symlinks(self, storage: FilesystemSandboxStorage, tmp_path: Path) -> None:
        outside = tmp_path / "precious"
        outside.mkdir()
        (outside / "keep").write_bytes(b"1")
        job_dir = _written(storage, JOB)
        (job_dir / "input" / "link").symlink_to(outside)
        storage.remove_job_area(JOB)
        assert (outside / "keep").read_bytes() == b"1"


class TestSizes:
    def test_input_size_sums_files_recursively(self, storage: FilesystemSandboxStorage, tmp_path: Path) -> None:
        job_dir = _written(storage, JOB)
        (job_dir / "input" / "a").write_bytes(b"12345")
        (job_dir / "input" / "sub").mkdir()
        (job_dir / "input" / "sub" / "b").write_bytes(b"123")
        big = tmp_path / "big"
        big.write_bytes(b"x" * 1000)
        (job_dir / "input" / "link").symlink_to(big)
        assert storage.input_size(JOB) == 8

    def test_an_area_deeper_than_the_recursion_limit_is_sized_counted_and_removed(
            self, storage: FilesystemSandboxStorage) -> None:
        """Directory PUTs made such a tree (1,399 levels): os.walk and shutil.rmtree recursed
        (RecursionError on 3.11), so every later upload, the recount, jobPurge and the purger failed."""
        job_dir = _written(storage, JOB)
        with removed_afterwards(job_dir):
            make_chain(job_dir / "input")
            make_chain(job_dir / "output", 3)
            assert storage.input_size(JOB) == 2 * DEPTH
            assert storage.input_file_count(JOB) == 2 * DEPTH  # the directories count too
            assert storage.counted_bytes(JOB) == storage.remove_job_area(JOB) == 2 * DEPTH + 6
            assert not job_dir.exists()

    def test_output_files_skips_markers_dirs_and_links(self, storage: FilesystemSandboxStorage) -> None:
        out = _written(storage, JOB) / "output"
        (out / "std.out").write_bytes(b"hello")
        (out / "a.err").write_bytes(b"")
        (out / ".gacl").write_bytes(b"acl")
        (out / "Maradona.output").write_bytes(b"done")
        (out / "dir").mkdir()
        (out / "link").symlink_to(out / "std.out")
        assert storage.output_files(JOB) == [("a.err", 0), ("std.out", 5)]

    def test_output_files_of_area_without_output_is_empty(self, storage: FilesystemSandboxStorage) -> None:
        storage.create_job_area(JOB)
        assert storage.output_files(JOB) == []


    def test_temporary_files_are_not_counted(self, storage: FilesystemSandboxStorage) -> None:
        """An upload in progress, or one a crash left, is not in the owner's usage counter: what
        the area's removal takes off (counted_bytes) and a recount finds must leave it out too."""
        job_dir = _written(storage, JOB)
        (job_dir / "input" / "in.bin").write_bytes(b"i" * 100)
        (job_dir / "input" / "sub").mkdir()
        (job_dir / "input" / "sub" / f".big.bin.k2j4l5m6{TMP_SUFFIX}").write_bytes(b"t" * 5000)
        (job_dir / "output" / "out.txt").write_bytes(b"o" * 30)
        (job_dir / "output" / f".out.txt.a1b2c3d4{TMP_SUFFIX}").write_bytes(b"t" * 7000)
        assert storage.counted_bytes(JOB) == 130
        assert storage.output_bytes(JOB) == 30  # what the worker counts after collecting
        assert storage.input_tally(JOB) == (100, 2)  # in.bin and the directory sub
        assert (storage.input_size(JOB), storage.input_file_count(JOB)) == (5100, 3)  # the early check's look


class TestWriteFileAtomic:
    def test_writes_with_mode_and_leaves_no_temp(self, storage: FilesystemSandboxStorage) -> None:
        job_dir = _written(storage, JOB)
        target = job_dir / "JDLOriginal"
        storage.write_file_atomic(target, b"[ Executable = \"/bin/true\" ]")
        storage.write_file_atomic(target, b"new", mode=0o640)
        assert target.read_bytes() == b"new"
        assert _mode(target) == 0o640
        assert sorted(os.listdir(job_dir)) == ["JDLOriginal", "input", "output", "peek"]

    def test_missing_directory_raises_sandbox_error(self, storage: FilesystemSandboxStorage) -> None:
        with pytest.raises(SandboxError):
            storage.write_file_atomic(storage.root / "nope" / "f", b"x")


class TestStreamInto:
    def test_copies_in_chunks(self, storage: FilesystemSandboxStorage) -> None:
        target = _written(storage, JOB) / "input" / "f.bin"
        data = os.urandom(200_000)
        assert storage.stream_into(target, io.BytesIO(data), len(data), limit=200_000) == 200_000
        assert target.read_bytes() == data

    def test_without_length_reads_to_the_end(self, storage: FilesystemSandboxStorage) -> None:
        target = _written(storage, JOB) / "input" / "f.bin"
        assert storage.stream_into(target, io.BytesIO(b"abc"), None, limit=3) == 3
        assert target.read_bytes() == b"abc"

    def test_announced_length_over_limit_is_refused_before_reading(
        self, storage: FilesystemSandboxStorage
    ) -> None:
        input_dir = _written(storage, JOB) / "input"
        stream = io.BytesIO(b"x" * 11)
        with pytest.raises(QuotaExceededError, match="exceeds the maximum input sandbox size of 10 bytes"):
            storage.stream_into(input_dir / "f", stream, 11, limit=10)
        assert stream.tell() == 0
        assert os.listdir(input_dir) == []

    def test_unannounced_stream_over_limit_is_refused_and_cleaned(
        self, storage: FilesystemSandboxStorage
    ) -> None:
        input_dir = _written(storage, JOB) / "input"
        with pytest.raises(QuotaExceededError):
            storage.stream_into(input_dir / "f", io.BytesIO(b"x" * 100_000), None, limit=70_000)
        assert os.listdir(input_dir) == []

    def test_existing_file_survives_a_refused_upload(self, storage: FilesystemSandboxStorage) -> None:
        target = _written(storage, JOB) / "input" / "f"
        target.write_bytes(b"old")
        with pytest.raises(QuotaExceededError):
            storage.stream_into(target, io.BytesIO(b"x" * 10), None, limit=5)
        assert target.read_bytes() == b"old"

    def test_truncated_upload_is_refused(self, storage: FilesystemSandboxStorage) -> None:
        input_dir = _written(storage, JOB) / "input"
        with pytest.raises(InvalidArgumentError, match="truncated"):
            storage.stream_into(input_dir / "f", io.BytesIO(b"abc"), 10, limit=100)
        assert os.listdir(input_dir) == []

    @pytest.mark.parametrize("failure", [NoMoreData(b""), InvalidChunkSize(b"zz"), ValueError("bad chunk")])
    @pytest.mark.parametrize("length", [10, None])
    def test_a_read_that_fails_is_the_requests_fault(self, storage: FilesystemSandboxStorage,
                                                     failure: Exception, length: int | None) -> None:
        """gunicorn's NoMoreData (an OSError: the request cut off) and InvalidChunkSize (a malformed
        chunked body) were a SandboxError ("Unable to store f: None") or escaped: a 500."""
        input_dir = _written(storage, JOB) / "input"

        class Failing(io.BytesIO):
            def read(self, size: int | None = -1) -> bytes:
                if self.tell():
                    raise failure
                return super().read(3)

        with pytest.raises(InvalidArgumentError, match="truncated or malformed request body"):
            storage.stream_into(input_dir / "f", Failing(b"x" * 10), length, limit=100)
        assert os.listdir(input_dir) == []

    def test_a_write_that_fails_is_a_sandbox_error(self, storage: FilesystemSandboxStorage,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        input_dir = _written(storage, JOB) / "input"

        def fail(*args: object) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(storage_module.os, "replace", fail)
        with pytest.raises(SandboxError, match="Unable to store f: Input/output error"):
            storage.stream_into(input_dir / "f", io.BytesIO(b"abc"), 3, limit=100)
        assert os.listdir(input_dir) == []


class TestResolve:
    def test_maps_a_path_inside_input(self, storage: FilesystemSandboxStorage) -> None:
        job_dir = _written(storage, JOB)
        resolved = storage.resolve(f"{JOB_DIR}/input/file.txt")
        assert resolved == (JOB_DIR, job_dir / "input" / "file.txt", True)

    def test_an_area_not_written_yet_resolves_as_missing_and_empty(self, storage: FilesystemSandboxStorage) -> None:
        job_dir = storage.create_job_area(JOB)
        for path in (f"{JOB_DIR}/input", f"{JOB_DIR}/output/", f"{JOB_DIR}/input/a/b"):
            resolved = storage.resolve(path)
            assert not resolved.area_exists
            assert resolved.path == job_dir / path.rstrip("/").split("/", 3)[3]
        assert os.listdir(job_dir) == []

    def test_area_itself_and_trailing_slash(self, storage: FilesystemSandboxStorage) -> None:
        job_dir = _written(storage, JOB)
        assert storage.resolve(f"{JOB_DIR}/output/").path == job_dir / "output"

    def test_missing_intermediate_dirs_are_allowed(self, storage: FilesystemSandboxStorage) -> None:
        job_dir = _written(storage, JOB)
        assert storage.resolve(f"{JOB_DIR}/input/a/b/c").path == job_dir / "input" / "a" / "b" / "c"

    @pytest.mark.parametrize(
        "path",
        [
            f"{JOB_DIR}/input/../user.proxy",
            f"{JOB_DIR}/input/./f",
            f"{JOB_DIR}/input//f",
            f"/{JOB_DIR}/input/f",
            f"{JOB_DIR}/input/a\\..\\b",
            f"{JOB_DIR}/input/f\x00.txt",
            f"{JOB_DIR}/user.proxy",
            f"{JOB_DIR}/peeks/x",
            f"{JOB_DIR}",
            "SandboxDir/Ab",
            "SandboxDir/../etc/passwd",
            "etc/passwd",
            "",
        ],
    )
    def test_refuses_paths_outside_input_output_and_peek(self, storage: FilesystemSandboxStorage, path: str) -> None:
        _written(storage, JOB)
        with pytest.raises(SandboxPathError):
            storage.resolve(path)

    def test_a_job_directory_not_made_yet_resolves_as_an_area_not_made_yet(
        self, storage: FilesystemSandboxStorage
    ) -> None:
        # The sandbox edge has found the job in the store first: a job started by jobSubmit.
        for path in (f"{JOB_DIR}/input/f", f"{JOB_DIR}/output/"):
            resolved = storage.resolve(path)
            assert not resolved.area_exists
            assert resolved.path == storage.root.joinpath(*path.rstrip("/").split("/"))
        assert not storage.root.exists()

    @pytest.mark.parametrize("level", [1, 2])
    def test_a_file_in_the_place_of_the_job_or_fan_out_directory_is_an_unknown_area(
        self, storage: FilesystemSandboxStorage, level: int
    ) -> None:
        target = storage.root.joinpath(*JOB_DIR.split("/")[: level + 1])
        target.parent.mkdir(parents=True)
        target.write_bytes(b"not a directory")
        with pytest.raises(UnknownJobAreaError):
            storage.resolve(f"{JOB_DIR}/input/f")

    def test_symlink_inside_input_is_refused(self, storage: FilesystemSandboxStorage, tmp_path: Path) -> None:
        job_dir = _written(storage, JOB)
        (job_dir / "input" / "escape").symlink_to(tmp_path)
        (job_dir / "input" / "file-link").symlink_to("/etc/passwd")
        with pytest.raises(SandboxPathError, match="Symbolic links"):
            storage.resolve(f"{JOB_DIR}/input/escape/x")
        with pytest.raises(SandboxPathError, match="Symbolic links"):
            storage.resolve(f"{JOB_DIR}/input/file-link")

    def test_symlinked_area_is_refused(self, storage: FilesystemSandboxStorage, tmp_path: Path) -> None:
        job_dir = _written(storage, JOB)
        (job_dir / "output").rmdir()
        (job_dir / "output").symlink_to(tmp_path)
        with pytest.raises(SandboxPathError):
            storage.resolve(f"{JOB_DIR}/output/x")

    def test_symlinked_job_dir_is_unknown(self, storage: FilesystemSandboxStorage, tmp_path: Path) -> None:
        real = tmp_path / "elsewhere"
        (real / "input").mkdir(parents=True)
        (storage.root / "SandboxDir" / "Ab").mkdir(parents=True)
        (storage.root / JOB_DIR).symlink_to(real)
        with pytest.raises(UnknownJobAreaError):
            storage.resolve(f"{JOB_DIR}/input/x")

    def test_file_used_as_directory_is_refused(self, storage: FilesystemSandboxStorage) -> None:
        job_dir = _written(storage, JOB)
        (job_dir / "input" / "f").write_bytes(b"x")
        with pytest.raises(SandboxPathError, match="Not a directory"):
            storage.resolve(f"{JOB_DIR}/input/f/g")

    def test_split_path_does_not_touch_the_disk(self, storage: FilesystemSandboxStorage) -> None:
        assert storage.split_path(f"{JOB_DIR}/input/a/b") == (JOB_DIR, "input", ("a", "b"))

    @pytest.mark.parametrize("area", AREAS)
    def test_a_path_may_have_max_path_depth_components_below_its_area(self, storage: FilesystemSandboxStorage,
                                                                      area: str) -> None:
        assert storage.split_path(f"{JOB_DIR}/{area}" + "/d" * MAX_PATH_DEPTH + "/")[2] == ("d",) * MAX_PATH_DEPTH
        with pytest.raises(SandboxPathError, match=f"at most {MAX_PATH_DEPTH} components below {area}/"):
            storage.split_path(f"{JOB_DIR}/{area}" + "/d" * (MAX_PATH_DEPTH + 1))


class TestPerusalChunks:
    def test_chunks_merge_in_time_order_and_disappear(self, storage: FilesystemSandboxStorage) -> None:
        _written(storage, JOB)
        storage.write_perusal_chunk(JOB, "out.txt", b"b", 20)
        storage.write_perusal_chunk(JOB, "out.txt", b"a", 10)
        storage.write_perusal_chunk(JOB, "out.txt", b"c", 21)
        storage.write_perusal_chunk(JOB, "out.txt.bak", b"x", 5)
        assert storage.merge_perusal_chunks(JOB, "out.txt") == ["out.txt-10-21"]
        peek = storage.job_dir(JOB) / "peek"
        assert (peek / "out.txt-10-21").read_bytes() == b"abc"
        assert sorted(os.listdir(peek)) == ["out.txt-10-21", "out.txt.bak.5"]
        assert storage.merge_perusal_chunks(JOB, "out.txt") == []
        storage.write_perusal_chunk(JOB, "out.txt", b"d", 30)
        assert storage.merge_perusal_chunks(JOB, "out.txt") == ["out.txt-30-30"]
        assert storage.merged_perusal_files(JOB, "out.txt") == ["out.txt-10-21", "out.txt-30-30"]

    def test_merges_at_once_take_turns(self, storage: FilesystemSandboxStorage) -> None:
        """Two getPerusalFiles of one file at once: the later merge waits for the earlier one (a
        lock on ``peek/``), then finds its chunks merged. Both wrote one temporary name and both
        deleted the chunks, so one failed with FileNotFoundError (an internal error on the wire).
        The earlier merge is held in the middle: its second chunk is a FIFO that gives its bytes
        once the later merge waits for the lock (``/proc/locks``)."""
        _written(storage, JOB)
        storage.write_perusal_chunk(JOB, "out.txt", b"a" * 1000, 1)
        peek = storage.job_dir(JOB) / "peek"
        os.mkfifo(peek / "out.txt.2")
        outcome: dict[str, object] = {}
        merges = [start_thread("earlier", lambda: storage.merge_perusal_chunks(JOB, "out.txt"), outcome)]
        writer = wait_for(lambda: _open_writer(peek / "out.txt.2", merges[0]), what="the earlier merge to read")
        try:
            merges.append(start_thread("later", lambda: storage.merge_perusal_chunks(JOB, "out.txt"), outcome))
            wait_for(lambda: flock_waiters(peek), what="the later merge to wait for the earlier one")
            os.write(writer, b"b" * 1000)
        finally:
            os.close(writer)
        for merge in merges:
            merge.join(WAIT_TIMEOUT)
        assert outcome == {"earlier": ["out.txt-1-2"], "later": []}
        assert (peek / "out.txt-1-2").read_bytes() == b"a" * 1000 + b"b" * 1000
        assert os.listdir(peek) == ["out.txt-1-2"]

    def test_a_chunk_being_written_is_not_merged(self, storage: FilesystemSandboxStorage) -> None:
        """A chunk appears whole under its name (written under a hidden name, then renamed): a
        merge running meanwhile never reads it half written, nor deletes bytes it did not read."""
        _written(storage, JOB)
        peek = storage.job_dir(JOB) / "peek"
        (peek / f".out.txt.40{TMP_SUFFIX}").write_bytes(b"half")  # a write in progress
        storage.write_perusal_chunk(JOB, "out.txt", b"whole", 41)
        assert storage.merge_perusal_chunks(JOB, "out.txt") == ["out.txt-41-41"]
        assert (peek / "out.txt-41-41").read_bytes() == b"whole"
        assert (peek / f".out.txt.40{TMP_SUFFIX}").exists()


OTHER_DIR = "SandboxDir/Ab/https_3a_2f_2flb.example.org_3a9000_2fAbZZZZZZZZ"
BASE_URL = "https://wms.example.org:7443"


def _open_writer(fifo: Path, reader: threading.Thread) -> int | None:
    """A descriptor writing into ``fifo`` once a reader has opened it, else None (fails the test
    if ``reader`` has ended without)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno != errno.ENXIO or not reader.is_alive():  # ENXIO: no reader yet
            raise AssertionError(f"{fifo.name}: no reader came ({exc})") from exc
        return None
    os.set_blocking(fd, True)
    return fd


class TestJobAreaValue:
    @pytest.fixture
    def storage(self, tmp_path: Path) -> FilesystemSandboxStorage:
        return FilesystemSandboxStorage(tmp_path / "root", base_url=BASE_URL + "/", work_root=tmp_path / "work")

    def test_a_job_of_its_own_has_everything_in_its_directory(self, storage: FilesystemSandboxStorage) -> None:
        area = storage.job_area(JOB)

        assert area.job_id == JOB
        assert area.rel_dir == JOB_DIR
        assert area.dir == storage.root / JOB_DIR == storage.job_dir(JOB)
        assert area.input_dir == storage.root / JOB_DIR / "input"
        assert area.output_dir == storage.root / JOB_DIR / "output"
        assert area.peek_dir == storage.root / JOB_DIR / "peek"
        work_dir = storage.work_root / JOB_DIR.rsplit("/", 1)[1]
        assert storage.work_root == storage.root.parent / "work"
        assert (area.work_dir, area.proxy_file) == (work_dir, work_dir / "user.proxy")
        assert area.base_uri == f"{BASE_URL}/{JOB_DIR}"
        assert area.input_uri == f"{BASE_URL}/{JOB_DIR}/input"
        assert area.output_uri == f"{BASE_URL}/{JOB_DIR}/output"
        assert area.peek_uri == f"{BASE_URL}/{JOB_DIR}/peek"

    def test_a_node_reads_its_input_from_the_parent_and_keeps_the_rest_its_own(
        self, storage: FilesystemSandboxStorage
    ) -> None:
        area = storage.job_area(OTHER, parent_id=JOB)

        assert area.input_dir == storage.root / JOB_DIR / "input"
        assert area.input_uri == f"{BASE_URL}/{JOB_DIR}/input"
        assert area.dir == storage.root / OTHER_DIR
        assert area.output_dir == storage.root / OTHER_DIR / "output"
        assert area.output_uri == f"{BASE_URL}/{OTHER_DIR}/output"
        assert area.proxy_file == storage.work_root / OTHER_DIR.rsplit("/", 1)[1] / "user.proxy"
        assert area.base_uri == f"{BASE_URL}/{OTHER_DIR}"

    def test_the_input_uri_is_the_url_of_the_input_dir(self, storage: FilesystemSandboxStorage) -> None:
        for area in (storage.job_area(JOB), storage.job_area(OTHER, JOB)):
            relative = area.input_dir.relative_to(storage.root).as_posix()
            assert area.input_uri == f"{BASE_URL}/{relative}"
            assert area.output_uri == f"{BASE_URL}/{area.output_dir.relative_to(storage.root).as_posix()}"

    def test_an_invalid_parent_id_is_refused(self, storage: FilesystemSandboxStorage) -> None:
        with pytest.raises(InvalidArgumentError):
            storage.job_area(JOB, parent_id="https://h:9000/../../x")

    @pytest.mark.parametrize(("root", "work_root"), [
        ("/", None), ("/srv/sandbox/", "/var/work/"), ("//srv//sandbox", "//var/./work"), ("rel/root", "rel/work")])
    def test_the_paths_as_text_are_the_paths(self, root: str, work_root: str | None) -> None:
        """The text forms the registered JDL is written from are the paths themselves, whatever
        the spelling of the roots (a trailing slash, doubled slashes, ``.``, the root directory,
        a relative root)."""
        storage = FilesystemSandboxStorage(root, base_url=BASE_URL, work_root=work_root)
        for area in (storage.job_area(JOB), storage.job_area(OTHER, JOB)):
            texts = (area.dir_text, area.input_text, area.output_text, area.work_text, area.proxy_text)
            paths = (area.dir, area.input_dir, area.output_dir, area.work_dir, area.proxy_file)
            assert texts == tuple(str(path) for path in paths)
            assert area.dir == storage.root / area.rel_dir == storage.job_dir(area.job_id)
            assert area.work_dir == storage.work_root / area.rel_dir.rsplit("/", 1)[1]
            assert area.peek_dir == area.dir / "peek"

    def test_the_area_is_a_frozen_value(self, storage: FilesystemSandboxStorage) -> None:
        area = storage.job_area(JOB)
        with pytest.raises(AttributeError):
            area.input_dir = Path("/tmp")  # type: ignore[misc]
        assert area == storage.job_area(JOB)


class TestCollectOutput:
    def test_copies_the_named_files_under_their_file_names(
        self, storage: FilesystemSandboxStorage, tmp_path: Path
    ) -> None:
        _written(storage, JOB)
        work = tmp_path / "work"
        (work / "sub").mkdir(parents=True)
        (work / "a.out").write_bytes(b"A")
        (work / "sub" / "b.out").write_bytes(b"B")

        missing = storage.collect_output_files(JOB, work, ("a.out", "sub/b.out", "c.out")).missing

        assert missing == [("c.out", "not produced")]
        assert storage.output_files(JOB) == [("a.out", 1), ("b.out", 1)]
        assert (storage.job_area(JOB).output_dir / "b.out").read_bytes() == b"B"

    def test_a_symlink_out_of_the_work_dir_is_not_collected(
        self, storage: FilesystemSandboxStorage, tmp_path: Path
    ) -> None:
        _written(storage, JOB)
        secret = tmp_path / "secret"
        secret.write_bytes(b"key")
        work = tmp_path / "work"
        work.mkdir()
        (work / "leak.out").symlink_to(secret)

        assert storage.collect_output_files(JOB, work, ("leak.out",)).missing == [("leak.out", "symbolic link")]
        assert storage.output_files(JOB) == []

    def test_no_output_sandbox_makes_no_directory(self, storage: FilesystemSandboxStorage, tmp_path: Path) -> None:
        assert storage.collect_output_files(JOB, tmp_path, ()) == ([], [])
        assert not storage.root.exists()


class TestWithoutFlock:
    def test_a_file_system_without_flock_for_directories_changes_on_without_the_lock(
        self, storage: FilesystemSandboxStorage, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """NFS emulates flock with byte-range locks, which need a file open for writing: a
        directory's flock fails there with EBADF (Lustre mounted noflock: ENOSYS). No such file
        system can be mounted here, so the error is injected. Every upload failed with it; the
        change now goes on without taking turns, logged once per file system."""
        def no_flock(_fd: int, _operation: int) -> None:
            raise OSError(errno.EBADF, "Bad file descriptor")

        storage.create_job_area(JOB)
        monkeypatch.setattr(trees, "_no_flock_logged", set())
        monkeypatch.setattr(trees.fcntl, "flock", no_flock)
        for _ in range(2):
            with storage.input_changes(JOB):
                (storage.create_area(storage.job_rel_dir(JOB), "input") / "f").write_bytes(b"1")
        assert storage.merge_perusal_chunks(JOB, "out.txt") == []
        assert len([r for r in caplog.records if "no flock" in r.getMessage()]) == 1


class TestRetirementWithoutFlock:
    """On a file system without ``flock`` (NFS without its lock manager: ENOLCK; EOPNOTSUPP) the
    lock of a removal's areas (``.purging-*``) says nothing: a purge pass took the areas a live
    removal was deleting (or putting back) for leftovers, and put them back or deleted them under
    it. They are now its own while its lock file changed within UNLOCKED_RETIREMENT_AGE. No such
    file system can be mounted here (no NFS server, no FUSE library): ``flock`` fails with the
    real errno, injected; the lock file, its times and the decision are real."""

    @pytest.fixture(params=[errno.ENOLCK, errno.EOPNOTSUPP], ids=["ENOLCK", "EOPNOTSUPP"])
    def no_flock(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
        def fails(_fd: int, _operation: int) -> None:
            raise OSError(request.param, os.strerror(request.param))

        monkeypatch.setattr(trees, "_no_flock_logged", set())
        monkeypatch.setattr(trees.fcntl, "flock", fails)
        return int(request.param)

    @staticmethod
    def _retired(storage: FilesystemSandboxStorage) -> tuple[Retirement, int, Path, Path]:
        """JOB's area moved aside by a removal: the removal, its lock's descriptor, the area, the lock file."""
        storage.create_job_area(JOB)
        retirement = Retirement()
        aside = storage.retire_job_area(JOB, retirement)[1]
        assert aside is not None and retirement.fd is not None
        return retirement, retirement.fd, aside, storage.root / storage.dir_name / f".purging-{retirement.token}"

    def test_the_areas_of_a_removal_are_its_own_while_its_lock_file_is_young(
            self, storage: FilesystemSandboxStorage, no_flock: int, caplog: pytest.LogCaptureFixture) -> None:
        _retirement, fd, aside, lock = self._retired(storage)
        os.close(fd)  # the removal died: on such a file system nothing shows it
        assert storage.retirement_busy(aside)
        assert storage.sweep_retirement_locks() == 0 and lock.exists()
        before = os.stat(lock).st_mtime - UNLOCKED_RETIREMENT_AGE - 1
        os.utime(lock, (before, before))  # unchanged for longer than a live removal leaves it
        assert not storage.retirement_busy(aside)
        assert storage.sweep_retirement_locks() == 1 and not lock.exists()
        assert len([r for r in caplog.records if "no flock" in r.getMessage()]) == 1

    def test_a_removal_touches_its_lock_file_as_it_settles_its_areas(
            self, storage: FilesystemSandboxStorage, no_flock: int) -> None:
        retirement, _fd, aside, lock = self._retired(storage)
        before = os.stat(lock).st_mtime - UNLOCKED_RETIREMENT_AGE - 1
        os.utime(lock, (before, before))
        storage.touch_retirement(retirement)  # before each area it deletes or puts back
        assert storage.retirement_busy(aside)
        storage.discard_area(aside)
        storage.end_retirement(retirement)
        assert not lock.exists()

    def test_lock_held_reads_the_flock_where_there_is_one(self, tmp_path: Path) -> None:
        path = tmp_path / ".purging-x"
        holder = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        other = os.open(path, os.O_RDWR)
        try:
            assert trees.try_flock(holder, wait=False) is True
            old = os.stat(path).st_mtime - UNLOCKED_RETIREMENT_AGE - 1
            os.utime(path, (old, old))
            assert lock_held(other, path)  # held, whatever the age
            os.close(holder)
            holder = -1
            assert not lock_held(other, path)  # free, whatever the age
        finally:
            os.close(other)
            if holder >= 0:
                os.close(holder)

    def test_lock_held_without_flock_goes_by_the_age_of_the_file(self, tmp_path: Path, no_flock: int) -> None:
        path = tmp_path / ".purging-x"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            assert trees.try_flock(fd, wait=False) is None
            changed = os.fstat(fd).st_mtime
            assert lock_held(fd, path, now=changed + UNLOCKED_RETIREMENT_AGE - 1)
            assert not lock_held(fd, path, now=changed + UNLOCKED_RETIREMENT_AGE)
        finally:
            os.close(fd)

    def test_lock_held_without_flock_takes_a_time_ahead_by_its_distance(self, tmp_path: Path, no_flock: int) -> None:
        # A lock file whose time is ahead of the clock read (a clock skewed, a time copied) made
        # the age negative: its areas were held until the clock caught up, however far.
        path = tmp_path / ".purging-x"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            changed = os.fstat(fd).st_mtime
            assert lock_held(fd, path, now=changed - UNLOCKED_RETIREMENT_AGE + 1)
            assert not lock_held(fd, path, now=changed - UNLOCKED_RETIREMENT_AGE)
            assert not lock_held(fd, path, now=lambda: changed - 10 * UNLOCKED_RETIREMENT_AGE)  # read only here
        finally:
            os.close(fd)

    def test_a_lock_file_far_ahead_of_the_file_systems_clock_holds_nothing(
            self, storage: FilesystemSandboxStorage, no_flock: int) -> None:
        _retirement, fd, aside, lock = self._retired(storage)
        os.close(fd)  # the removal died
        ahead = os.stat(lock).st_mtime + 10 * UNLOCKED_RETIREMENT_AGE
        os.utime(lock, (ahead, ahead))
        assert not storage.retirement_busy(aside)
        assert storage.sweep_retirement_locks() == 1 and not lock.exists()

    def test_the_age_of_a_lock_file_is_read_by_the_file_systems_clock(
            self, storage: FilesystemSandboxStorage, no_flock: int, monkeypatch: pytest.MonkeyPatch) -> None:
        # This host's clock 10 hours ahead of the file server's: a lock file the server has just
        # touched read 10 hours old, and a live removal's areas were taken for leftovers.
        retirement, _fd, aside, lock = self._retired(storage)
        skewed = os.stat(lock).st_mtime + 10 * UNLOCKED_RETIREMENT_AGE
        monkeypatch.setattr(storage_module, "time", types.SimpleNamespace(
            time=lambda: skewed, monotonic=storage_module.time.monotonic))
        try:
            assert storage.retirement_busy(aside)
            assert storage.sweep_retirement_locks() == 0
        finally:
            storage.end_retirement(retirement)

    def test_a_removal_touches_its_lock_file_as_it_moves_areas_aside_at_most_once_an_interval(
            self, storage: FilesystemSandboxStorage, no_flock: int) -> None:
        # A transaction moving thousands of areas aside touched the lock file only when it was
        # made: past UNLOCKED_RETIREMENT_AGE a pass took the areas for leftovers.
        retirement, _fd, aside, lock = self._retired(storage)
        storage.create_job_area(OTHER)
        before = os.stat(lock).st_mtime - UNLOCKED_RETIREMENT_AGE - 1
        os.utime(lock, (before, before))
        retirement.touched = math.inf  # touched just now (monotonic): not again yet
        storage.retire_job_area(OTHER, retirement)
        assert os.stat(lock).st_mtime == before
        retirement.touched = -math.inf  # the last touch an interval ago
        storage.create_job_area(JOB2)
        storage.retire_job_area(JOB2, retirement)
        assert os.stat(lock).st_mtime > before and storage.retirement_busy(aside)
        storage.end_retirement(retirement)

    def test_a_removal_touches_its_lock_file_while_it_deletes_one_huge_area(
            self, storage: FilesystemSandboxStorage, no_flock: int) -> None:
        retirement, _fd, aside, lock = self._retired(storage)
        for i in range(3):
            (aside / "output" / f"d{i}" / "e").mkdir(parents=True)
        before = os.stat(lock).st_mtime - UNLOCKED_RETIREMENT_AGE - 1
        touched_at: list[float] = []

        def deleting(parent_fd: int, name: str) -> None:  # each directory deleted: the lock file's time
            touched_at.append(os.stat(lock).st_mtime)
            os.utime(lock, (before, before))
            real_rmdir(parent_fd, name)

        real_rmdir = trees._rmdir
        os.utime(lock, (before, before))
        retirement.touched = -math.inf  # the last touch an interval ago
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(trees, "_rmdir", deleting)
            storage.discard_area(aside, retirement=retirement)
        assert not aside.exists() and len(touched_at) == 7  # output, d0-d2, their e
        assert touched_at[0] == before  # not touched before the first directory
        assert touched_at[1] > before  # touched after it; after the others, within the interval, not again
        assert touched_at[2:] == [before] * 5
        storage.end_retirement(retirement)


class TestDiscardWithADeadline:
    def test_a_retired_area_is_deleted_a_deadline_at_a_time(self, storage: FilesystemSandboxStorage) -> None:
        # A purge pass deleted a removal's areas whatever its pass_time: 10,000 files each.
        _written(storage, JOB)
        for n in range(600):  # above trees.REMOVALS_PER_CHECK
            (storage.job_dir(JOB) / "input" / f"f{n}").write_bytes(b"")
        aside = storage.retire_job_area(JOB)[1]
        assert aside is not None
        left = trees.tree_totals(aside)
        calls = 0
        while True:
            calls += 1
            assert calls < 100
            try:
                storage.discard_area(aside, deadline=0.0)  # passed already: each call removes a part
            except trees.RemovalPaused:
                now_left = trees.tree_totals(aside)
                assert aside.is_dir() and now_left.files + now_left.dirs < left.files + left.dirs
                left = now_left
                continue
            break
        assert calls > 2 and not aside.exists() and not aside.parent.exists()  # its fan-out directory too


class TestOutputWildcards:
    """An OutputSandbox entry with wildcards is expanded over the work dir (it was looked up as a
    file literally named ``*.out``: "not produced", every matching file lost)."""

    def test_each_match_is_collected_in_name_order_and_refused_as_a_plain_entry(
        self, storage: FilesystemSandboxStorage, tmp_path: Path
    ) -> None:
        _written(storage, JOB)
        work = tmp_path / "work"
        (work / "sub" / "d.out").mkdir(parents=True)
        for name, data in (("b.out", b"BB"), ("a.out", b"A"), (".h.out", b"H"), ("c.txt", b"C"),
                           ("sub/x1.dat", b"X"), ("sub/x2.dat", b"XX")):
            (work / name).write_bytes(data)
        (work / "l.out").symlink_to(tmp_path / "secret")
        (tmp_path / "secret").write_bytes(b"key")
        (tmp_path / "outside.out").write_bytes(b"no")

        collected = storage.collect_output_files(JOB, work, ("*.out", "sub/x?.dat", "sub/*.out", "none*",
                                                             "../*.out", "missing/*.out"), budget=4)

        assert collected.missing == [("l.out", "symbolic link"), ("d.out", "not a regular file"),
                                     ("none*", "not produced"), ("*.out", "outside the work directory"),
                                     ("*.out", "not produced")]
        assert storage.output_files(JOB) == [("a.out", 1), ("b.out", 2), ("x1.dat", 1), ("x2.dat", 0)]
        assert collected.truncated == [("x2.dat", 0, 2)]  # the budget counts every match

    def test_matches_count_against_the_file_limit(self, storage: FilesystemSandboxStorage, tmp_path: Path) -> None:
        _written(storage, JOB)
        work = tmp_path / "work"
        work.mkdir()
        for name in ("a.out", "b.out", "c.out"):
            (work / name).write_bytes(b"x")

        missing = storage.collect_output_files(JOB, work, ("*.out",), max_files=2).missing

        assert missing == [("c.out", "the maximum number of output sandbox files (2) is reached")]
        assert [name for name, _ in storage.output_files(JOB)] == ["a.out", "b.out"]

    def test_a_match_named_by_the_job_reaches_the_reason_escaped(
        self, storage: FilesystemSandboxStorage, tmp_path: Path
    ) -> None:
        """No name the job chose reaches a reason with a line-breaking or undecodable character
        as it is (a name that is not UTF-8 is a lone surrogate once decoded: the database driver
        refused the reason naming it, and the worker died at each restart). A regular file whose
        name is not UTF-8 or holds a control character is not collected: the sandbox edge could
        neither serve it (GET 404, 400) nor list its directory (a 500)."""
        _written(storage, JOB)
        work = tmp_path / "work"
        work.mkdir()
        os.symlink("nowhere", os.fsencode(work) + b"/\xff.o")
        (work / b"\xfe.o".decode("utf-8", "surrogateescape")).write_bytes(b"data")
        (work / "forged\n2026-12-06 ERROR x.o").symlink_to("nowhere")
        (work / "r\u00e9sum\u00e9.o").symlink_to("nowhere")
        (work / "bad\nname.o").write_bytes(b"data")
        (work / "r\u00e9sum\u00e9 2.o").write_bytes(b"data")

        collected = storage.collect_output_files(JOB, work, ("*.o",))

        refused = "its destination name cannot be served: Invalid output sandbox file name"
        assert collected.missing == [
            ("bad\\x0aname.o", f"{refused} 'bad\\\\nname.o': control characters are not allowed"),
            ("forged\\x0a2026-12-06 ERROR x.o", "symbolic link"),
            ("r\u00e9sum\u00e9.o", "symbolic link"),
            ("\\udcfe.o", f"{refused} '\\\\udcfe.o': not valid Unicode"),
            ("\\udcff.o", "symbolic link")]
        assert storage.output_files(JOB) == [("r\u00e9sum\u00e9 2.o", 4)]

    def test_a_name_longer_than_the_site_limit_is_not_collected(
        self, storage: FilesystemSandboxStorage, tmp_path: Path
    ) -> None:
        """A site that lowers ``[limits] max_sandbox_name_bytes`` has its sandbox edge refuse a
        longer name (GET 400): collection refuses it too, with its reason, whether a wildcard
        matched it or the entry named it; a name at the limit is collected."""
        _written(storage, JOB)
        work = tmp_path / "work"
        work.mkdir()
        for name in ("x" * 16 + ".o", "y" * 14 + ".o", "long-name-given.txt"):
            (work / name).write_bytes(b"data")

        collected = storage.collect_output_files(JOB, work, ("*.o", "long-name-given.txt"), max_name_bytes=16)

        refused = "its destination name cannot be served: Invalid output sandbox file name"
        assert collected.missing == [
            ("x" * 16 + ".o", f"{refused} {'x' * 16 + '.o'!r}...: 18 bytes long, at most 16 allowed"),
            ("long-name-given.txt", f"{refused} 'long-name-given.txt'...: 19 bytes long, at most 16 allowed")]
        assert storage.output_files(JOB) == [("y" * 14 + ".o", 4)]


class TestServiceFiles:
    """The job's proxy copy ``user.proxy`` (the owner's credential, private key included) and
    ``.wmproxy/`` are never collected: ``OutputSandbox = {"*"}`` gave the proxy to every reader
    the job's ACL admits (red-team M1)."""

    def test_a_wildcard_never_matches_them(self, storage: FilesystemSandboxStorage, tmp_path: Path) -> None:
        _written(storage, JOB)
        work = tmp_path / "work"
        (work / ".wmproxy").mkdir(parents=True)
        for name in ("user.proxy", "a.out", ".wmproxy/job.marshal", ".wmproxy/wrapper.log"):
            (work / name).write_bytes(b"-----BEGIN PRIVATE KEY-----" if "proxy" in name else b"x")

        collected = storage.collect_output_files(JOB, work, ("*", "user.*", ".*"))

        assert storage.output_files(JOB) == [("a.out", 1)]
        assert collected.missing == [("user.*", "not produced"), (".*", "not produced")]

    def test_one_named_is_not_collected_with_the_reason(self, storage: FilesystemSandboxStorage,
                                                        tmp_path: Path) -> None:
        """What a JDL registered before the names were refused (:func:`check_work_dir_name`) asks."""
        _written(storage, JOB)
        work = tmp_path / "work"
        (work / ".wmproxy").mkdir(parents=True)
        (work / "user.proxy").write_bytes(b"-----BEGIN PRIVATE KEY-----")
        (work / ".wmproxy" / "job.marshal").write_bytes(b"secret")
        (work / "std.out").write_bytes(b"out")

        collected = storage.collect_output_files(JOB, work, ("user.proxy", "./user.proxy", ".wmproxy/job.marshal",
                                                             ".wmproxy/*", "std.out"),
                                                 targets=("", "", "", "", "user.proxy"))

        assert [name for name, _ in collected.missing] == ["user.proxy", "./user.proxy", ".wmproxy/job.marshal",
                                                           ".wmproxy/*", "std.out"]
        assert [why for _, why in collected.missing] == [
            *["it is the job's proxy (the owner's credential), never given back"] * 2,
            *["it is the service's state directory of the job, never given back"] * 2,
            # stored under a destination so named, it would never be served (withheld)
            ("its destination name 'user.proxy' is reserved: it is the job's proxy (the owner's credential), "
            "never given back")]
        assert storage.output_files(JOB) == []

    def test_one_a_collection_before_left_in_the_output_area_is_not_listed(
            self, storage: FilesystemSandboxStorage) -> None:
        """Placed as a collection before the names were refused left it: getOutputFileList (for the
        owner as for an ACL reader) and the monitor list :meth:`output_files`."""
        output = _written(storage, JOB) / "output"
        (output / "user.proxy").write_bytes(b"-----BEGIN PRIVATE KEY-----")
        (output / ".wmproxy").mkdir()
        (output / "std.out").write_bytes(b"out")
        (output / "user.proxy.txt").write_bytes(b"x")

        assert storage.output_files(JOB) == [("std.out", 3), ("user.proxy.txt", 1)]


class TestOutputTargets:
    """Each file is stored under the name its registered destination gives (it was stored under
    its base name: ``{"a.out"}`` with ``OutputSandboxDestURI = {"renamed.out"}`` promised
    ``output/renamed.out`` and left ``output/a.out``), and two entries with the same name no
    longer overwrite each other (``x/r.txt``, ``y/r.txt`` left one ``r.txt``, without a word)."""

    def test_a_target_names_the_stored_file_and_a_second_entry_for_a_name_is_not_collected(
        self, storage: FilesystemSandboxStorage, tmp_path: Path
    ) -> None:
        _written(storage, JOB)
        work = tmp_path / "work"
        for name in ("x", "y"):
            (work / name).mkdir(parents=True)
            (work / name / "r.txt").write_text(name)
        (work / "a.out").write_text("a")

        missing = storage.collect_output_files(JOB, work, ("x/r.txt", "y/r.txt", "a.out", "x/r.txt"),
                                               targets=("", "", "renamed.out", ".gacl")).missing

        assert missing == [("y/r.txt", "it has the same name r.txt in the output sandbox as x/r.txt"),
                           ("x/r.txt", "its destination name '.gacl' is not a file name")]
        assert storage.output_files(JOB) == [("r.txt", 1), ("renamed.out", 1)]
        assert (storage.job_area(JOB).output_dir / "r.txt").read_text() == "x"


class TestRetirementOnAFullFileSystem:
    def test_an_area_is_removed_when_no_inode_is_left_for_its_lock(self, tmp_path: Path) -> None:
        """A removal frees space: on a sandbox file system without an inode left (many small
        output files), the removal's lock file cannot be made, and the area is still moved aside
        and deleted (it failed with "Unable to create the lock")."""
        root = tmp_path / "root"
        root.mkdir(mode=0o700)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=64,mode=0700", "tmpfs", str(root)],
                       check=True)
        try:
            storage = FilesystemSandboxStorage(root)
            area = storage.create_job_area(JOB)
            (area / "output").mkdir(exist_ok=True)
            filled = 0
            with contextlib.suppress(OSError):
                for i in range(1000):  # the inodes filled with output files
                    (area / "output" / f"f{i}").write_bytes(b"x")
                    filled += 1
            assert 0 < filled < 1000
            with pytest.raises(OSError, match="No space left") as full:
                (area / "output" / "one more").write_bytes(b"x")
            assert full.value.errno == errno.ENOSPC
            retirement = Retirement()
            freed, retired = storage.retire_job_area(JOB, retirement)
            assert retired is not None and retired.is_dir() and not storage.job_dir(JOB).exists()
            assert freed > 0 and retirement.unlocked and retirement.fd is None
            storage.discard_area(retired)
            storage.end_retirement(retirement)
            assert not retired.exists()
        finally:
            subprocess.run(["umount", "--lazy", str(root)], check=True)
