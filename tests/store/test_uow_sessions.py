"""A unit of work takes a closed session its thread kept instead of making one (wmproxy/store/uow.py,
issue 14): never one another unit of work of the thread still uses, never one of another thread,
and nothing a transaction noted on its session (``Session.info``) reaches the next one. Both
databases; the queue's notification per transaction on PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.store.locking_support import job_row
from wmproxy.domain import utcnow
from wmproxy.store import UnitOfWork
from wmproxy.store.jobs import QUEUE_CHANNEL


def test_a_thread_takes_the_session_its_last_unit_of_work_closed(factory: sessionmaker[Session]) -> None:
    with UnitOfWork(factory) as first:
        used = first.session
    with UnitOfWork(factory) as second:
        assert second.session is used
        assert second.session.in_transaction()
    assert not used.in_transaction()


def test_a_unit_of_work_inside_another_has_its_own_session(factory: sessionmaker[Session]) -> None:
    with UnitOfWork(factory) as outer:  # (it writes after the inner one: SQLite has one writer at a time)
        with UnitOfWork(factory) as inner:
            assert inner.session is not outer.session
            inner.jobs.add(job_row("https://h:9000/nested-inner"))
        assert outer.session.in_transaction()
        outer.jobs.add(job_row("https://h:9000/nested-outer"))
    with UnitOfWork(factory) as check:
        assert check.jobs.get("https://h:9000/nested-outer") is not None
        assert check.jobs.get("https://h:9000/nested-inner") is not None


def test_threads_do_not_share_sessions(factory: sessionmaker[Session]) -> None:
    with UnitOfWork(factory) as here:
        mine = here.session
    seen: list[Session] = []

    def other() -> None:
        for _ in range(2):
            with UnitOfWork(factory) as there:
                seen.append(there.session)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen[0] is seen[1]  # the other thread reuses its own
    assert mine not in seen
    with UnitOfWork(factory) as again:
        assert again.session is mine


def test_what_a_transaction_noted_on_its_session_is_gone_in_the_next(factory: sessionmaker[Session]) -> None:
    with UnitOfWork(factory) as first:
        first.session.info["noted"] = True
    with UnitOfWork(factory) as second:
        assert "noted" not in second.session.info


def test_a_failed_unit_of_work_leaves_a_usable_session(factory: sessionmaker[Session]) -> None:
    failed = UnitOfWork(factory)

    def refused() -> None:
        with failed:
            failed.jobs.add(job_row("https://h:9000/rolled-back"))
            failed.jobs.flush()
            raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match=r"^refused$"):
        refused()
    with UnitOfWork(factory) as after:
        assert after.session is failed.session
        assert after.jobs.get("https://h:9000/rolled-back") is None


@pytest.mark.postgresql_only
def test_each_transaction_that_queues_a_request_notifies(factory: sessionmaker[Session], database_url: str) -> None:
    """The queue notes on the session that its transaction has notified (``jobs._NOTIFIED``): a
    session taken again must notify again."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"LISTEN {QUEUE_CHANNEL}")
        for name in ("notify-1", "notify-2"):
            job_id = f"https://h:9000/{name}"
            with UnitOfWork(factory) as uow:
                uow.jobs.add(job_row(job_id))
                uow.queue.insert(job_id, "start", utcnow())
        received: list[Any] = list(listener.notifies(timeout=30, stop_after=2))
    assert [n.channel for n in received] == [QUEUE_CHANNEL, QUEUE_CHANNEL]
