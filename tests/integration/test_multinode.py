"""Several nodes on one PostgreSQL database (issue 11): two gunicorn service instances and two
execution workers sharing the sandbox and work directories and one store key. A job
registered through node A is started, followed and its output retrieved through node B; a
node started with another store key refuses to start with the fix in its message; migrate
run from both nodes at once succeeds on both."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import zeep

from tests.conftest import Pki, _postgres_database
from tests.integration.isolated import standard_deployment
from tests.integration.refclient import reference_client
from tests.integration.service import BIN, REPO, Deployment, free_port
from tests.support import WAIT_TIMEOUT, assert_fault, delegate, outputs, wait_for, wait_for_final
from wmproxy.security.sealing import Sealer
from wmproxy.store.migrations import head_revision, schema_revisions

pytestmark = pytest.mark.integration

JDL = ('[ Executable = "/bin/sh"; Arguments = "-c \\"echo ran on one of two nodes\\""; StdOutput = "o"; '
       'OutputSandbox = {"o"}; ]')
KEY_MISMATCH = "is not the key of this database"


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    yield from _postgres_database()


@pytest.fixture(scope="module")
def node_a(pki: Pki, postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with standard_deployment(pki, postgres_url, tmp_path_factory.mktemp("state")) as dep:
        yield dep


def second_node(node_a: Deployment, name: str, key: bytes | None = None) -> Deployment:
    """A node like ``node_a`` (same database, sandbox and work dirs) on a port of its own,
    with its own copy of the store key (``key``: another key instead)."""
    state = node_a.state / name
    state.mkdir(mode=0o711)
    owner = node_a.state.stat()
    os.chown(state, owner.st_uid, owner.st_gid)
    key_file = state / "store.key"
    if key is None:
        shutil.copyfile(node_a.state / "store.key", key_file)
    else:
        key_file.write_bytes(key + b"\n")
    os.chmod(key_file, 0o600)
    os.chown(key_file, owner.st_uid, owner.st_gid)
    port = free_port()
    text = node_a.config.read_text()
    text = text.replace(f"port = {node_a.port}\n", f"port = {port}\n")
    text = text.replace(f"bind = 127.0.0.1:{node_a.port}\n", f"bind = 127.0.0.1:{port}\n")
    text = text.replace(f"store_key_file = {node_a.state}/store.key\n", f"store_key_file = {key_file}\n")
    assert str(key_file) in text and f":{port}" in text
    config = node_a.config.with_name(f"wmproxy-{name}.conf")
    config.write_text(text)
    os.chmod(config, 0o644)
    return dataclasses.replace(node_a, config=config, state=state, port=port, processes=[],
                               env=dict(node_a.env, WMPROXY_CONFIG=str(config)))


@pytest.fixture(scope="module")
def node_b(node_a: Deployment) -> Iterator[Deployment]:
    dep = second_node(node_a, "node-b")
    try:
        dep.start_gunicorn()
        dep.start_worker("worker-2")
        yield dep
    finally:
        dep.stop()


def test_a_job_registered_on_one_node_is_started_followed_and_retrieved_through_the_other(
        node_a: Deployment, node_b: Deployment, pki: Pki) -> None:
    proxy = pki.users["alice"].proxy
    on_a = reference_client(node_a.endpoint, proxy, pki.ca_dir)
    on_b = reference_client(node_b.endpoint, proxy, pki.ca_dir)
    delegate(on_a, proxy, "multinode")  # sealed by node A, opened by node B and either worker
    job_id = on_a.wmproxy.jobRegister(JDL, "multinode").id
    on_b.wmproxy.jobStart(job_id)
    assert wait_for_final(on_b, job_id) == "Done (Exit Code 0)"
    assert str(on_a.wmproxy.getJobStatus(job_id).status) == "Done (Exit Code 0)"
    assert outputs(on_b, job_id) == {"o": b"ran on one of two nodes\n"}
    assert outputs(on_a, job_id) == {"o": b"ran on one of two nodes\n"}


def test_jobs_submitted_through_the_second_node_all_run(node_a: Deployment, node_b: Deployment, pki: Pki) -> None:
    proxy = pki.users["alice"].proxy
    on_b = reference_client(node_b.endpoint, proxy, pki.ca_dir)
    delegate(on_b, proxy, "spread")
    job_ids = [on_b.wmproxy.jobSubmit(JDL, "spread").id for _ in range(8)]
    for job_id in job_ids:
        assert wait_for_final(on_b, job_id) == "Done (Exit Code 0)"


def test_a_node_with_another_store_key_refuses_to_start(node_a: Deployment, node_b: Deployment) -> None:
    rogue = second_node(node_a, "node-rogue", key=Sealer.generate_key())
    try:
        service = rogue.start([*rogue.service_prefix, *rogue.python_command("gunicorn", BIN / "gunicorn"),
                               "-c", str(REPO / "deploy" / "gunicorn.conf.py"), "wmproxy.soap.app:application"],
                              "gunicorn.log")
        worker = rogue.start_worker("worker-rogue")
        assert service.wait(timeout=WAIT_TIMEOUT) != 0
        assert worker.wait(timeout=WAIT_TIMEOUT) == 3
    finally:
        rogue.stop()
    for log in ("gunicorn.log", "worker-rogue.log"):
        text = (rogue.state / log).read_text()
        assert KEY_MISMATCH in text and "copy the store key file from another node" in text, text
        assert "Traceback" not in text, text
    # the healthy nodes are untouched
    wait_for(lambda: node_b.processes[0].poll() is None, what="node B still serving", timeout=5)


def test_migrate_from_both_nodes_at_once(node_a: Deployment, node_b: Deployment, postgres_url: str) -> None:
    procs = [subprocess.Popen([str(BIN / "wmproxy-admin"), "migrate"], env=dep.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for dep in (node_a, node_b)]
    for proc in procs:
        _out, err = proc.communicate(timeout=WAIT_TIMEOUT)
        assert proc.returncode == 0, err
    assert schema_revisions(postgres_url) == (head_revision(), head_revision())


def test_a_purged_job_answers_job_unknown_on_every_node(node_a: Deployment, node_b: Deployment, pki: Pki,
                                                         postgres_url: str) -> None:
    proxy = pki.users["alice"].proxy
    on_a = reference_client(node_a.endpoint, proxy, pki.ca_dir)
    on_b = reference_client(node_b.endpoint, proxy, pki.ca_dir)
    delegate(on_a, proxy, "purged")
    job_id = on_a.wmproxy.jobSubmit(JDL, "purged").id
    assert wait_for_final(on_a, job_id) == "Done (Exit Code 0)"
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:  # ended 8 days ago, as the purger will find it then
            conn.execute(sa.text("update jobs set updated_at = updated_at - interval '8 days' where id = :j"),
                         {"j": job_id})
    finally:
        engine.dispose()
    done = subprocess.run([*node_b.service_prefix, *node_b.python_command("wmproxy.admin", BIN / "wmproxy-admin"),
                           "purge", "--yes", "--json"], env=node_b.env, capture_output=True, text=True,
                          timeout=WAIT_TIMEOUT, check=False)
    assert done.returncode == 0, done.stderr
    assert job_id in {job["id"] for job in json.loads(done.stdout)["jobs"]}
    for client in (on_a, on_b):
        with pytest.raises(zeep.exceptions.Fault) as err:
            client.wmproxy.getOutputFileList(job_id, "https")
        assert_fault(err, "JobUnknownFault", "getOutputFileList", code="1218", text="or it has been purged")
        with pytest.raises(zeep.exceptions.Fault) as err:  # its WSDL declares no JobUnknownFault
            client.wmproxy.getJobStatus(job_id)
        assert_fault(err, "GenericFault", "getJobStatus", code="1218", text="or it has been purged")
