"""Trees of any depth totalled and removed without recursion, with a bounded number of
descriptors, never following a symlink, and stopping when a directory is moved out of the tree
while the walk is below it."""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deep_trees import DEPTH, make_chain, removed_afterwards
from wmproxy.admintools import tree_bytes
from wmproxy.sandbox import trees
from wmproxy.sandbox.trees import TreeChangedError, TreeTotals, remove_tree, tree_totals


@pytest.fixture
def top(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "top"
    path.mkdir()
    with removed_afterwards(path):
        yield path


def _bottom(top: Path) -> int:
    """The inode of the deepest directory of the chain below ``top``."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while True:
            try:
                child = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            except FileNotFoundError:
                return os.fstat(fd).st_ino
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def _fds_into(top: Path) -> list[str]:
    """What this process's descriptors open below ``top`` (its directories removed since included:
    ``... (deleted)``); other threads' descriptors elsewhere do not count."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target == str(top) or target.startswith(f"{top}/"):
                found.append(target)
    return found


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class TestDeepTrees:
    def test_a_tree_far_deeper_than_the_recursion_limit_is_totalled_and_removed(self, top: Path) -> None:
        assert sys.getrecursionlimit() * 2 < DEPTH
        make_chain(top, DEPTH)
        (top / "b").mkdir()
        (top / "b" / "g").write_bytes(b"12345")
        assert tree_totals(top) == TreeTotals(files=DEPTH + 1, dirs=DEPTH + 1, size=2 * DEPTH + 5)
        remove_tree(top)
        assert not top.exists()
        assert _fds_into(top) == []  # none left open (counting all descriptors raced other threads)

    def test_the_walk_holds_a_bounded_number_of_descriptors(self, top: Path) -> None:
        """Python 3.13's shutil.rmtree keeps one descriptor per level: EMFILE past the limit."""
        depth = 4 * trees.OPEN_DIRS + 50
        make_chain(top, depth)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (_open_fds() + trees.OPEN_DIRS + 8, hard))
        try:
            totals = tree_totals(top)
            remove_tree(top)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert totals == TreeTotals(files=depth, dirs=depth, size=2 * depth)
        assert not top.exists()


def _system_python_env() -> dict[str, str]:
    """The environment of the system's Python run as another user or without a capability: its
    shared library where the CI's 3.13 build keeps it (LD_LIBRARY_PATH), nothing else of ours."""
    return {"PATH": "/usr/bin:/bin", **{name: os.environ[name] for name in ("LD_LIBRARY_PATH",) if name in os.environ}}


class TestAdminStats:
    def test_wmproxy_admin_stats_totals_a_deep_work_dir(self, top: Path) -> None:
        """``wmproxy-admin stats`` sums the work dirs: a running job's 2,500-level tree made it
        fail with RecursionError (os.walk recurses on 3.11)."""
        make_chain(top, DEPTH)
        assert tree_bytes(top) == 2 * DEPTH

    def test_what_the_caller_may_not_read_is_left_out_not_an_error(self) -> None:
        """As an administrator without the worker's rights: a job's 0700 work dir is skipped,
        the rest summed (in a process of the unprivileged ``nobody``, as root reads everything);
        the sandbox code's walk (no ``skip_unreadable``) still fails on it."""
        if os.geteuid() != 0:
            pytest.skip("needs root to run the walk as another user")
        top = Path(tempfile.mkdtemp(prefix="wmptest-trees-"))  # below /tmp: nobody may reach it
        try:
            top.chmod(0o755)
            (top / "open").mkdir(mode=0o755)
            (top / "open" / "f").write_bytes(b"123")
            (top / "open" / "f").chmod(0o644)
            (top / "closed").mkdir(mode=0o700)
            (top / "closed" / "g").write_bytes(b"12345")
            (top / "listable").mkdir()  # its names may be read, not its files' sizes
            (top / "listable" / "h").write_bytes(b"1234567")
            (top / "listable").chmod(0o444)
            # the system's Python (the tests' may sit where nobody reaches), the walk alone (stdlib only)
            python = os.environ.get("WMPROXY_TEST_SYSTEM_PYTHON", "/usr/bin/python3")
            script = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r}); "
                      "from wmproxy.sandbox.trees import tree_totals; "
                      "print(tree_totals(sys.argv[1], skip_unreadable=sys.argv[2] == 'skip'))")
            as_nobody = functools.partial(subprocess.run, user=65534, group=65534, extra_groups=[],
                                          capture_output=True, text=True, timeout=120, env=_system_python_env())
            done = as_nobody([python, "-I", "-c", script, str(top), "skip"])
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "TreeTotals(files=1, dirs=3, size=3)"  # the dirs counted, g and h not
            strict = as_nobody([python, "-I", "-c", script, str(top), "strict"])
            assert strict.returncode != 0 and "PermissionError" in strict.stderr, strict.stderr
        finally:
            shutil.rmtree(top)


class TestStickyDirectories:
    def test_a_sticky_directory_of_the_jobs_is_removed_without_cap_fowner(self) -> None:
        """A job's ``chmod 1777`` directory holding its files: removing another user's entry
        there needs CAP_FOWNER, which the execution worker does not hold; the removal takes the
        directory over (CAP_CHOWN) instead of failing at every retry. Run as root without
        CAP_FOWNER, as the worker's capabilities leave it."""
        if os.geteuid() != 0 or not shutil.which("setpriv"):
            pytest.skip("needs root and setpriv to drop CAP_FOWNER")
        top = Path(tempfile.mkdtemp(prefix="wmptest-sticky-"))
        try:
            work = top / "job"
            work.mkdir()
            (work / "s").mkdir()
            (work / "s" / "f").write_bytes(b"x")
            (work / "s" / "d").mkdir()
            for path in (work / "s" / "d", work / "s" / "f", work / "s"):
                os.chown(path, 65534, 65534)
            (work / "s").chmod(0o1777)
            python = os.environ.get("WMPROXY_TEST_SYSTEM_PYTHON", "/usr/bin/python3")
            script = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r}); "
                      "from wmproxy.sandbox.trees import remove_tree; remove_tree(sys.argv[1])")
            done = subprocess.run(["setpriv", "--bounding-set=-fowner", "--inh-caps=-fowner", python, "-I", "-c",
                                   script, str(work)], capture_output=True, text=True, timeout=120,
                                  env=_system_python_env(), check=False)
            assert done.returncode == 0, done.stderr
            assert not work.exists()
        finally:
            subprocess.run(["rm", "-rf", "--", str(top)], check=False, timeout=120)


class TestLinks:
    def test_symlinks_are_removed_never_followed_nor_counted(self, top: Path, tmp_path: Path) -> None:
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "keep").write_bytes(b"keep")
        make_chain(top, 3)
        (top / "a" / "a" / "dir-link").symlink_to(outside)
        (top / "a" / "file-link").symlink_to(outside / "keep")
        locked = top / "a" / "a" / "a" / "locked"
        locked.mkdir()
        (locked / "f").write_bytes(b"x")
        locked.chmod(0o500)
        assert tree_totals(top) == TreeTotals(files=4, dirs=4, size=7)
        remove_tree(top)
        assert not top.exists()
        assert (outside / "keep").read_bytes() == b"keep"

    def test_a_symlink_as_the_top_is_neither_followed_nor_removed(self, top: Path, tmp_path: Path) -> None:
        (top / "f").write_bytes(b"x")
        link = tmp_path / "link"
        link.symlink_to(top)
        assert tree_totals(link) == TreeTotals()
        with pytest.raises(NotADirectoryError):  # O_NOFOLLOW | O_DIRECTORY on a symlink
            remove_tree(link)
        assert link.is_symlink() and (top / "f").exists()

    def test_no_directory_has_no_totals(self, tmp_path: Path) -> None:
        (tmp_path / "file").write_bytes(b"x")
        assert tree_totals(tmp_path / "missing") == TreeTotals()
        assert tree_totals(tmp_path / "file") == TreeTotals()
        with pytest.raises(FileNotFoundError):
            remove_tree(tmp_path / "missing")


class TestMovedDirectories:
    def test_a_directory_moved_out_of_the_tree_stops_the_walk_before_it_leaves_the_tree(
            self, top: Path, tmp_path: Path) -> None:
        """The descriptors of the levels above the deepest OPEN_DIRS are closed and reopened
        through ``..``: once the second level has been moved elsewhere, its ``..`` is not the
        first level any more, and nothing of the new place is touched."""
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "keep").write_bytes(b"keep")
        depth = trees.OPEN_DIRS + 10
        make_chain(top, depth)
        moved = outside / "moved"
        bottom = _bottom(top)

        def on_entry(dir_fd: int, entry: os.DirEntry[str]) -> None:
            if os.fstat(dir_fd).st_ino == bottom:  # the walk is at the bottom
                os.rename(top / "a" / "a", moved)
            os.unlink(entry.name, dir_fd=dir_fd)

        def on_dir(parent_fd: int, name: str) -> None:
            os.rmdir(name, dir_fd=parent_fd)

        fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(TreeChangedError):
                trees.walk(fd, on_entry, on_dir)
        finally:
            os.close(fd)
        assert sorted(os.listdir(outside)) == ["keep", "moved"]
        assert (outside / "keep").read_bytes() == b"keep"
        assert os.listdir(moved) == []  # the moved level itself was still the walk's to empty
        assert (top / "a").is_dir()


class TestRemovalWithADeadline:
    """A job's work dir with 200,000 files held the execution worker's cycle for 2.2 s: the
    removal looks at its deadline inside a directory, not only between trees."""

    def test_a_passed_deadline_stops_a_large_directory_part_way_and_a_next_call_goes_on(self, top: Path) -> None:
        files = 4 * trees.REMOVALS_PER_CHECK + 10
        for i in range(files):
            (top / f"f{i}").touch()
        with pytest.raises(trees.RemovalPaused):
            remove_tree(top, deadline=0.0)  # long passed: one batch, then it stops
        assert len(os.listdir(top)) == files - trees.REMOVALS_PER_CHECK
        assert _fds_into(top) == []
        while True:
            try:
                remove_tree(top, deadline=0.0)
            except trees.RemovalPaused:
                continue
            break
        assert not top.exists()

    def test_directories_count_as_removals(self, top: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(trees, "REMOVALS_PER_CHECK", 2)
        for name in ("a", "b", "c"):
            (top / name).mkdir()
            (top / name / "f").touch()
        with pytest.raises(trees.RemovalPaused):
            remove_tree(top, deadline=0.0)
        assert len(os.listdir(top)) == 2  # one directory and its file

    def test_each_call_on_a_deep_chain_removes_a_batch(self, top: Path) -> None:
        """A call that stopped after one directory walked down the whole chain for each one: a
        chain of thousands never went (the execution worker's idle removals, 10 ms each)."""
        make_chain(top, 3 * trees.REMOVALS_PER_CHECK)
        totals = tree_totals(top)
        calls = 0
        while top.exists():
            calls += 1
            with contextlib.suppress(trees.RemovalPaused):
                remove_tree(top, deadline=0.0)
        assert calls <= (totals.files + totals.dirs) // trees.REMOVALS_PER_CHECK + 1

    def test_steps_kept_between_calls_go_on_where_they_stopped(self, top: Path) -> None:
        make_chain(top, 3 * trees.REMOVALS_PER_CHECK)
        steps = trees.removal_steps(top)
        calls = 1
        while not trees.advance(steps, deadline=0.0):
            calls += 1
            assert top.exists()
        assert not top.exists() and calls > 3
        assert _fds_into(top) == []

    def test_a_deadline_not_reached_removes_everything(self, top: Path) -> None:
        make_chain(top, 50)
        for i in range(3 * trees.REMOVALS_PER_CHECK):
            (top / f"f{i}").touch()
        remove_tree(top, deadline=float("inf"))
        assert not top.exists()
