"""What wakes an idle execution worker before its next poll tick.

* **PostgreSQL**: the worker ``LISTEN``\\ s on
  :data:`~wmproxy.store.jobs.QUEUE_CHANNEL` on a connection of its own (autocommit,
  outside the pool); every transaction that queues a start or cancel request notifies
  the channel (:meth:`~wmproxy.store.jobs.SqlExecutionQueue.enqueue`), so a started
  job is claimed as soon as jobStart commits. A listening connection that breaks is
  reopened at the next wait; meanwhile the worker polls.
* **Every database**: a job wrapper the worker spawned (a child process) wakes it when
  it exits, through a pidfd (Linux ≥ 5.3), so a finished job is reaped at once. A wrapper
  that is not its child (forked by a zygote, or adopted) is watched for its *reaping*
  instead (``reaped`` of :meth:`Wakeup.watch`: the pidfd's ``POLLHUP``, which the kernel
  signals when the process is released), because the worker learns how it ended only then
  (:func:`wmproxy.execution.processes.exit_status`): a pidfd is readable from the exit on,
  so a zombie its parent had not reaped yet woke the worker at every wait, a busy loop for
  as long as the reaping took (up to ``local.REAP_WAIT``, 10 s).
* **SQLite** (a database file, Linux): the worker watches the directory holding the file
  with inotify (:mod:`inotify_simple`) and is woken when the file or its ``-wal`` /
  ``-journal`` sibling is written (``IN_MODIFY``) or created (``IN_CREATE``, ``IN_MOVED_TO``:
  the WAL is deleted when the last connection closes and created anew by the next one): every
  commit of another process writes one of them. A directory watch, not a file watch, so
  that a recreated WAL is still seen. The worker's own commits write them too: the events
  that arrived since the previous wait are read (and dropped) when a wait begins, so only
  commits made during the wait wake it. As those dropped events may also hold another
  process's commit that landed after the caller's last poll, such a wait lasts at most its
  ``recheck`` seconds (the old idle poll). Without inotify (not Linux, the watch limit
  reached, an in-memory database, a directory that cannot be watched) the worker polls the
  queue every ``poll_interval × IDLE_POLL_FRACTION`` seconds while it has room for a job.
  Commits wake it at most once every :data:`COMMIT_WAKE_GAP` seconds, so that a busy service
  does not turn the idle worker into a loop of polls.

Nothing here is a correctness mechanism: a lost notification only delays a job until
the next poll.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

try:
    from inotify_simple import INotify
    from inotify_simple import flags as inotify_flags
except ImportError:  # pragma: no cover - a declared dependency of the server extra
    INotify = None

from wmproxy.store.jobs import QUEUE_CHANNEL

log = logging.getLogger(__name__)

#: Seconds between two looks at the stop event while waiting.
STOP_CHECK = 0.1
#: Seconds that at least separate two wake-ups by SQLite commits (at most 50 a second).
COMMIT_WAKE_GAP = 0.02
#: SQLite files whose change means a commit: the database and its journals (never ``-shm``,
#: which is written through a memory map on every transaction, read-only ones too).
_DB_SUFFIXES = ("", "-wal", "-journal")


class Wakeup:
    """Waits up to a timeout for a queue notification or the exit of a watched process.

    Args:
        engine: the worker's database engine; LISTEN is used when it is PostgreSQL, an
            inotify watch of the database's directory when it is an SQLite file.
    """

    def __init__(self, engine: Engine | None) -> None:
        self.engine = engine if engine is not None and engine.dialect.name == "postgresql" else None
        self._conn: Any = None  # psycopg.Connection while listening
        self._pidfds: dict[int, int] = {}  # pid -> pidfd
        self._reaped: set[int] = set()  # the pids among them watched for their reaping only
        self.notified = False  # a queue notification arrived since the caller last cleared this
        self._db_file = sqlite_file(engine) if engine is not None and engine.dialect.name == "sqlite" else None
        self._db_names = frozenset(self._db_file.name + suffix for suffix in _DB_SUFFIXES) if self._db_file else ()
        self._inotify: Any = None  # inotify_simple.INotify while watching the SQLite directory
        self._watch_tried = engine is None or engine.dialect.name != "sqlite"
        self._last_commit_wake = -COMMIT_WAKE_GAP

    @property
    def listening(self) -> bool:
        """Whether a queued request can wake the worker now (LISTEN, or the SQLite watch)."""
        return self._conn is not None or self._inotify is not None

    def _watch_database(self) -> None:
        """Watch the SQLite database's directory (once; on failure, say so once and poll)."""
        if self._watch_tried:
            return
        self._watch_tried = True
        if self._db_file is None:
            log.info("an in-memory SQLite database cannot be watched: polling the execution queue")
            return
        if INotify is None:
            log.warning("inotify_simple is not installed: polling the execution queue")
            return
        try:
            inotify = INotify(nonblocking=True)
        except (OSError, AttributeError) as exc:  # AttributeError: a libc without inotify (not Linux)
            log.warning("inotify is not available (polling the execution queue instead): %s", exc)
            return
        try:
            inotify.add_watch(self._db_file.parent, inotify_flags.MODIFY | inotify_flags.CREATE
                              | inotify_flags.MOVED_TO | inotify_flags.ONLYDIR)
        except OSError as exc:  # ENOENT, EACCES, ENOSPC (the watch limit)
            inotify.close()
            log.warning("cannot watch %s for commits (polling the execution queue instead): %s",
                        self._db_file.parent, exc)
            return
        self._inotify = inotify

    def _commits(self) -> bool:
        """Read the pending inotify events (never blocks); True if one is a commit's (or the
        queue overflowed). A lost watch (its directory removed) is given up: the worker polls."""
        try:
            events = self._inotify.read(timeout=0)
        except OSError as exc:
            log.warning("the SQLite watch failed (polling the execution queue instead): %s", exc)
            self._close_watch()
            return True
        found = False
        for event in events:
            if event.mask & inotify_flags.Q_OVERFLOW or event.name in self._db_names:
                found = True
            elif event.mask & inotify_flags.IGNORED:
                log.warning("%s is no longer watched (polling the execution queue instead)",
                            self._db_file.parent if self._db_file else "the database directory")
                self._close_watch()
                return True
        return found

    def _close_watch(self) -> None:
        if self._inotify is not None:
            with contextlib.suppress(OSError):
                self._inotify.close()
            self._inotify = None

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

    def watch(self, pids: Iterable[int], reaped: Iterable[int] = ()) -> None:
        """Watch exactly these pids (others are forgotten, their pidfds closed): ``pids`` wake
        the wait when they exit (the worker's children, which it reaps itself), ``reaped`` when
        their parent has reaped them (``POLLHUP``; an exit alone, a zombie, wakes nothing)."""
        self._reaped = set(reaped)
        wanted = set(pids) | self._reaped
        for pid in set(self._pidfds) - wanted:
            os.close(self._pidfds.pop(pid))
        for pid in wanted - set(self._pidfds):
            try:
                self._pidfds[pid] = os.pidfd_open(pid)
            except (OSError, AttributeError):  # gone already (then the next step reaps it), or no pidfd
                continue

    def wait(self, timeout: float, stop: threading.Event | None = None, *, gather: float = 0.0,
             recheck: float | None = None) -> bool:
        """Block up to ``timeout`` seconds, or until ``stop`` is set (looked at every
        :data:`STOP_CHECK` seconds); True when woken by a notification, an SQLite commit
        of another process or an exit.

        Args:
            gather: seconds to keep waiting, once a watched process has exited, for the
                others to exit too (returning as soon as all have), so that the caller
                records several ends in one transaction; 0 returns at the first exit.
            recheck: seconds to wait at most when the watched SQLite database was written
                since the previous wait (this process's commits, or another's that may have
                landed after the caller's last poll); None waits ``timeout``.
        """
        self._listen()
        self._watch_database()
        if self._inotify is not None:
            changed = self._commits()
            if self._inotify is None:
                return True  # the watch was lost: a poll now, then the caller polls at its idle rate
            if changed and recheck is not None:
                timeout = min(timeout, recheck)
        poller = select.poll()
        # POLLHUP, always reported, is a released (reaped) process; POLLIN an exit
        pidfds = {fd: 0 if pid in self._reaped else select.POLLIN for pid, fd in self._pidfds.items()}
        for fd, events in pidfds.items():
            poller.register(fd, events)
        if self._conn is not None:
            poller.register(self._conn.fileno(), select.POLLIN)
        watch_fd = self._inotify.fileno() if self._inotify is not None else None
        if watch_fd is not None:
            poller.register(watch_fd, select.POLLIN)
        watching = bool(pidfds) or self._conn is not None or watch_fd is not None
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                return False
            slice_ = min(remaining, STOP_CHECK)
            if not watching:
                if stop is not None:
                    stop.wait(slice_)
                else:
                    time.sleep(slice_)
                continue
            ready = _ready(poller, slice_)
            if self._conn is not None:
                if self._conn.fileno() in ready:
                    self.notified = True
                self._drain()
            if watch_fd is not None and watch_fd in ready:
                ready.remove(watch_fd)
                if self._commits():  # (or the watch was lost: one poll, then polling)
                    self.notified = True
                    self._space_commit_wakes(deadline)
                    return True
            if ready:
                if gather > 0 and not ready.isdisjoint(pidfds):
                    self._gather({fd: events for fd, events in pidfds.items() if fd not in ready}, gather)
                return True

    def _space_commit_wakes(self, deadline: float) -> None:
        """Return no sooner than :data:`COMMIT_WAKE_GAP` seconds after the previous wake-up by
        a commit (nor later than ``deadline``)."""
        now = time.monotonic()
        pause = min(self._last_commit_wake + COMMIT_WAKE_GAP, deadline) - now
        if pause > 0:
            time.sleep(pause)
        self._last_commit_wake = time.monotonic()

    @staticmethod
    def _gather(pending: dict[int, int], seconds: float) -> None:
        """Wait up to ``seconds`` for every pidfd of ``pending`` to become ready (each for what it
        is watched for: ``POLLIN`` an exit, 0 its reaping only)."""
        deadline = time.monotonic() + seconds
        while pending and (remaining := deadline - time.monotonic()) > 0:
            poller = select.poll()
            for fd, events in pending.items():
                poller.register(fd, events)
            ready = _ready(poller, remaining)
            if not ready:
                return
            pending = {fd: events for fd, events in pending.items() if fd not in ready}

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
        """Stop listening and watching; close every pidfd."""
        self._close_conn()
        self._close_watch()
        self.watch(())


def _ready(poller: select.poll, seconds: float) -> set[int]:
    """The descriptors of ``poller`` ready within ``seconds`` (none on an error)."""
    try:
        return {fd for fd, _events in poller.poll(max(0, math.ceil(seconds * 1000)))}
    except (OSError, ValueError):
        return set()


def sqlite_file(engine: Engine) -> Path | None:
    """The absolute path of an SQLite engine's database file; None for an in-memory database
    (``:memory:``, an empty name, ``mode=memory``). A relative name is taken from the current
    directory, as SQLite does; a ``file:`` URI (``?uri=true``) loses its scheme."""
    url = engine.url
    name = url.database or ""
    if url.query.get("uri") == "true":
        name = name.removeprefix("file:")
    if name in ("", ":memory:") or url.query.get("mode") == "memory":
        return None
    return Path(os.path.abspath(name))
