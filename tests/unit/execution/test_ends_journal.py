"""The execution worker's ends journal (wmproxy.execution.ends_journal): the ends the database
did not take, written durably to the work root, one file per worker process, read back whole,
and only this host's and this user's (which of them to take is the worker's: test_adoption)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import stat
import subprocess
from pathlib import Path

import pytest

from wmproxy.domain import JobState
from wmproxy.execution import ends_journal
from wmproxy.execution.ends_journal import (
    DIR_NAME,
    MAX_BYTES,
    Journal,
    journal_path,
    journals,
    lock,
    remove,
    save,
)
from wmproxy.services.retries import AttemptEnd

DONE = AttemptEnd(JobState.DONE, exit_code=5, reason="output sandbox file x not collected: missing",
                  payload_started=True, output_bytes=12, attempt=2)
CANCELLED = AttemptEnd(JobState.CANCELLED, attempt=0)
ABORTED = AttemptEnd(JobState.ABORTED, reason="Job Wrapper error: \u00e9\n\"quoted\"", retryable=False)
ENDS = [("https://wms.example.org:9000/a", DONE), ("https://wms.example.org:9000/b", CANCELLED),
        ("https://wms.example.org:9000/c", ABORTED)]


def test_ends_are_read_back_as_written(tmp_path: Path) -> None:
    path = save(tmp_path, "w/1", "host-a", 4242, ENDS)
    assert path == journal_path(tmp_path, "host-a", 4242, "w/1") and path.parent == tmp_path / DIR_NAME
    assert path.name == "host-a.4242.w_2f1.json"  # a worker's name is a file name
    [journal] = journals(tmp_path, "host-a")
    assert (journal.path, journal.worker, journal.host, journal.pid) == (path, "w/1", "host-a", 4242)
    assert journal.ends == ENDS
    assert journal.written_at.tzinfo is not None
    assert os.listdir(path.parent) == [path.name]  # no temporary file left


def test_one_file_per_process_whatever_the_name(tmp_path: Path) -> None:
    names = {save(tmp_path, name, "host-a", pid, ENDS).name for name, pid in
             (("w1", 1), ("w1", 2), (".hidden", 3), ("x" * 300, 4))}
    assert len(names) == 4 and not any(n.startswith(".") or len(n) > 200 for n in names)
    assert sorted(j.pid for j in journals(tmp_path, "host-a")) == [1, 2, 3, 4]
    assert {j.worker for j in journals(tmp_path, "host-a")} == {"w1", ".hidden", "x" * 300}


def test_the_journal_is_closed_to_others(tmp_path: Path) -> None:
    path = save(tmp_path, "w1", "host-a", 1, ENDS)
    for item, mode in ((path.parent, 0o700), (path, 0o600)):
        st = os.lstat(item)
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (mode, os.geteuid())


def test_a_new_journal_replaces_the_old_and_remove_ends_it(tmp_path: Path) -> None:
    save(tmp_path, "w1", "host-a", 1, ENDS)
    path = save(tmp_path, "w1", "host-a", 1, ENDS[1:])
    [journal] = journals(tmp_path, "host-a")
    assert journal.ends == ENDS[1:]
    remove(path)
    remove(path)  # gone already: nothing to do
    assert journals(tmp_path, "host-a") == []


def test_only_this_hosts_journals_are_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    save(tmp_path, "w1", "host-a", 10, ENDS)
    other = save(tmp_path, "w1", "host-b", 10, ENDS)  # a work root shared with other hosts
    assert [(j.host, j.pid) for j in journals(tmp_path, "host-a")] == [("host-a", 10)]
    assert journals(tmp_path, "host-c") == []
    other.write_text("being written on host-b")
    assert len(journals(tmp_path, "host-a")) == 1 and "unreadable" not in caplog.text  # not even opened


def test_what_is_not_a_journal_of_this_user_is_logged_and_left(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    good = save(tmp_path, "good", "host-a", 1, ENDS)
    fields = json.loads(good.read_text())
    end = fields["ends"][0][1]
    bad = {  # name: (content, why it is refused)
        "truncated": (good.read_bytes()[:40], "Unterminated string"),
        "state": (good.read_bytes().replace(b'"Done"', b'"Nonsense"'), "is not a valid JobState"),
        "fields": (b'{"worker": "x"}', "written_at"),
        "big": (b" " * (MAX_BYTES + 1), "larger than"),
        "pid": (json.dumps({**fields, "pid": 10**30}).encode(), "out of range"),
        "bool": (json.dumps({**fields, "pid": True}).encode(), "pid is not a int"),
        "naive": (json.dumps({**fields, "written_at": "2026-12-04T10:00:00"}).encode(), "no time zone"),
        "attempt": (json.dumps({**fields, "ends": [["j", {**end, "attempt": "0"}]]}).encode(), "attempt is not"),
        "bytes": (json.dumps({**fields, "ends": [["j", {**end, "output_bytes": "12"}]]}).encode(), "output_bytes"),
        "negative": (json.dumps({**fields, "ends": [["j", {**end, "output_bytes": -1}]]}).encode(), "negative"),
        "extra": (json.dumps({**fields, "ends": [["j", {**end, "extra": 1}]]}).encode(), "has the fields"),
        "shape": (json.dumps({**fields, "ends": [["j"]]}).encode(), "not [job id, fields]"),
        "deep": (b"[" * 100_000 + b"]" * 100_000, "recursion"),  # json's recursion limit
        "open": (good.read_bytes(), "closed to others"),
        "other": (good.read_bytes(), "closed to others"),
    }
    for name, (content, _why) in bad.items():  # every name this host's, as a journal's
        path = good.parent / f"host-a.{name}.json"
        path.write_bytes(content)
        os.chmod(path, 0o644 if name == "open" else 0o600)
    os.chown(good.parent / "host-a.other.json", 65534, 65534)  # nobody's
    (good.parent / "host-a.link.json").symlink_to(good)
    bad["link"] = (b"", "Too many levels of symbolic links")
    assert [j.worker for j in journals(tmp_path, "host-a")] == ["good"]
    lines = {r.getMessage().split(" is unreadable")[0]: r.getMessage() for r in caplog.records}
    for name, (_content, why) in bad.items():
        path = good.parent / f"host-a.{name}.json"
        assert why in lines[f"ends journal {path}"], (name, lines[f"ends journal {path}"])
        assert os.path.lexists(path)


def test_no_journal_directory_is_no_journal(tmp_path: Path) -> None:
    assert journals(tmp_path, "host-a") == []


def test_a_journal_directory_open_to_others_or_planted_as_a_link_is_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    elsewhere = tmp_path / "other-root"
    elsewhere.mkdir(mode=0o700)
    save(elsewhere, "w9", "host-a", 9, ENDS)
    (tmp_path / DIR_NAME).symlink_to(elsewhere / DIR_NAME)
    with pytest.raises(OSError, match=r"Too many levels of symbolic links|Not a directory"):
        save(tmp_path, "w1", "host-a", 1, ENDS)
    assert journals(tmp_path, "host-a") is None  # not read (nor the link's target), and not known
    assert "cannot read the ends journals" in caplog.text
    (tmp_path / DIR_NAME).unlink()
    (tmp_path / DIR_NAME).mkdir(mode=0o700)
    os.chmod(tmp_path / DIR_NAME, 0o755)  # noqa: S103 - the defect under test
    with pytest.raises(PermissionError, match="closed to others"):
        save(tmp_path, "w1", "host-a", 1, ENDS)
    assert os.listdir(tmp_path / DIR_NAME) == []
    assert journals(tmp_path, "host-a") is None


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
        [journal] = journals(root, "host-a")
        assert journal.ends == ENDS
        assert os.listdir(root / DIR_NAME) == [journal.path.name]  # the temporary file removed
    finally:
        subprocess.run(["umount", "--lazy", str(root)], check=True)


def test_a_journal_taken_over_while_the_directory_is_read_is_found_in_its_takers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = save(tmp_path, "w1", "host-a", 10, ENDS[:1])
    gone = save(tmp_path, "w2", "host-a", 20, ENDS[1:])  # its worker is gone
    read = ends_journal._read
    takeovers = []

    def read_while_a_peer_takes_over(dir_fd: int, path: Path) -> Journal:
        if not takeovers:  # between the listing and the read of w2's journal, a peer takes it over:
            takeovers.append(save(tmp_path, "w3", "host-a", 30, ENDS[1:]))  # its own journal first,
            remove(gone)  # then the file it took
        return read(dir_fd, path)

    monkeypatch.setattr(ends_journal, "_read", read_while_a_peer_takes_over)
    found = journals(tmp_path, "host-a")
    assert [(j.path, j.ends) for j in found] == [(first, ENDS[:1]), (takeovers[0], ENDS[1:])]
    assert "unreadable" not in caplog.text  # the vanished file was not taken for a bad one


def test_a_directory_that_keeps_changing_while_read_gives_no_answer_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    save(tmp_path, "w1", "host-a", 10, ENDS)
    read = ends_journal._read
    pids = iter(range(11, 100))

    def read_while_it_is_replaced(dir_fd: int, path: Path) -> Journal:
        remove(path)  # each time, taken over by a new process before it is read
        save(tmp_path, "w1", "host-a", next(pids), ENDS)
        return read(dir_fd, path)

    monkeypatch.setattr(ends_journal, "_read", read_while_it_is_replaced)
    assert journals(tmp_path, "host-a") is None  # not known, not none
    assert "kept changing while read: 5 passes" in caplog.text


def test_a_journal_not_opened_for_want_of_file_descriptors_makes_the_answer_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    save(tmp_path, "w1", "host-a", 10, ENDS)
    read = ends_journal._read

    def read_without_descriptors(dir_fd: int, path: Path) -> Journal:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lowest_free = os.dup(0)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # the next open: EMFILE
        try:
            return read(dir_fd, path)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    monkeypatch.setattr(ends_journal, "_read", read_without_descriptors)
    assert journals(tmp_path, "host-a") is None  # the journal may be fine: not known, not skipped
    assert "Too many open files" in caplog.text and "unreadable and left alone" not in caplog.text
    monkeypatch.undo()
    assert [j.pid for j in journals(tmp_path, "host-a") or []] == [10]


def test_a_journal_is_taken_by_one_process_at_a_time(tmp_path: Path) -> None:
    path = save(tmp_path, "w1", "host-a", 10, ENDS, life="0a1b2c3d")
    assert path.name == "host-a.10.0a1b2c3d.w1.json"  # one file per process life
    first = lock(path)
    assert first is not None
    assert lock(path) is None  # another open of it (another worker): busy, not waited for
    os.close(first)
    second = lock(path)
    assert second is not None
    os.close(second)
    remove(path)
    assert lock(path) is None  # taken and removed already
