"""``wmproxy_proxy_renewals_total`` and ``wmproxy_purges_total`` on each backend: counters
(Prometheus reads a step down as a reset), so the rows the purger and the renewal worker
delete leave their counts in running totals (``service_meta``) written in the same transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from tests.admin.support import days_ago, initialised_runtime, job_row, sealed_rows
from tests.conftest import Pki
from wmproxy.config import PurgeSettings
from wmproxy.domain import JobState, utcnow
from wmproxy.monitoring.metrics import scrape_registry
from wmproxy.services.purge import purge
from wmproxy.services.renewal.expiry import deregister_unused
from wmproxy.services.runtime import Runtime
from wmproxy.store.housekeeping import SqlHousekeepingStore
from wmproxy.store.schema import ProxyRenewal, PurgedJob

ALICE = "/C=XX/O=wmproxy-demo/OU=Users/CN=Alice"
BASE = "https://localhost:7443/"


@pytest.fixture(params=["sqlite", "postgresql"])
def rt(request: pytest.FixtureRequest, tmp_path: Path, pki: Pki) -> Iterator[Runtime]:
    yield from initialised_runtime(request.param, tmp_path, pki)


def counters(rt: Runtime, tmp_path: Path) -> tuple[float, float, float]:
    """(renewals ok, renewals failed, purges) as a scrape of ``wmproxy-metrics`` reads them."""
    from prometheus_client import generate_latest

    text = generate_latest(scrape_registry(rt, tmp_path / "metrics")).decode()
    got = {(s.name, tuple(s.labels.values())): s.value
           for family in text_string_to_metric_families(text) for s in family.samples}
    return (got[("wmproxy_proxy_renewals_total", ("ok",))], got[("wmproxy_proxy_renewals_total", ("failed",))],
            got[("wmproxy_purges_total", ())])


def renewal(delegation_id: str, renewals: int, attempts: int) -> ProxyRenewal:
    return ProxyRenewal(owner_dn=ALICE, delegation_id=delegation_id, myproxy_server="myproxy:7512",
                        created_at=days_ago(20), updated_at=days_ago(9), attempts=attempts, renewals=renewals)


def test_removed_rows_keep_their_counts(rt: Runtime, tmp_path: Path) -> None:
    now = utcnow()
    with rt.uow() as uow:
        # destroyed by the user (the purger's orphan), expired unused (the purger's delegation),
        # unused while its delegation lives (the renewal worker's deregistration)
        uow.session.add(renewal("destroyed", 40, 42))
        delegation, _request = sealed_rows(rt.sealer, ALICE, "expired", not_after=days_ago(10))
        uow.session.add(delegation)
        uow.session.add(renewal("expired", 5, 9))
        delegation, _request = sealed_rows(rt.sealer, ALICE, "unused", not_after=now + dt.timedelta(hours=6))
        uow.session.add(delegation)
        uow.session.add(renewal("unused", 3, 3))
        for name, state in (("done", JobState.DONE.value), ("cleared", JobState.CLEARED.value)):
            uow.session.add(job_row(BASE + name, state, created=days_ago(20), updated=days_ago(8),
                                    delegation_id="destroyed"))
    seen = [counters(rt, tmp_path)]
    assert seen[0] == (48, 6, 1)  # one job jobPurge cleared
    with rt.uow() as uow:
        assert deregister_unused(uow, now) == 3
    seen.append(counters(rt, tmp_path))
    with rt.uow() as uow:
        uow.session.add_all([renewal("destroyed", 1, 1), renewal("expired", 0, 2)])  # registered again
    report = purge(rt, now=now)
    assert sorted(report.renewals) == [(ALICE, "destroyed")] and report.delegations == [(ALICE, "expired")]
    assert len(report.jobs) == 2
    seen.append(counters(rt, tmp_path))
    assert seen[-1] == (49, 8, 2)  # the Cleared job now a tombstone, the Done one purged
    rt.settings = dataclasses.replace(rt.settings, purge=PurgeSettings(tombstone_age=86400))
    assert purge(rt, now=now + dt.timedelta(days=2)).tombstones == 2
    seen.append(counters(rt, tmp_path))
    assert seen[-1] == (49, 8, 2)
    with rt.uow() as uow:
        assert uow.session.scalar(select(PurgedJob.job_id)) is None
        assert uow.session.scalar(select(ProxyRenewal.id)) is None
        uow.session.add(job_row(BASE + "later", JobState.CLEARED.value, created=days_ago(1)))
    assert counters(rt, tmp_path) == (49, 8, 3)
    assert all(a <= b for earlier, later in itertools.pairwise(seen)
               for a, b in zip(earlier, later, strict=True)), seen


def test_a_removal_rolled_back_counts_nothing(rt: Runtime, tmp_path: Path) -> None:
    with rt.uow() as uow:
        uow.session.add(renewal("destroyed", 7, 8))

    def fail_after_the_delete() -> None:
        with rt.uow() as uow:
            assert SqlHousekeepingStore(uow.session).remove_renewal(ALICE, "destroyed", [JobState.RUNNING.value])
            raise RuntimeError("the transaction fails after the delete")

    with pytest.raises(RuntimeError, match=r"^the transaction fails after the delete$"):
        fail_after_the_delete()
    assert counters(rt, tmp_path)[:2] == (7, 1)
    with rt.uow() as uow:
        assert SqlHousekeepingStore(uow.session).remove_renewal(ALICE, "destroyed", [JobState.RUNNING.value])
    with rt.uow() as uow:  # the next transaction of the same (kept) session notes nothing more
        uow.session.add(renewal("again", 0, 0))
    assert counters(rt, tmp_path)[:2] == (7, 1)
    with rt.uow() as uow:
        assert SqlHousekeepingStore(uow.session).meta("removed_renewals") == "7"
