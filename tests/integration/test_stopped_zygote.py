"""A zygote that a job of its account stopped (``SIGSTOP``: same uid) is replaced, and the
account's next job runs, on the deployment with the privilege split (the real worker as the
service user with its capabilities, bob's jobs as his pool account and forked by his account's
zygote), SQLite and PostgreSQL.

The worker looks at the zygote's state before each request (``T`` or ``t`` in
``/proc/<pid>/stat``): a stopped zygote is never asked (its answer would never come: the
worker's single loop would wait ``zygote.REPLY_TIMEOUT`` for it), it is killed, and the account's
wrappers are started by the worker itself for ``local.ZYGOTE_RETRY`` seconds, then by a new
zygote (the unit test of the backend alone: ``tests/unit/execution/test_job_limits.py``)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.integration.isolated import Isolated, client, isolated_deployment
from tests.support import wait_for, wait_for_final
from wmproxy.execution.processes import real_uid

pytestmark = pytest.mark.integration

#: Writes the pid of its wrapper's parent (the zygote that forked it, or the worker) to ``{marker}``.
PARENT_OF_WRAPPER = ('[ Executable = "/bin/sh"; Arguments = "-c \\"awk \'{{print \\\\$4}}\' /proc/\\\\$PPID/stat'
                     ' > {marker}.tmp && mv {marker}.tmp {marker}\\""; ]')


@pytest.fixture(scope="module")
def iso(pki: Pki, database_url: str) -> Iterator[Isolated]:
    with isolated_deployment(pki, database_url) as deployment:
        yield deployment


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _zygotes_of(uid: int) -> list[int]:
    """The live zygotes whose real uid is ``uid`` (their command line names ``zygote.py``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = entry.joinpath("cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(os.path.basename(arg) == b"zygote.py" for arg in argv) and real_uid(int(entry.name), live=True) == uid:
            found.append(int(entry.name))
    return found


def _parent_of_wrapper(iso: Isolated, pki: Pki, name: str) -> int:
    """Run a job of bob that says which process started its wrapper; that pid once it is Done."""
    bob = client(iso, pki, "bob")
    marker = iso.shared / name
    job_id = bob.wmproxy.jobSubmit(PARENT_OF_WRAPPER.format(marker=marker), "iso").id
    assert wait_for_final(bob, job_id) == "Done (Exit Code 0)"
    return int(marker.read_text())


class TestStoppedZygote:
    def test_a_stopped_zygote_is_killed_and_the_next_job_of_its_account_runs(self, iso: Isolated, pki: Pki) -> None:
        uid = iso.mapped["bob"].pw_uid
        zygote = _parent_of_wrapper(iso, pki, "first")
        assert _zygotes_of(uid) == [zygote]  # bob's first job was forked by his account's zygote
        started = (_stat(zygote) or [""] * 20)[19]
        os.kill(zygote, signal.SIGSTOP)  # what a job of bob's may do to it
        wait_for(lambda: (_stat(zygote) or ["gone"])[0], lambda state: state in ("T", "t"),
                 what="the zygote to be stopped")

        parent = _parent_of_wrapper(iso, pki, "second")
        assert parent != zygote  # never forked by the stopped zygote
        assert (_stat(parent) or [""])[0] not in ("T", "t")
        # the stopped zygote was killed (and reaped by the worker, its parent): gone, or its pid reused
        wait_for(lambda: _stat(zygote), lambda fields: fields is None or fields[19] != started,
                 what="the stopped zygote to be gone")
        log = (iso.state / "worker-1.log").read_text()
        assert (f"the wrapper fork server of {iso.mapped['bob'].pw_name} failed (the wrapper fork server is "
                "stopped (SIGSTOP, or traced)): the worker starts the wrappers itself for 60 s") in log, log[-3000:]
