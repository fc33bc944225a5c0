"""The one /proc walker (wmproxy.execution.processes) behind the local backend's uid checks, the
purger's "accounts that still run a process" and the tests' clean-up of their accounts: a
process is found by its real uid, also one that made itself non-dumpable (its /proc files are
then root's), and a zombie is not live."""

from __future__ import annotations

import os
import subprocess

from tests.unit.execution.wrapper_support import DEADLINE, wait_for
from wmproxy.execution.identity import Account
from wmproxy.execution.processes import live_pids_of, live_uids, real_uid
from wmproxy.execution.purging import accounts_with_processes

#: Makes itself non-dumpable (prctl PR_SET_DUMPABLE 0), says so, then waits for its stdin to close.
NON_DUMPABLE = ("import ctypes, sys; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0); print('ready', flush=True); "
                "sys.stdin.read()")


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

    def test_a_zombie_is_not_live_and_a_gone_process_has_no_uid(self) -> None:
        zombie = subprocess.Popen(["/bin/true"])
        wait_for(lambda: real_uid(zombie.pid, live=True) is None, "it to exit (not reaped: a zombie)")
        assert real_uid(zombie.pid) == os.getuid() and zombie.pid not in live_pids_of({os.getuid()})
        zombie.wait()
        assert real_uid(zombie.pid) is None
