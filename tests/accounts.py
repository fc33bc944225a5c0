"""Real local Unix accounts for the mapping tests, created and removed around a test session.

Accounts are made with ``groupadd``/``useradd --system --no-create-home --shell
/usr/sbin/nologin`` (the tests run as root, CI too). Every name carries a random
per-session tag (``wmpqzk`` + ``atl001``), so they never collide with real accounts or
with a concurrent test session, and the GECOS field records the creating process
(``wmproxy test account pid=<pid>``) so that accounts left behind by a killed session
are removed by the next one. Under ``CI=true`` failure to create them fails the tests.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import secrets
import signal
import string
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from wmproxy.execution.processes import live_pids_of, uids_with_processes

MARKER = "wmproxy test account pid="
_TAG_LENGTH = 6


@dataclass
class AccountSet:
    """The accounts of one session: ``name(short)`` gives the real name of ``short``."""

    tag: str
    groups: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)

    def name(self, short: str) -> str:
        return f"{self.tag}{short}"

    def passwd(self, short: str) -> pwd.struct_passwd:
        return pwd.getpwnam(self.name(short))


#: The uids the test accounts take, at random: not useradd's next free system uid, which is the
#: uid of an account just removed, whose processes (a zombie, say) may not all be gone yet.
TEST_UIDS = range(30000, 40000)


def _free_uid() -> int:
    """A uid of :data:`TEST_UIDS` that no account has and no process (zombies included) runs
    as: the purger keeps the pool lease of an account that owns a process, and a process left
    by another module's account with a reused uid kept the lease of this module's account
    (tests/store/test_leases.py failed in CI).

    Raises:
        OSError: none found in a thousand draws.
    """
    taken = uids_with_processes() | {entry.pw_uid for entry in pwd.getpwall()}
    for _ in range(1000):
        uid = TEST_UIDS[secrets.randbelow(len(TEST_UIDS))]
        if uid not in taken:
            return uid
    raise OSError("no free uid for a test account")


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> None:
    """Delete test accounts whose creating process is gone, and their sessions' groups."""
    stale_tags = set()
    for entry in pwd.getpwall():
        if not entry.pw_gecos.startswith(MARKER):
            continue
        pid = entry.pw_gecos[len(MARKER):]
        if pid.isdigit() and _pid_alive(int(pid)):
            continue
        subprocess.run(["userdel", entry.pw_name], capture_output=True, check=False)
        stale_tags.add(entry.pw_name[:_TAG_LENGTH])
    used_gids = {entry.pw_gid for entry in pwd.getpwall()}
    for group in grp.getgrall():
        if group.gr_name[:_TAG_LENGTH] in stale_tags and group.gr_gid not in used_gids:
            subprocess.run(["groupdel", group.gr_name], capture_output=True, check=False)


def _new_tag() -> str:
    while True:
        tag = "wmp" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(_TAG_LENGTH - 3))
        if not any(e.pw_name.startswith(tag) for e in pwd.getpwall()) and not any(
            g.gr_name.startswith(tag) for g in grp.getgrall()
        ):
            return tag


@contextmanager
def local_accounts(spec: dict[str, list[str]]) -> Iterator[AccountSet]:
    """Create the accounts of ``spec`` and remove them afterwards, even on failure.

    Args:
        spec: group short name → its users' short names (``{"atl": ["atl001", ...]}``);
            the group ``"root"`` puts users in the root group instead of a new group.

    Raises:
        OSError, subprocess.CalledProcessError: not root, or useradd/groupadd failed.
    """
    remove_stale()
    accounts = AccountSet(_new_tag())
    try:
        for group, users in spec.items():
            if group == "root":
                group_name = "root"
            else:
                group_name = accounts.name(group)
                _run("groupadd", "--system", group_name)
                accounts.groups.append(group_name)
            for user in users:
                name = accounts.name(user)
                _run("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                     "--uid", str(_free_uid()), "--gid", group_name, "--comment", f"{MARKER}{os.getpid()}", name)
                accounts.users.append(name)
        yield accounts
    finally:
        _kill_processes_of(accounts.users)  # userdel refuses an account a process still runs as
        for name in accounts.users:
            subprocess.run(["userdel", name], capture_output=True, check=False)
        for group_name in accounts.groups:
            subprocess.run(["groupdel", group_name], capture_output=True, check=False)



#: Seconds the processes of a session's accounts get to be gone before the accounts are removed.
KILL_DEADLINE = 30.0


def _kill_processes_of(names: list[str]) -> None:
    """SIGKILL every process running as one of the accounts ``names`` (a test's leftovers: a
    zygote being closed, a child of a killed shell) until none is left, or for
    :data:`KILL_DEADLINE` seconds."""
    uids = set()
    for name in names:
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            continue
    deadline = time.monotonic() + KILL_DEADLINE
    while uids and time.monotonic() < deadline:
        alive = live_pids_of(uids)
        if not alive:
            return
        for pid in alive:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
