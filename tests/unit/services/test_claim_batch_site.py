"""The site's CEs read once per claim batch (matchmaking.SiteView): the built-in CE's running
and waiting counts still follow the batch's own claims, job by job, as a query per job did."""

from __future__ import annotations

from tests.unit.services.brokering_support import BUILTIN, RankedRuntime, job_row, submit
from wmproxy.domain import Principal, utcnow
from wmproxy.services.brokering import NO_MATCH
from wmproxy.services.execution import claim_starts
from wmproxy.services.matchmaking import SiteView, site_ces


def test_a_batch_sees_the_cpus_its_own_claims_took(broker_rt: RankedRuntime, alice: Principal) -> None:
    rt = broker_rt()  # the built-in CE has [execution] max_running = 4 CPUs
    ids = [submit(rt, alice, "Requirements = other.GlueCEStateFreeCPUs > 0;") for _ in range(6)]
    orders = claim_starts(rt, "w1", {"local": 10}, limit=6)
    assert [order.job_id for order in orders] == ids[:4]
    assert [job_row(rt, job_id) for job_id in ids[4:]] == [("Waiting", NO_MATCH, None)] * 2


def test_the_counts_kept_by_the_view_are_those_a_new_query_reads(broker_rt: RankedRuntime,
                                                                 alice: Principal) -> None:
    rt = broker_rt()
    for _ in range(3):
        submit(rt, alice)
    with rt.uow() as uow:
        view = SiteView(rt, uow, utcnow())
        [before] = view.ces()
        assert (before["GlueCEStateRunningJobs"], before["GlueCEStateWaitingJobs"]) == (0, 3)
    [order] = claim_starts(rt, "w1", {"local": 1}, limit=1)
    assert order.ce_id == BUILTIN
    with rt.uow() as uow:
        [live] = site_ces(rt, uow)
    view.claimed(BUILTIN)
    [kept] = view.ces()
    names = ("GlueCEStateRunningJobs", "GlueCEStateWaitingJobs", "GlueCEStateFreeCPUs", "GlueCEStateTotalJobs")
    assert [kept[n] for n in names] == [live[n] for n in names] == [1, 2, 3, 3]
    view.ended_waiting()
    assert view.ces()[0]["GlueCEStateWaitingJobs"] == 1
