"""A local job's wall time holds even when its job stops its wrapper (mapped accounts, the
privilege split): the wrapper's own clock (SIGALRM) is backed by the worker's
(:meth:`~wmproxy.execution.backends.local.LocalExecutionBackend.poll`).

Every CE publishes ``GlueCEPolicyMaxWallClockTime = 1`` (minutes: the smallest wall time a CE
can give) for this module only: the test takes about 90 s.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tests.conftest import Pki
from tests.integration.isolated import SYSTEM_PYTHON, Isolated, client, isolated_deployment, processes_of
from tests.integration.refclient import ReferenceClient
from tests.support import wait_for, wait_for_final

#: On SQLite alone: the wall time is the wrapper's alarm and the worker's backstop (processes and
#: their clocks); the worker's records of it on both databases are the workers' tests' (CI's time:
#: each variant waits out a whole minute of wall time).
pytestmark = [pytest.mark.integration, pytest.mark.any_database]

#: Seconds between SIGTERM and SIGKILL of a job (``[execution] kill_grace``): the worker's backstop
#: kills a job whose wrapper runs its wall time, this and ``local.CANCEL_MARGIN`` after its start.
KILL_GRACE = 1

#: ``stopper.py <marker> <seconds>``: leave a child in the wrapper's session, SIGSTOP the wrapper
#: (same uid: allowed), whose SIGALRM holds the wall time, then beat until killed.
STOPPER = r'''
import os, signal, sys, time
marker = sys.argv[1]
child = os.fork()
if child == 0:
    os.execv("/bin/sleep", ["wall-time-leftover", sys.argv[2]])
with open(marker + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {child}")
os.rename(marker + ".tmp", marker)
os.kill(os.getppid(), signal.SIGSTOP)
for _ in range(int(sys.argv[2])):
    time.sleep(1)
'''


@pytest.fixture(scope="module")
def iso(pki: Pki, database_url: str) -> Iterator[Isolated]:
    with isolated_deployment(pki, database_url, execution=f"kill_grace = {KILL_GRACE}") as deployment:
        (deployment.root / "stopper.py").write_text(STOPPER)
        os.chmod(deployment.root / "stopper.py", 0o644)
        catalogue = deployment.state / "ce-catalogue.ads"
        original = catalogue.read_text()
        # every CE (the broker may pick any that matches, from one drawn at random on)
        limited = original.replace("GlueCEStateStatus = ", "GlueCEPolicyMaxWallClockTime = 1; GlueCEStateStatus = ")
        assert limited.count("GlueCEPolicyMaxWallClockTime = 1;") == original.count("GlueCEStateStatus = ") > 0
        catalogue.write_text(limited)
        yield deployment


@pytest.fixture(scope="module")
def bob(iso: Isolated, pki: Pki) -> ReferenceClient:
    return client(iso, pki, "bob")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_job_that_stops_its_wrapper_is_still_stopped_at_its_wall_time(iso: Isolated, bob: ReferenceClient) -> None:
    """It ran on, Running, its slot held, long past its wall time (the wrapper's alarm never
    fired); now it ends Aborted for its wall time, as the control job stopped by its wrapper, and
    nothing of it is left."""
    marker = iso.shared / "stopper"
    control = bob.wmproxy.jobSubmit('[ Executable = "/bin/sleep"; Arguments = "400"; ]', "iso").id
    attack = bob.wmproxy.jobSubmit(f'[ Executable = "{SYSTEM_PYTHON}"; '
                                   f'Arguments = "-I {iso.root / "stopper.py"} {marker} 400"; ]', "iso").id
    wait_for(marker.exists, what="the job to stop its wrapper", timeout=300)
    pids = [int(pid) for pid in marker.read_text().split()]
    try:
        final = wait_for_final(bob, control, timeout=600)
        assert final.startswith("Aborted") and "the job exceeded its wall time of 60 s" in final, final
        final = wait_for_final(bob, attack, timeout=600)
        assert final.startswith("Aborted") and "the job exceeded its wall time of 60 s" in final, final
        wait_for(lambda: not any(_alive(pid) for pid in pids), what="the job's processes to be killed", timeout=60)
    finally:
        for pid in pids:
            if _alive(pid) and pid in processes_of({iso.mapped["bob"].pw_uid}):
                os.kill(pid, signal.SIGKILL)
