"""The execution worker's ends journal (wmproxy.execution.ends_journal): the ends the database
did not take, written durably to the work root, read back whole, and handed only to the next
worker of the same host once their writer is gone."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest

from wmproxy.domain import JobState
from wmproxy.execution.ends_journal import DIR_NAME, journal_path, left_behind, remove, save
from wmproxy.services.retries import AttemptEnd

DONE = AttemptEnd(JobState.DONE, exit_code=5, reason="output sandbox file x not collected: missing",
                  payload_started=True, output_bytes=12, attempt=2)
CANCELLED = AttemptEnd(JobState.CANCELLED, attempt=0)
ABORTED = AttemptEnd(JobState.ABORTED, reason="Job Wrapper error: \u00e9\n\"quoted\"", retryable=False)
ENDS = [("https://wms.example.org:9000/a", DONE), ("https://wms.example.org:9000/b", CANCELLED),
        ("https://wms.example.org:9000/c", ABORTED)]


def _nobody(_pid: int, _written_at: dt.datetime) -> bool:
    return False


def _everybody(_pid: int, _written_at: dt.datetime) -> bool:
    return True


def test_ends_are_read_back_as_written(tmp_path: Path) -> None:
    path = save(tmp_path, "w/1", "host-a", 4242, ENDS)
    assert path == journal_path(tmp_path, "w/1") and path.parent == tmp_path / DIR_NAME
    assert "/" not in path.name  # a worker's name is a file name
    [journal] = left_behind(tmp_path, "host-a", _nobody, ("other", 1))
    assert (journal.path, journal.worker, journal.host, journal.pid) == (path, "w/1", "host-a", 4242)
    assert journal.ends == ENDS
    assert journal.written_at.tzinfo is not None
    assert os.listdir(path.parent) == [path.name]  # no temporary file left


def test_the_journal_is_closed_to_others(tmp_path: Path) -> None:
    path = save(tmp_path, "w1", "host-a", 1, ENDS)
    for item, mode in ((path.parent, 0o700), (path, 0o600)):
        st = os.lstat(item)
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (mode, os.geteuid())


def test_a_new_journal_replaces_the_old_and_remove_ends_it(tmp_path: Path) -> None:
    save(tmp_path, "w1", "host-a", 1, ENDS)
    path = save(tmp_path, "w1", "host-a", 1, ENDS[1:])
    [journal] = left_behind(tmp_path, "host-a", _nobody, ("other", 1))
    assert journal.ends == ENDS[1:]
    remove(path)
    remove(path)  # gone already: nothing to do
    assert list(left_behind(tmp_path, "host-a", _nobody, ("other", 1))) == []


def test_only_gone_workers_of_this_host_are_handed_over(tmp_path: Path) -> None:
    save(tmp_path, "live", "host-a", 10, ENDS)
    save(tmp_path, "elsewhere", "host-b", 11, ENDS)  # a work root shared with other hosts
    save(tmp_path, "me", "host-a", 12, ENDS)  # this worker's current life
    asked: list[int] = []

    def alive(pid: int, written_at: dt.datetime) -> bool:
        asked.append(pid)
        return pid == 10

    assert list(left_behind(tmp_path, "host-a", alive, ("me", 12))) == []
    assert asked == [10]
    [previous] = left_behind(tmp_path, "host-a", alive, ("me", 13))  # this name's previous life
    assert (previous.worker, previous.pid) == ("me", 12)
    assert {j.worker for j in left_behind(tmp_path, "host-a", _nobody, ("me", 12))} == {"live"}
    assert list(left_behind(tmp_path, "host-c", _everybody, ("me", 12))) == []


def test_an_unreadable_journal_is_logged_and_left(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = save(tmp_path, "good", "host-a", 1, ENDS)
    for name, content in (("truncated.json", good.read_bytes()[:40]), ("state.json", good.read_bytes().replace(
            b'"Done"', b'"Nonsense"')), ("fields.json", b'{"worker": "x"}')):
        (good.parent / name).write_bytes(content)
    (good.parent / "link.json").symlink_to(good)
    found = list(left_behind(tmp_path, "host-a", _nobody, ("me", 2)))
    assert [j.worker for j in found] == ["good"]
    for name in ("truncated.json", "state.json", "fields.json", "link.json"):
        assert f"{name} is unreadable and left alone" in caplog.text
        assert os.path.lexists(good.parent / name)


def test_no_journal_directory_is_no_journal(tmp_path: Path) -> None:
    assert list(left_behind(tmp_path, "host-a", _nobody, ("me", 1))) == []


def test_a_journal_directory_open_to_others_or_planted_as_a_link_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / DIR_NAME).symlink_to(elsewhere)
    with pytest.raises(OSError, match=r"Too many levels of symbolic links|Not a directory"):
        save(tmp_path, "w1", "host-a", 1, ENDS)
    assert os.listdir(elsewhere) == []
    (tmp_path / DIR_NAME).unlink()
    (tmp_path / DIR_NAME).mkdir(mode=0o700)
    os.chmod(tmp_path / DIR_NAME, 0o755)  # noqa: S103 - the defect under test
    with pytest.raises(PermissionError, match="closed to others"):
        save(tmp_path, "w1", "host-a", 1, ENDS)
    assert os.listdir(tmp_path / DIR_NAME) == []


def test_a_failed_write_leaves_the_previous_journal(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k,mode=0700", "tmpfs", str(root)], check=True)
    try:
        save(root, "w1", "host-a", 1, ENDS)  # one page of two
        with open(root / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
            while True:  # the other page
                filler.write(b"x" * 512)
        with pytest.raises(OSError, match="No space left") as refused:
            save(root, "w1", "host-a", 1, ENDS * 3)
        assert refused.value.errno == errno.ENOSPC
        [journal] = left_behind(root, "host-a", _nobody, ("me", 1))
        assert journal.ends == ENDS
        assert os.listdir(root / DIR_NAME) == [journal.path.name]  # the temporary file removed
    finally:
        subprocess.run(["umount", "--lazy", str(root)], check=True)
