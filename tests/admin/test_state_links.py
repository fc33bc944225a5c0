"""``wmproxy-admin`` run as root on state the service user owns: a symbolic link (or a hard
link, or another user's file) the service user puts in place of the work root, the database,
the store key, the drain file or the migration lock is refused, and what it points to is left
as it was (docs/operations.md runs ``init --user``, ``migrate`` and ``drain`` as root)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.admin.support import SERVICE_USER, effective_user, key_path, write_ini
from wmproxy.admin import cli, initialise
from wmproxy.config import Settings
from wmproxy.security.filemodes import sqlite_path
from wmproxy.security.nofollow import UnsafePathError, open_state_path


@pytest.fixture
def victims() -> Iterator[Path]:
    """Root's own files, standing for ``/etc`` (``dir``, with ``dir/config``) and ``/etc/shadow``
    (``file``), in a directory of their own."""
    top = Path(tempfile.mkdtemp(prefix="wmproxy-victims-"))
    try:
        (top / "dir").mkdir(mode=0o755)
        (top / "dir" / "config").write_text("root config\n")
        (top / "file").write_text("root-only secret\n")
        (top / "file").chmod(0o600)
        yield top
    finally:
        shutil.rmtree(top)


def looks(path: Path) -> tuple[int, int, int, bytes | None]:
    """Owner, group, mode and (a file's) content: what a refused command must leave as it was."""
    found = path.stat()
    return found.st_uid, found.st_gid, stat.S_IMODE(found.st_mode), None if path.is_dir() else path.read_bytes()


def as_service_user_replace(path: Path, target: Path) -> None:
    """What the service user can do in its own directory: put a link to ``target`` in place of ``path``."""
    with effective_user(SERVICE_USER):
        if path.is_dir() and not path.is_symlink():
            path.rename(path.with_name(path.name + ".old"))
        elif path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(target)


def admin(settings: Settings, *args: str) -> Result:
    config = write_ini(settings, Path(settings.sandbox.root).parent.parent / "wmproxy.conf")
    return CliRunner().invoke(cli, ["-c", str(config), *args], catch_exceptions=False)


def init_refused(settings: Settings, message: str, *victims: Path) -> None:
    """``init --user`` as root refuses with ``message`` and leaves ``victims`` as they were."""
    before = [looks(victim) for victim in victims]
    with pytest.raises(UnsafePathError, match=re.escape(message)):
        initialise(settings, user=SERVICE_USER)
    assert [looks(victim) for victim in victims] == before


def refused(result: Result, path: Path, what: str = "is a symbolic link") -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and f"{path} {what}: refused" in result.stderr, result.stderr


class TestInit:
    @pytest.mark.parametrize("which", ["sandbox", "work"])
    def test_a_state_directory_replaced_by_a_link_is_refused_and_its_target_left_alone(
            self, service_settings: Settings, victims: Path, which: str) -> None:
        path = Path(service_settings.sandbox.root if which == "sandbox" else service_settings.execution.work_dir)
        as_service_user_replace(path, victims / "dir")
        init_refused(service_settings, f"{path} is a symbolic link: refused", victims / "dir")

    def test_the_store_key_replaced_by_a_link_is_refused(self, service_settings: Settings, victims: Path) -> None:
        path = key_path(service_settings)
        as_service_user_replace(path, victims / "file")
        init_refused(service_settings, f"{path} is a symbolic link: refused", victims / "file")

    def test_a_store_key_hard_linked_to_a_root_file_is_refused(self, service_settings: Settings,
                                                               victims: Path) -> None:
        path = key_path(service_settings)
        key = path.read_bytes()
        path.unlink()
        (victims / "file").write_bytes(key)  # a root file that happens to parse (the link is what matters)
        os.link(victims / "file", path)  # root can; fs.protected_hardlinks keeps the service user from it
        init_refused(service_settings, f"{path} has 2 hard links: refused", victims / "file")

    def test_a_state_directory_of_another_user_is_refused(self, service_settings: Settings) -> None:
        path = Path(service_settings.execution.work_dir)
        os.chown(path, 1, 1)  # daemon: neither root nor the service user
        init_refused(service_settings, f"{path} is owned by uid 1, neither root nor the service user", path)
        assert path.stat().st_uid == 1

    @pytest.mark.sqlite_only  # PostgreSQL's database has no file here
    def test_the_database_replaced_by_a_link_is_refused(self, service_settings: Settings, victims: Path) -> None:
        db = sqlite_path(service_settings.database.url)
        assert db is not None
        as_service_user_replace(db, victims / "file")
        init_refused(service_settings, f"{db} is a symbolic link: refused", victims / "file")

    @pytest.mark.sqlite_only  # PostgreSQL's database has no file here
    def test_a_wal_file_planted_as_a_link_is_refused_before_sqlite_opens_it(self, service_settings: Settings,
                                                                             victims: Path) -> None:
        db = sqlite_path(service_settings.database.url)
        assert db is not None
        as_service_user_replace(Path(f"{db}-wal"), victims / "file")
        init_refused(service_settings, f"{db}-wal is a symbolic link: refused", victims / "file")

    def test_a_directory_on_the_way_replaced_by_a_link_is_refused(self, service_settings: Settings,
                                                                  victims: Path) -> None:
        """The key's directory (the service user's) made a link to a root directory holding a root
        file of the key's name: the link on the way is refused, not only a link at the end."""
        path = key_path(service_settings)
        (victims / "dir" / path.name).write_bytes(path.read_bytes())
        as_service_user_replace(path.parent, victims / "dir")
        init_refused(service_settings, f"{path.parent} is a symbolic link: refused",
                     victims / "dir" / path.name, victims / "dir")

    def test_a_link_in_a_directory_only_root_writes_is_followed(self, service_settings: Settings) -> None:
        """``/var/run`` → ``/run``: only root could have put it there."""
        state = Path(service_settings.sandbox.root).parent
        top = state.parent
        assert top.stat().st_uid == 0 and not top.stat().st_mode & 0o022
        (top / "via").symlink_to(state)
        linked = Path(str(service_settings.execution.work_dir).replace(str(state), str(top / "via")))
        fd = open_state_path(linked, directory=True)
        try:
            assert os.fstat(fd).st_ino == Path(service_settings.execution.work_dir).stat().st_ino
        finally:
            os.close(fd)


class TestDrain:
    def test_on_refuses_a_link_and_off_removes_only_the_link(self, service_settings: Settings,
                                                              victims: Path) -> None:
        drain = Path(service_settings.service.drain_file)
        as_service_user_replace(drain, victims / "file")
        before = looks(victims / "file")
        refused(admin(service_settings, "drain", "on"), drain)
        assert looks(victims / "file") == before
        assert admin(service_settings, "drain", "off").exit_code == 0
        assert not drain.is_symlink() and looks(victims / "file") == before

    def test_on_leaves_a_file_of_another_user_whole(self, service_settings: Settings) -> None:
        drain = Path(service_settings.service.drain_file)
        drain.write_text("daemon's\n")
        os.chown(drain, 1, 1)  # daemon: neither root nor the service user
        before = looks(drain)
        refused(admin(service_settings, "drain", "on"), drain, "is owned by uid 1, neither root nor the service user")
        assert looks(drain) == before

    def test_on_creates_the_file_and_accepts_the_service_users_own(self, service_settings: Settings) -> None:
        drain = Path(service_settings.service.drain_file)
        assert admin(service_settings, "drain", "on").exit_code == 0 and drain.read_text().startswith("drained")
        assert admin(service_settings, "drain", "off").exit_code == 0 and not drain.exists()
        with effective_user(SERVICE_USER):
            drain.write_text("")
        assert admin(service_settings, "drain", "on").exit_code == 0 and drain.read_text().startswith("drained")


class TestMigrate:
    @pytest.mark.sqlite_only  # PostgreSQL locks in the database
    def test_a_lock_replaced_by_a_link_to_a_missing_file_creates_nothing(self, service_settings: Settings,
                                                                         victims: Path) -> None:
        db = sqlite_path(service_settings.database.url)
        assert db is not None
        lock = Path(f"{db}.migrate-lock")
        as_service_user_replace(lock, victims / "nologin")
        refused(admin(service_settings, "migrate"), lock)
        assert not (victims / "nologin").exists()

    @pytest.mark.sqlite_only  # PostgreSQL locks in the database
    def test_a_lock_of_the_service_user_is_used(self, service_settings: Settings) -> None:
        db = sqlite_path(service_settings.database.url)
        assert db is not None
        lock = Path(f"{db}.migrate-lock")
        lock.unlink()
        with effective_user(SERVICE_USER):
            lock.touch(mode=0o644)
        result = admin(service_settings, "migrate")
        assert result.exit_code == 0, result.output


class TestRotation:
    def test_a_key_replaced_by_a_link_is_refused_before_any_change(self, service_settings: Settings,
                                                                    victims: Path) -> None:
        path = key_path(service_settings)
        (victims / "file").write_bytes(path.read_bytes())  # the key itself, but root's, behind a link
        as_service_user_replace(path, victims / "file")
        before = looks(victims / "file")
        refused(admin(service_settings, "rotate-store-key", "--yes", "--force"), path)
        assert looks(victims / "file") == before and path.is_symlink()
        assert not Path(f"{path}.new").exists()
