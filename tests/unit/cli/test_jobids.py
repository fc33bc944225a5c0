"""The gLite job-id file (submit -o, status/output -i)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from wmproxy.cli import jobids


class TestJobIdFile:
    def test_new_file_gets_the_header_then_the_id(self, tmp_path: Path) -> None:
        path = jobids.append_job_id(tmp_path / "ids", "https://lb:9000/A")
        assert path.read_text() == "###Submitted Job Ids###\nhttps://lb:9000/A\n"
        assert path.is_absolute()

    def test_ids_are_appended_under_one_header(self, tmp_path: Path) -> None:
        jobids.append_job_id(tmp_path / "ids", "https://lb:9000/A")
        jobids.append_job_id(tmp_path / "ids", "https://lb:9000/B")
        assert (tmp_path / "ids").read_text() == "###Submitted Job Ids###\nhttps://lb:9000/A\nhttps://lb:9000/B\n"

    def test_empty_existing_file_gets_the_header(self, tmp_path: Path) -> None:
        (tmp_path / "ids").write_text("")
        jobids.append_job_id(tmp_path / "ids", "X")
        assert (tmp_path / "ids").read_text().startswith(jobids.HEADER + "\n")

    def test_a_file_that_is_not_a_jobid_file_is_not_appended_to(self, tmp_path: Path) -> None:
        (tmp_path / "job.jdl").write_text('[ Executable = "/bin/true"; ]\n')
        for append in (jobids.append_job_id, jobids.append_failed_job_id):
            with pytest.raises(jobids.NotAJobIdFileError, match="not a job id file"):
                append(tmp_path / "job.jdl", "X")
        with pytest.raises(jobids.NotAJobIdFileError):
            jobids.check_job_id_file(tmp_path / "job.jdl")
        assert (tmp_path / "job.jdl").read_text() == '[ Executable = "/bin/true"; ]\n'

    def test_a_header_with_a_bom_or_crlf_is_a_jobid_file(self, tmp_path: Path) -> None:
        (tmp_path / "ids").write_bytes(b"\xef\xbb\xbf###Submitted Job Ids###\r\nA\r\n")
        jobids.check_job_id_file(tmp_path / "ids")
        jobids.append_job_id(tmp_path / "ids", "B")
        assert (tmp_path / "ids").read_bytes().endswith(b"A\r\nB\n")

    def test_reading_skips_headers_comments_and_blank_lines(self, tmp_path: Path) -> None:
        (tmp_path / "ids").write_text(
            f"{jobids.HEADER}\nhttps://lb:9000/A\n\n{jobids.FAILED_HEADER}\n  https://lb:9000/B  \n"
        )
        assert jobids.read_job_ids(tmp_path / "ids") == ["https://lb:9000/A", "https://lb:9000/B"]

    def test_round_trip(self, tmp_path: Path) -> None:
        for j in ("A", "B", "C"):
            jobids.append_job_id(tmp_path / "ids", j)
        assert jobids.read_job_ids(tmp_path / "ids") == ["A", "B", "C"]

    def test_reading_drops_a_bom_slash_comments_and_duplicates_keeping_order(self, tmp_path: Path) -> None:
        # gLite's Utils::getItemsFromFile: `#` and `//` lines are comments, an id is read once;
        # a BOM (accepted by -o, check_job_id_file) is not part of the header line.
        (tmp_path / "ids").write_bytes(
            b"\xef\xbb\xbf###Submitted Job Ids###\r\nhttps://lb:9000/B\r\n// a note\r\n"
            b"https://lb:9000/A\r\n https://lb:9000/B\r\n"
        )
        assert jobids.read_job_ids(tmp_path / "ids") == ["https://lb:9000/B", "https://lb:9000/A"]

    def test_register_then_start_lists_the_id_once(self, tmp_path: Path) -> None:
        # submit --register-only -o, then submit --start ID -o: the id is in the file twice.
        jobids.append_job_id(tmp_path / "ids", "https://lb:9000/A")
        jobids.append_job_id(tmp_path / "ids", "https://lb:9000/A")
        assert jobids.read_job_ids(tmp_path / "ids") == ["https://lb:9000/A"]


class TestNeverThroughALink:
    """``submit -o /tmp/ids.txt``: another user may have planted a link of that name in ``/tmp``
    (dangling, or to a file of the user's): the ids are not appended to what it points to."""

    def test_a_dangling_link_is_refused_and_nothing_is_created(self, tmp_path: Path) -> None:
        planted = tmp_path / "ids.txt"
        planted.symlink_to(tmp_path / "victim-file")
        with pytest.raises(OSError, match="it is a symbolic link, which is not followed") as err:
            jobids.check_job_id_file(planted)
        assert err.value.errno == errno.ELOOP
        for append in (jobids.append_job_id, jobids.append_failed_job_id):
            with pytest.raises(OSError, match="it is a symbolic link, which is not followed"):
                append(planted, "https://lb:9000/A")
        assert not (tmp_path / "victim-file").exists()

    def test_a_link_to_a_job_id_file_is_not_followed(self, tmp_path: Path) -> None:
        previous = os.umask(0o027)
        try:
            real = jobids.append_job_id(tmp_path / "real", "https://lb:9000/A")
        finally:
            os.umask(previous)
        assert stat.S_IMODE(real.stat().st_mode) == 0o640  # a new file: the mode the umask gives
        (tmp_path / "link").symlink_to(real)
        with pytest.raises(OSError, match="symbolic link"):
            jobids.append_job_id(tmp_path / "link", "https://lb:9000/B")
        assert real.read_text() == "###Submitted Job Ids###\nhttps://lb:9000/A\n"

    def test_a_fifo_is_refused_at_once(self, tmp_path: Path) -> None:
        os.mkfifo(tmp_path / "fifo", 0o600)  # no reader: a blocking open for writing would hang here
        with pytest.raises(OSError, match="not a regular file"):
            jobids.check_job_id_file(tmp_path / "fifo")
        with pytest.raises(OSError, match="not a regular file"):
            jobids.append_job_id(tmp_path / "fifo", "https://lb:9000/A")
