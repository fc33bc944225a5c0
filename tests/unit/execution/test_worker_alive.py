"""Whether a stale execution worker's row names a live worker (wmproxy.execution.worker.worker_alive):
its pid must live and its process must have started before the worker registered, so that a pid
reused by a later process, or one from before a reboot, does not keep its jobs from adoption."""

from __future__ import annotations

import datetime as dt
import os
import subprocess

from wmproxy.domain import utcnow
from wmproxy.execution.worker import worker_alive


def test_a_live_process_that_started_before_the_registration_is_the_worker() -> None:
    assert worker_alive(os.getpid(), utcnow())


def test_a_process_that_started_after_the_registration_is_not() -> None:
    assert not worker_alive(os.getpid(), dt.datetime(2000, 1, 1, tzinfo=dt.UTC))


def test_an_exited_process_is_not() -> None:
    exited = subprocess.Popen(["true"])
    exited.wait()
    assert not worker_alive(exited.pid, utcnow())
