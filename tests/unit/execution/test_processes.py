"""The one /proc walker (wmproxy.execution.processes) behind the local backend's uid checks, the
purger's "accounts that still run a process" and the tests' clean-up of their accounts: a
process is found by its real uid, also one that made itself non-dumpable (its /proc files are
then root's), and a zombie is not live."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.unit.execution.wrapper_support import DEADLINE, wait_for
from wmproxy.execution.identity import Account
from wmproxy.execution.processes import (
    EXIT_STATUS_KNOWN,
    exit_status,
    live_pids_of,
    live_uids,
    open_pidfd,
    real_uid,
    session_has_members,
)
from wmproxy.execution.purging import accounts_with_processes

#: Makes itself non-dumpable (prctl PR_SET_DUMPABLE 0), says so, then waits for its stdin to close.
NON_DUMPABLE = ("import ctypes, sys; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0); print('ready', flush=True); "
                "sys.stdin.read()")


#: Starts a thread that waits for stdin to close, says so, then ends its main thread alone.
MAIN_THREAD_ENDS = ("import ctypes, sys, threading; threading.Thread(target=sys.stdin.read).start(); "
                    "print('ready', flush=True); ctypes.CDLL(None).syscall({exit}, 0)")
#: The exit system call (one thread, not the group) by machine.
SYS_EXIT = {"x86_64": 60, "aarch64": 93}


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        return next(line.split()[1] for line in f if line.startswith("State:"))


class TestProcesses:
    def test_a_non_dumpable_process_of_an_account_keeps_it_among_those_with_processes(
        self, job_account: Account
    ) -> None:
        argv = ["setpriv", f"--reuid={job_account.uid}", f"--regid={job_account.gid}", "--clear-groups",
                "/usr/bin/python3", "-c", NON_DUMPABLE]
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
            assert os.stat(f"/proc/{process.pid}/status").st_uid == 0  # its files are root's now
            assert real_uid(process.pid) == job_account.uid
            assert job_account.uid in live_uids()
            assert process.pid in live_pids_of({job_account.uid})
            assert job_account.name in accounts_with_processes()
        finally:
            process.communicate(timeout=DEADLINE)
        assert process.pid not in live_pids_of({job_account.uid})

    def test_a_process_whose_main_thread_ended_alone_is_live_and_keeps_its_account(
        self, job_account: Account
    ) -> None:
        """Its state reads ``Z`` while another thread runs code as the account: taken for a
        zombie, the purger released the account's lease with the previous user's process alive."""
        argv = ["setpriv", f"--reuid={job_account.uid}", f"--regid={job_account.gid}", "--clear-groups",
                "/usr/bin/python3", "-c", MAIN_THREAD_ENDS.format(exit=SYS_EXIT[os.uname().machine])]
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
            wait_for(lambda: _state(process.pid) == "Z", "its main thread to end")
            assert real_uid(process.pid, live=True) == job_account.uid
            assert process.pid in live_pids_of({job_account.uid})
            assert job_account.name in accounts_with_processes()
        finally:
            process.communicate(timeout=DEADLINE)

    def test_a_zombie_is_not_live_and_a_gone_process_has_no_uid(self) -> None:
        zombie = subprocess.Popen(["/bin/true"])
        wait_for(lambda: real_uid(zombie.pid, live=True) is None, "it to exit (not reaped: a zombie)")
        assert real_uid(zombie.pid) == os.getuid() and zombie.pid not in live_pids_of({os.getuid()})
        zombie.wait()
        assert real_uid(zombie.pid) is None


#: Starts ``sleep`` in the background, prints its pid, and reaps it when it ends (its parent: not us).
PARENT_OF_SLEEP = "sleep 600 & echo $!; wait $!"


class TestPidfds:
    @pytest.mark.skipif(not EXIT_STATUS_KNOWN, reason="needs Linux 6.15+ (PIDFD_INFO_EXIT)")
    def test_the_exit_status_of_a_process_reaped_by_another_comes_through_its_pidfd(self) -> None:
        """A zygote's wrapper is the zygote's child, not the worker's: only the kernel's copy of its
        wait status, kept for its pidfds once reaped, tells the worker that a signal killed it."""
        parent = subprocess.Popen(["/bin/sh", "-c", PARENT_OF_SLEEP], stdout=subprocess.PIPE, text=True)
        try:
            assert parent.stdout is not None
            pid = int(parent.stdout.readline())
            pidfd = open_pidfd(pid)
            assert pidfd is not None
            try:
                assert exit_status(pidfd) is None  # it runs
                os.kill(pid, signal.SIGKILL)
                parent.wait(timeout=DEADLINE)  # the shell has reaped it
                status = exit_status(pidfd)
                assert status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            finally:
                os.close(pidfd)
        finally:
            parent.kill()
            parent.communicate(timeout=DEADLINE)

    def test_a_session_has_members_while_a_process_other_than_its_leader_is_in_it(self) -> None:
        leader = subprocess.Popen(["/bin/sh", "-c", PARENT_OF_SLEEP], stdout=subprocess.PIPE, text=True,
                                  start_new_session=True)
        try:
            assert leader.stdout is not None
            member = int(leader.stdout.readline())
            assert session_has_members(leader.pid)
            os.kill(member, signal.SIGKILL)
            leader.wait(timeout=DEADLINE)
            wait_for(lambda: not session_has_members(leader.pid), "the session to be empty")
        finally:
            leader.kill()
            leader.communicate(timeout=DEADLINE)
