"""SqlJobStore.lock_all: several jobs locked in at most two statements, in the order of
SqlJobStore.get (a compound job before its nodes), after which get(for_update) and get()
of those jobs issue no statement. Both databases; the locks themselves on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from tests.store.locking_support import family, job_row
from wmproxy.store import JobLockedError, UnitOfWork


class _Statements:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.engine = factory.kw["bind"]
        self.seen: list[str] = []

    def __enter__(self) -> list[str]:
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self.seen

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, _conn: object, _cursor: object, statement: str, *_args: object) -> None:
        self.seen.append(statement)


@pytest.fixture
def jobs(factory: sessionmaker[Session], request: pytest.FixtureRequest) -> list[str]:
    name = request.node.name.replace("[", "-").replace("]", "")
    parent, node = family(factory, name)
    single = f"https://h:9000/{name}-single"
    with UnitOfWork(factory) as uow:
        uow.jobs.add(job_row(single))
    return [node, single, parent]


def test_lock_all_selects_once_per_level_and_get_then_selects_nothing(factory: sessionmaker[Session],
                                                                         jobs: list[str]) -> None:
    node, single, parent = jobs
    with UnitOfWork(factory) as uow:
        with _Statements(factory) as seen:
            locked = uow.jobs.lock_all([node, single, "https://h:9000/unknown", node])
        assert set(locked) == {node, single}
        postgres = uow.session.get_bind().dialect.name == "postgresql"
        selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == (2 if postgres else 1)
        assert all("FOR UPDATE" in s for s in selects) is postgres
        with _Statements(factory) as seen:
            assert uow.jobs.get(node, for_update=True) is locked[node]
            assert uow.jobs.get(single) is locked[single]
            if postgres:
                assert uow.jobs.get(parent, for_update=True) is not None  # locked with its node
        assert [s for s in seen if s.lstrip().upper().startswith("SELECT")] == []


@pytest.mark.postgresql_only
def test_lock_all_holds_the_nodes_their_compound_jobs_and_the_others(factory: sessionmaker[Session],
                                                                       jobs: list[str]) -> None:
    node, single, parent = jobs
    with UnitOfWork(factory) as holder:
        holder.jobs.lock_all([single, node])
        for job_id in (node, single, parent):
            with pytest.raises(JobLockedError), UnitOfWork(factory) as other:
                other.jobs.get(job_id, for_update=True, nowait=True)
    with UnitOfWork(factory) as uow:  # released at commit
        assert set(uow.jobs.lock_all([node, single])) == {node, single}
