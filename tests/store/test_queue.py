"""The execution queue on a real database (SQLite file and PostgreSQL), created by the migrations."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from wmproxy.domain import utcnow
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job


def _job(job_id: str) -> Job:
    now = utcnow()
    return Job(id=job_id, owner_dn="/CN=x", delegation_id="d", state="Waiting", jdl_original="[]",
               jdl_registered="[]", sandbox_dir=job_id, created_at=now, updated_at=now)


def _fill(factory, prefix: str, count: int) -> list[str]:
    ids = [f"https://h:9000/{prefix}{i:03d}" for i in range(count)]
    with UnitOfWork(factory) as uow:
        for job_id in ids:
            uow.jobs.add(_job(job_id))
            uow.queue.enqueue(job_id, "start", utcnow())
    return ids


def test_migrations_reach_head(factory) -> None:
    with factory() as session:
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        from wmproxy.admin import MIGRATIONS_DIR

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        head = ScriptDirectory.from_config(config).get_current_head()
        assert session.execute(sa.text("select version_num from alembic_version")).scalar_one() == head


def test_claims_in_order_and_only_once(factory) -> None:
    ids = _fill(factory, "order", 3)
    claimed = []
    for _ in range(3):
        with UnitOfWork(factory) as uow:
            request = uow.queue.claim_next("w", utcnow(), command="start")
            claimed.append(request.job_id)
    assert claimed[:3] == ids
    with UnitOfWork(factory) as uow:
        assert uow.queue.claim_next("w", utcnow(), command="start") is None


def test_a_batch_claim_takes_the_oldest_and_gives_back_what_it_releases(factory) -> None:
    ids = _fill(factory, "batch", 5)
    with UnitOfWork(factory) as uow:
        requests = uow.queue.claim_many("w", utcnow(), command="start", limit=3)
        assert [r.job_id for r in requests] == ids[:3]
        assert {r.claimed_by for r in requests} == {"w"}
        uow.queue.release(requests[1:])  # acted on the first one only
    with factory() as session:
        claimed = dict(session.execute(sa.text(
            "select job_id, claimed_by from execution_requests where job_id like '%batch%'")).all())
    assert claimed == {ids[0]: "w", ids[1]: None, ids[2]: None, ids[3]: None, ids[4]: None}
    with UnitOfWork(factory) as uow:  # the released ones are due again, in their old order
        assert [r.job_id for r in uow.queue.claim_many("w2", utcnow(), command="start", limit=10)] == ids[1:]


def test_a_claim_in_progress_is_never_taken_by_another_worker(factory, database_url: str) -> None:
    """While one worker's claim is uncommitted, another worker gets a different request:
    on PostgreSQL at once (SKIP LOCKED), on SQLite after waiting for the holder's write lock."""
    _fill(factory, "race", 2)
    first_claimed = threading.Event()
    release = threading.Event()
    results: dict[str, str | None] = {}

    def holder() -> None:
        with UnitOfWork(factory) as uow:
            request = uow.queue.claim_next("holder", utcnow(), command="start")
            results["holder"] = request.job_id if request else None
            first_claimed.set()
            assert release.wait(120), "the test never released the holder"

    thread = threading.Thread(target=holder)
    thread.start()
    assert first_claimed.wait(120)
    other: list[str | None] = []

    def second() -> None:
        with UnitOfWork(factory) as uow:
            request = uow.queue.claim_next("second", utcnow(), command="start")
            other.append(request.job_id if request else None)

    contender = threading.Thread(target=second)
    contender.start()
    if database_url.startswith("postgresql"):
        contender.join(120)  # answers while the holder still holds its claim
        assert not contender.is_alive() and thread.is_alive()
    else:
        contender.join(0.5)  # blocked on the holder's write lock; give it time to get there
    release.set()
    thread.join(120)
    contender.join(120)
    assert not thread.is_alive() and not contender.is_alive()
    assert results["holder"] is not None and other[0] is not None
    assert results["holder"] != other[0]


def test_many_concurrent_claimers_take_each_request_exactly_once(factory) -> None:
    ids = _fill(factory, "many", 40)
    taken: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while True:
            with UnitOfWork(factory) as uow:
                request = uow.queue.claim_next(name, utcnow(), command="start")
                if request is None:
                    return
                uow.queue.complete(request, utcnow())
                with lock:
                    taken.append(request.job_id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    mine = [t for t in taken if t in set(ids)]
    assert sorted(mine) == sorted(ids)
