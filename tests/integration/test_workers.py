"""Worker processes on one database: every started job runs exactly once, also across a
SIGTERM drain and a restart; jobs are matched to the catalogue's CEs, retried shallow or
deep as the reference's job-resubmit tests expect, and expire when nothing matches."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.integration.isolated import standard_deployment
from tests.integration.refclient import reference_client
from tests.integration.service import CE_CATALOGUE, Deployment
from tests.support import WAIT_TIMEOUT, delegate, wait_for_final, wait_for_job_state
from wmproxy.config import load_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployment(pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A deployment of this module's own (its tests start, stop and add workers), on a fresh database."""
    with standard_deployment(pki, database_url, tmp_path_factory.mktemp("state")) as dep:
        yield dep


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
        wrapper_pid, work_name = int(backend_ref.split(":")[2].split("@")[0]), backend_ref.split(":", 3)[3]
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


#: The reference's WMS-job-resubmit.sh JDLs (behaviour spec, Appendix A).
RESUBMIT = """[ Executable = "/bin/hostname"; StdOutput = "std.out"; StdError = "std.err";
  OutputSandbox = {{"std.out", "std.err"}}; {extra} ]"""


@pytest.mark.parametrize(("extra", "kind", "status"), [
    ('ShallowRetryCount = 2; Prologue = "/bin/false";', "shallow", "Aborted (hit job shallow retry count (2))"),
    ('RetryCount = 2; Epilogue = "/bin/false";', "deep", "Aborted (hit job retry count (2))"),
])
def test_job_resubmit(deployment: Deployment, pki: Pki, extra: str, kind: str, status: str) -> None:
    """A failing prologue is retried shallow, a failing epilogue deep, each twice; then the job
    is Aborted with the reference's reason. Every attempt was matched to a CE of the catalogue."""
    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegate(ref, pki.users["alice"].proxy, "resubmit")
    job_id = ref.wmproxy.jobSubmit(RESUBMIT.format(extra=extra), "resubmit").id
    assert wait_for_final(ref, job_id) == status
    engine = sa.create_engine(load_settings(deployment.config).database.url)
    try:
        with engine.connect() as conn:
            reasons = list(conn.execute(sa.text("select reason from job_events where job_id = :j and state = 'Waiting'"
                                                " and reason is not null order by id"), {"j": job_id}).scalars())
            ready = list(conn.execute(sa.text("select reason from job_events where job_id = :j and state = 'Ready'"
                                              " order by id"), {"j": job_id}).scalars())
            row = conn.execute(sa.text("select destination, shallow_retries, deep_retries from jobs where id = :j"),
                               {"j": job_id}).one()
    finally:
        engine.dispose()
    assert [r.split(":", 1)[0] for r in reasons] == [
        f"{kind} resubmission 1 of 2 (attempt 2)", f"{kind} resubmission 2 of 2 (attempt 3)"]
    assert (row[1], row[2]) == ((2, 0) if kind == "shallow" else (0, 2))
    matched = [r.removeprefix("matched to CE ") for r in ready]
    assert len(matched) == 3 and all(f'"{ce}"' in CE_CATALOGUE for ce in matched), ready  # matched anew each time
    assert row[0] == matched[-1]


def test_a_job_nothing_matches_expires(deployment: Deployment, pki: Pki) -> None:
    """``Requirements = false`` waits for a match until its ExpiryTime, then "request expired"."""
    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegate(ref, pki.users["alice"].proxy, "expiry")
    expiry = int(time.time()) + 3
    job_id = ref.wmproxy.jobSubmit(f'[ Executable = "/bin/true"; Requirements = false; ExpiryTime = {expiry}; ]',
                                   "expiry").id
    assert wait_for_final(ref, job_id) == "Aborted (request expired)"
    engine = sa.create_engine(load_settings(deployment.config).database.url)
    try:
        with engine.connect() as conn:
            states = list(conn.execute(sa.text("select state from job_events where job_id = :j order by id"),
                                       {"j": job_id}).scalars())
    finally:
        engine.dispose()
    assert "Running" not in states and "Ready" not in states and states[-1] == "Aborted"
