"""Two worker processes on one database: every started job runs exactly once."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.integration.refclient import reference_client
from tests.integration.service import Deployment
from tests.support import delegate, wait_for_final
from wmproxy.config import load_settings

pytestmark = pytest.mark.integration


def test_two_workers_run_each_job_once(deployment: Deployment, pki: Pki) -> None:
    deployment.start_worker("worker-2")
    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegate(ref, pki.users["alice"].proxy, "workers")
    jdl = '[ Executable = "/bin/sh"; Arguments = "-c \\"sleep 0.3; echo ran\\""; StdOutput = "o"; OutputSandbox = {"o"}; ]'
    job_ids = [ref.wmproxy.jobSubmit(jdl, "workers").id for _ in range(12)]
    for job_id in job_ids:
        assert wait_for_final(ref, job_id).startswith("Done"), job_id
    engine = sa.create_engine(load_settings(deployment.config).database.url)
    with engine.connect() as conn:
        runs = dict(
            conn.execute(
                sa.text("select job_id, count(*) from job_events where state = 'Running' group by job_id")
            ).all()
        )
        claims = conn.execute(sa.text("select count(*), count(distinct job_id) from execution_requests "
                                      "where command = 'start' and claimed_by is not null")).one()
    engine.dispose()
    assert {j: runs.get(j) for j in job_ids} == {j: 1 for j in job_ids}
    assert claims[0] == claims[1]
    for job_id in job_ids:
        files = ref.wmproxy.getOutputFileList(job_id, "https")
        assert [f.size for f in files] == [4]
