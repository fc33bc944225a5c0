"""``wmproxy_purges_total`` (``wmproxy.services.monitor.site_totals``) on each backend: one per
purged job, whatever events its purge recorded and however many nodes it had."""

from __future__ import annotations

from wmproxy.domain import Principal
from wmproxy.services import jobs, monitor
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job

from .conftest import DELEGATION

COLLECTION = """[ Type = "collection";
Nodes = { [ Executable = "/bin/echo"; Arguments = "one"; ], [ Executable = "/bin/echo"; Arguments = "two"; ] }; ]"""
SIMPLE = '[ Executable = "/bin/echo"; Arguments = "one"; ]'


def test_one_jobpurge_counts_one_purge(rt: Runtime, alice: Principal) -> None:
    before = monitor.site_totals(rt).purges
    compound = register_job(rt, alice, COLLECTION, DELEGATION).job_id
    simple = register_job(rt, alice, SIMPLE, DELEGATION).job_id
    for job_id in (compound, simple):
        jobs.cancel_job(rt, alice, job_id)
    assert monitor.site_totals(rt).purges == before
    jobs.purge_job(rt, alice, compound)
    assert monitor.site_totals(rt).purges == before + 1
    jobs.purge_job(rt, alice, simple)
    assert monitor.site_totals(rt).purges == before + 2
