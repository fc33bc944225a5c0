"""What wakes an idle execution worker before its next poll tick.

* **PostgreSQL**: the worker ``LISTEN``\\ s on
  :data:`~wmproxy.store.jobs.QUEUE_CHANNEL` on a connection of its own (autocommit,
  outside the pool); every transaction that queues a start or cancel request notifies
  the channel (:meth:`~wmproxy.store.jobs.SqlExecutionQueue.enqueue`), so a started
  job is claimed as soon as jobStart commits. A listening connection that breaks is
  reopened at the next wait; meanwhile the worker polls.
* **Every database**: a job wrapper the worker spawned (a child process) wakes it when
  it exits, through a pidfd (Linux ≥ 5.3), so a finished job is reaped at once.
* **SQLite** has no notifications: the worker polls the queue (a cheap indexed query)
  every ``poll_interval × IDLE_POLL_FRACTION`` seconds while it has room for a job.

Nothing here is a correctness mechanism: a lost notification only delays a job until
the next poll.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine

from wmproxy.store.jobs import QUEUE_CHANNEL

log = logging.getLogger(__name__)

#: Seconds between two looks at the stop event while waiting.
STOP_CHECK = 0.1


class Wakeup:
    """Waits up to a timeout for a queue notification or the exit of a watched process.

    Args:
        engine: the worker's database engine; LISTEN is used when it is PostgreSQL.
    """

    def __init__(self, engine: Engine | None) -> None:
        self.engine = engine if engine is not None and engine.dialect.name == "postgresql" else None
        self._conn: Any = None  # psycopg.Connection while listening
        self._pidfds: dict[int, int] = {}  # pid -> pidfd
        self.notified = False  # a queue notification arrived since the caller last cleared this

    @property
    def listening(self) -> bool:
        """Whether queue notifications can wake the worker now."""
        return self._conn is not None

    def _listen(self) -> None:
        if self.engine is None or self._conn is not None:
            return
        try:
            raw = self.engine.raw_connection()
            conn: Any = raw.driver_connection
            raw.detach()  # never handed back to the pool: it stays in LISTEN
            conn.rollback()
            conn.autocommit = True
            conn.execute(f"LISTEN {QUEUE_CHANNEL}")
        except Exception as exc:  # noqa: BLE001 - the worker polls meanwhile
            log.warning("cannot LISTEN for queued jobs (polling instead): %s", exc)
            return
        self._conn = conn

    def watch(self, pids: Iterable[int]) -> None:
        """Watch exactly these child pids (others are forgotten, their pidfds closed)."""
        wanted = set(pids)
        for pid in set(self._pidfds) - wanted:
            os.close(self._pidfds.pop(pid))
        for pid in wanted - set(self._pidfds):
            try:
                self._pidfds[pid] = os.pidfd_open(pid)
            except (OSError, AttributeError):  # gone already (then the next step reaps it), or no pidfd
                continue

    def wait(self, timeout: float, stop: threading.Event | None = None, *, gather: float = 0.0) -> bool:
        """Block up to ``timeout`` seconds, or until ``stop`` is set (looked at every
        :data:`STOP_CHECK` seconds); True when woken by a notification or an exit.

        Args:
            gather: seconds to keep waiting, once a watched process has exited, for the
                others to exit too (returning as soon as all have), so that the caller
                records several ends in one transaction; 0 returns at the first exit.
        """
        self._listen()
        pidfds = list(self._pidfds.values())
        fds = list(pidfds)
        if self._conn is not None:
            fds.append(self._conn.fileno())
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                return False
            slice_ = min(remaining, STOP_CHECK)
            if not fds:
                if stop is not None:
                    stop.wait(slice_)
                else:
                    time.sleep(slice_)
                continue
            try:
                ready, _, _ = select.select(fds, [], [], slice_)
            except (OSError, ValueError):
                ready = []
            if self._conn is not None:
                if self._conn.fileno() in ready:
                    self.notified = True
                self._drain()
            if ready:
                if gather > 0 and any(fd in pidfds for fd in ready):
                    self._gather([fd for fd in pidfds if fd not in ready], gather)
                return True

    @staticmethod
    def _gather(pending: list[int], seconds: float) -> None:
        """Wait up to ``seconds`` for every pidfd of ``pending`` to become ready."""
        deadline = time.monotonic() + seconds
        while pending and (remaining := deadline - time.monotonic()) > 0:
            try:
                ready, _, _ = select.select(pending, [], [], remaining)
            except (OSError, ValueError):
                return
            pending = [fd for fd in pending if fd not in ready]

    def _drain(self) -> None:
        try:
            for _ in self._conn.notifies(timeout=0.0):
                pass
        except Exception as exc:  # noqa: BLE001 - a broken connection is reopened at the next wait
            log.warning("the LISTEN connection broke (%s); reopening it", exc)
            self._close_conn()

    def _close_conn(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Stop listening and close every pidfd."""
        self._close_conn()
        self.watch(())
