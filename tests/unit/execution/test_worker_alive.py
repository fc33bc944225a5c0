"""Whether a stale execution worker's row names a live worker (wmproxy.execution.worker.worker_alive):
its pid must live and its process must have started before the worker registered, so that a pid
reused by a later process, or one from before a reboot, does not keep its jobs from adoption.
And the worker's back-off between tries at collecting an end (``end_retry_delay``)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess

from wmproxy.domain import utcnow
from wmproxy.execution.worker import END_RETRY_FIRST, END_RETRY_MAX, end_retry_delay, worker_alive


def test_a_live_process_that_started_before_the_registration_is_the_worker() -> None:
    assert worker_alive(os.getpid(), utcnow())


def test_a_process_that_started_after_the_registration_is_not() -> None:
    assert not worker_alive(os.getpid(), dt.datetime(2000, 1, 1, tzinfo=dt.UTC))


def test_an_exited_process_is_not() -> None:
    exited = subprocess.Popen(["true"])
    exited.wait()
    assert not worker_alive(exited.pid, utcnow())


def test_the_end_retry_delay_doubles_to_its_cap_however_long_the_outage() -> None:
    assert [end_retry_delay(n) for n in (1, 2, 3)] == [END_RETRY_FIRST, 2 * END_RETRY_FIRST, 4 * END_RETRY_FIRST]
    assert end_retry_delay(20) == end_retry_delay(1025) == end_retry_delay(10**6) == END_RETRY_MAX
