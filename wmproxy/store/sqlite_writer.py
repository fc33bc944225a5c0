"""One writing transaction at a time per SQLite database file in a process, queued on a lock.

Every transaction of the service's SQLite engine begins with ``BEGIN IMMEDIATE`` (it takes the
database's write lock at once, ``wmproxy.store.engine``). When two request threads of one
gunicorn worker begin at the same moment, SQLite makes the second wait in its busy handler, which
polls: it sleeps 1, 2, 5, 10... ms and tries again, whatever the first transaction's length
(a few hundred microseconds here). :class:`WriterConnection` makes that second writer wait on a
lock of the process instead, woken when the first one commits or rolls back: the wait is as
long as the other transaction, and the database file's own lock (other processes, the busy
timeout) stays as it was. A connection that holds the lock is one inside a transaction it began
with :func:`begin_immediate`; it gives the lock back when that transaction ends (``commit``,
``rollback``, ``close``), so a connection checked in after its transaction holds nothing.

Waiting for the lock counts against the connection's busy ``timeout``, as SQLite's own wait
does, and ends the same way: ``sqlite3.OperationalError("database is locked")``. After a fork
the child starts with new locks (a parent's thread may have held one).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def _reset_after_fork() -> None:
    global _LOCKS_LOCK  # noqa: PLW0603 - a lock a parent's thread held must not reach the child
    _LOCKS_LOCK = threading.Lock()
    _LOCKS.clear()


os.register_at_fork(after_in_child=_reset_after_fork)


def _lock_of(key: str) -> threading.Lock:
    lock = _LOCKS.get(key)
    if lock is None:
        with _LOCKS_LOCK:
            lock = _LOCKS.setdefault(key, threading.Lock())
    return lock


class WriterConnection(sqlite3.Connection):
    """A ``sqlite3`` connection (``sqlite3.connect(..., factory=WriterConnection)``) whose
    :meth:`begin_immediate` first takes its process's lock of the database file."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._key = os.path.abspath(os.fsdecode(database))
        self._wait = float(kwargs.get("timeout", args[0] if args else 5.0))
        self._held: threading.Lock | None = None

    def begin_immediate(self) -> None:
        """``BEGIN IMMEDIATE`` once no other connection of this process to the file is in a
        transaction begun here (a connection already holding the lock begins at once)."""
        if self._held is None:
            lock = _lock_of(self._key)
            if not lock.acquire(timeout=self._wait):
                raise sqlite3.OperationalError("database is locked")
            self._held = lock
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._release()
            raise

    def commit(self) -> None:
        self._end(super().commit)

    def rollback(self) -> None:
        self._end(super().rollback)

    def _end(self, end: Callable[[], None]) -> None:
        """``end()`` (commit, rollback), then the lock given back if no transaction is left open."""
        try:
            end()
        finally:
            if self._held is not None and not self.in_transaction:
                self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()

    def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.release()


def begin_immediate(driver: Any) -> None:
    """``BEGIN IMMEDIATE`` on the ``sqlite3`` connection ``driver``, through the process's lock
    when it is a :class:`WriterConnection`."""
    if isinstance(driver, WriterConnection):
        driver.begin_immediate()
    else:
        driver.execute("BEGIN IMMEDIATE")
