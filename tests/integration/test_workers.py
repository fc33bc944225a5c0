"""Worker processes on one database: every started job runs exactly once, also across a
SIGTERM drain and a restart."""

from __future__ import annotations

import os
import signal

import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.integration.refclient import reference_client
from tests.integration.service import Deployment
from tests.support import WAIT_TIMEOUT, delegate, wait_for_final, wait_for_job_state
from wmproxy.config import load_settings

pytestmark = pytest.mark.integration


def test_two_workers_run_each_job_once(deployment: Deployment, pki: Pki) -> None:
    deployment.start_worker("worker-2")
    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegate(ref, pki.users["alice"].proxy, "workers")
    jdl = ('[ Executable = "/bin/sh"; Arguments = "-c \\"sleep 0.3; echo ran\\""; '
           'StdOutput = "o"; OutputSandbox = {"o"}; ]')
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
    assert {j: runs.get(j) for j in job_ids} == dict.fromkeys(job_ids, 1)
    assert claims[0] == claims[1]
    for job_id in job_ids:
        files = ref.wmproxy.getOutputFileList(job_id, "https")
        assert [f.size for f in files] == [4]


def test_sigterm_drains_and_the_restarted_worker_finishes_the_job(deployment: Deployment, pki: Pki) -> None:
    """SIGTERM: the worker exits at once (status 0) leaving the job's wrapper running; the
    worker restarted under the same name adopts the job, which ends once with its real
    exit code."""
    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegate(ref, pki.users["alice"].proxy, "drain")
    jdl = ('[ Executable = "/bin/sh"; Arguments = "-c \'while [ ! -e go ]; do sleep 0.1; done; exit 6\'"; '
           'StdOutput = "o"; OutputSandbox = {"o"}; ]')
    job_id = ref.wmproxy.jobSubmit(jdl, "drain").id
    wait_for_job_state(lambda: ref.wmproxy.getJobStatus(job_id).status, ("Running",), job=job_id)
    engine = sa.create_engine(load_settings(deployment.config).database.url)

    def row() -> tuple[str, str, str]:
        with engine.connect() as conn:
            found = conn.execute(sa.text("select worker, backend_ref, state from jobs where id = :j"),
                                 {"j": job_id}).one()
        return str(found[0]), str(found[1]), str(found[2])

    try:
        holder, backend_ref, _ = row()
        wrapper_pid, work_name = int(backend_ref.split(":")[2]), backend_ref.split(":", 3)[3]
        worker = next(p for p in deployment.processes if isinstance(p.args, list) and p.args[-1] == holder)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=WAIT_TIMEOUT) == 0
        os.kill(wrapper_pid, 0)  # the job's wrapper outlived its worker
        assert row()[2] == "Running"
        deployment.start_worker(holder)
        (deployment.state / "work" / work_name / "go").write_text("")
        status = wait_for_job_state(lambda: ref.wmproxy.getJobStatus(job_id).status, job=job_id)
        assert status == "Done (Exit Code 6)"
        with engine.connect() as conn:
            runs = conn.execute(sa.text("select count(*) from job_events where job_id = :j and state = 'Running'"),
                                {"j": job_id}).scalar_one()
        assert runs == 1
    finally:
        engine.dispose()
