"""Retire a pooled database connection after a transaction that wrote big JDL texts (issue 14).

A driver keeps memory sized by the biggest statement its connection has sent, for as long as
the connection lives: SQLite's statement cache keeps the values last bound to each cached
INSERT (tens of MB after the parent row of a 10,000-node collection, whose registered JDL lists
every node), and libpq keeps its grown send buffer (about 17 MB after the same request). A
pooled connection lives as long as the worker, so each worker kept that high-water mark.

:func:`retire_connection_after` counts the JDL bytes a transaction writes; once they reach
:data:`RETIRE_BYTES`, the session's connection is detached from its pool: the transaction goes
on unchanged on it, the driver connection is closed when the session lets it go (commit or
rollback), and the pool opens a fresh one for a later checkout. An ordinary job (a few kB of
JDL) never retires a connection.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.pool import QueuePool

from wmproxy.store.schema import Job

#: JDL bytes a transaction may write before its connection is retired (1 MiB: a collection of
#: some 2,000 nodes; an ordinary job writes a few kB).
RETIRE_BYTES = 1024 * 1024

#: ``Session.info`` key: (the transaction counted, JDL bytes it wrote so far, retired already).
_COUNT = "wmproxy.store.retire"


def jdl_bytes(jobs: Iterable[Job]) -> int:
    """Characters of the original and registered JDL texts of ``jobs`` (unset ones count 0)."""
    return sum(len(job.jdl_original or "") + len(job.jdl_registered or "") for job in jobs)


def retire_connection_after(session: Session, jobs: Iterable[Job]) -> None:
    """Count the JDL of ``jobs``, which this transaction of ``session`` writes, and detach the
    session's pooled connection once the transaction has written :data:`RETIRE_BYTES` or more.

    Only a pool that keeps connections (``QueuePool``: SQLite files, PostgreSQL) is concerned;
    other pools (an in-memory SQLite database's single connection, ``NullPool``) are left alone.
    Detaching changes nothing for the transaction in progress; it never raises by itself
    (opening the connection, if the session had none yet, may raise what a flush would).
    """
    retire_after_bytes(session, jdl_bytes(jobs))


def retire_after_bytes(session: Session, written: int) -> None:
    """:func:`retire_connection_after` for ``written`` characters of JDL text this
    transaction of ``session`` writes (a job inserted from its column values)."""
    transaction: SessionTransaction | None = session.get_transaction()
    counted, total, retired = session.info.get(_COUNT, (None, 0, False))
    if counted is not transaction:
        total, retired = 0, False
    total += written
    if not retired and total >= RETIRE_BYTES:
        connection = session.connection()
        if isinstance(connection.engine.pool, QueuePool):
            connection.detach()
            retired = True
    session.info[_COUNT] = (transaction, total, retired)
