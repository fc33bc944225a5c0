"""What the service keeps in a job's work dir (the job's proxy ``user.proxy``, the owner's
credential, and ``.wmproxy/``) against the job's sandboxes, through the real deployment (SQLite and
PostgreSQL): an ``InputSandbox`` file so named is refused at registration; a job registered before
that ends Aborted, saying why, without running (the proxy was written over its file, and the payload
read the owner's credential); a ``user.proxy`` that a collection before it was refused left in the
output area is neither listed nor served, to the owner or to a reader the job's ACL admits.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import zeep

from tests.conftest import Pki
from tests.integration.refclient import ReferenceClient, reference_client
from tests.integration.service import Deployment
from tests.support import ECHO_JDL, assert_fault, delegate, wait_for_final
from wmproxy.config import load_settings
from wmproxy.sandbox.storage import FilesystemSandboxStorage
from wmproxy.security.filemodes import SQLITE_COMPANIONS

pytestmark = pytest.mark.integration

DELEGATION = "service-files"
#: Reads its input file ``data.txt`` (``user.proxy`` once its stored JDL is rewritten).
CAT_JDL = """[
  Executable = "/bin/cat";
  Arguments = "data.txt";
  StdOutput = "std.out";
  StdError = "std.err";
  InputSandbox = {"data.txt"};
  OutputSandbox = {"std.out", "std.err"};
]"""


@pytest.fixture(scope="module")
def alice(deployment: Deployment, pki: Pki) -> ReferenceClient:
    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegate(ref, pki.users["alice"].proxy, DELEGATION)
    return ref


@pytest.fixture(scope="module")
def bob(deployment: Deployment, pki: Pki) -> ReferenceClient:
    return reference_client(deployment.endpoint, pki.users["bob"].proxy, pki.ca_dir)


def _database_url(deployment: Deployment) -> str:
    return load_settings(deployment.config).database.url


def _as_the_service(deployment: Deployment, path: Path, owner_of: Path) -> None:
    """Give ``path`` (written by this process, maybe root) the owner of ``owner_of``, as the service
    would have written it."""
    st = os.stat(owner_of)
    if os.geteuid() == 0 and os.stat(path).st_uid != st.st_uid:
        os.chown(path, st.st_uid, st.st_gid)


def _execute(deployment: Deployment, statement: str, **params: str) -> tuple[list[Any], int]:
    """Run ``statement`` on the deployment's database as whoever can write it could; its rows
    and row count."""
    engine = sa.create_engine(_database_url(deployment))
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            rows = list(result.all()) if result.returns_rows else []
            count = result.rowcount
    finally:
        engine.dispose()
    url = _database_url(deployment)
    if url.startswith("sqlite:"):  # a companion this (root) process created must stay the service's
        database = Path(url.split("sqlite:///", 1)[1])
        for suffix in SQLITE_COMPANIONS:
            companion = database.with_name(database.name + suffix)
            if companion.exists():
                _as_the_service(deployment, companion, database)
    return rows, count


@pytest.mark.parametrize("entry", ["user.proxy", "dir/user.proxy", "file:///home/alice/.wmproxy"])
def test_an_input_sandbox_file_named_as_a_service_file_is_refused(alice: ReferenceClient, entry: str) -> None:
    jdl = CAT_JDL.replace('{"data.txt"}', f'{{"data.txt", "{entry}"}}')
    for operation in ("jobRegister", "jobSubmit"):
        with pytest.raises(zeep.exceptions.Fault) as err:
            getattr(alice.wmproxy, operation)(jdl, DELEGATION)
        assert_fault(err, "InvalidArgumentFault", operation, "1225", f"Attribute InputSandbox: {entry!r} is reserved")
    collection = f'[ Type = "collection"; nodes = {{ {CAT_JDL}, {jdl} }}; ]'
    with pytest.raises(zeep.exceptions.Fault) as err:
        alice.wmproxy.jobRegister(collection, DELEGATION)
    assert_fault(err, "InvalidArgumentFault", "jobRegister", "1225", "Node Node_1: Attribute InputSandbox")


def test_a_job_registered_before_ends_aborted_without_running(alice: ReferenceClient,
                                                               deployment: Deployment) -> None:
    job = alice.wmproxy.jobRegister(CAT_JDL, DELEGATION)
    _, count = _execute(deployment, "UPDATE jobs SET jdl_registered = REPLACE(jdl_registered, "
                                    "'/input/data.txt\"', '/input/user.proxy\"') WHERE id = :id", id=job.id)
    assert count == 1
    uri = alice.wmproxy.getSandboxDestURI(job.id, "https")[0]
    assert alice.session.put(f"{uri}/user.proxy", data=b"the user's data\n").ok
    alice.wmproxy.jobStart(job.id)

    assert wait_for_final(alice, job.id).startswith("Aborted")
    rows, _ = _execute(deployment, "SELECT reason FROM jobs WHERE id = :id", id=job.id)
    assert [tuple(row) for row in rows] == [(
        ("input sandbox file 'user.proxy' cannot be staged: the job's work directory holds the job's proxy "
        "(the owner's credential) under that name (the job was registered before InputSandbox entries so "
        "named were refused)"),
    )]
    assert not list(alice.wmproxy.getOutputFileList(job.id, "") or [])  # the payload never ran


def test_a_proxy_left_in_the_output_area_is_never_given_back(alice: ReferenceClient, bob: ReferenceClient,
                                                             pki: Pki, deployment: Deployment) -> None:
    job = alice.wmproxy.jobSubmit(ECHO_JDL, DELEGATION)
    assert wait_for_final(alice, job.id) == "Done (Exit Code 0)"
    alice.wmproxy.addACLItems(job.id, {"Item": [pki.users["bob"].dn]})
    settings = load_settings(deployment.config)
    output = FilesystemSandboxStorage(settings.sandbox.root, settings.sandbox.dir_name).job_dir(job.id) / "output"
    leftover = output / "user.proxy"  # as a collection of OutputSandbox = {"*"} before the fix left it
    leftover.write_bytes(pki.users["alice"].proxy.read_bytes())
    leftover.chmod(0o600)
    _as_the_service(deployment, leftover, output)
    uri = next(iter(alice.wmproxy.getOutputFileList(job.id, "https"))).name.rsplit("/", 1)[0]

    for reader in (alice, bob):
        names = sorted(f.name.rsplit("/", 1)[1] for f in reader.wmproxy.getOutputFileList(job.id, ""))
        assert names == ["std.err", "std.out"]
        for method in ("GET", "HEAD"):
            reply = reader.session.request(method, f"{uri}/user.proxy")
            assert reply.status_code == 403, (method, reply.text)
            assert b"PRIVATE KEY" not in reply.content
        listing = reader.session.get(f"{uri}/")
        assert listing.status_code == 200 and "user.proxy" not in listing.text and "std.out" in listing.text
        assert reader.session.get(f"{uri}/std.out").status_code == 200
    assert leftover.exists()  # never given back, removed with the job area
