"""A job's end that the job itself shaped never stops the execution worker.

On the deployment with the privilege split (:mod:`tests.integration.isolated`: the worker as the
service user with its capabilities, jobs as the mapped pool accounts), SQLite and PostgreSQL. Bob's
payload (a Python script run as his account) either plants files whose names an ``OutputSandbox``
wildcard matches, or writes ``.wmproxy/status.json`` itself and makes its state dir read-only, so that its wrapper
(same uid) cannot write its own status and exits on its own.
Before the fix, a name that is not UTF-8 in the job's reason (``UnicodeEncodeError``) or an exit
code no column holds (``OverflowError``) ended the worker, and every restart the same way (the end
replayed from its ends journal): nobody's job ran again; on PostgreSQL an exit code of 2**31 or a
NUL in the failure (``DataError``) kept the job Running for ever, its end retried and logged at
every cycle; and a newline in the failure forged a line of the worker's log. Now the worker lives
on, the job ends (Done, or Aborted for its status), its reason escaped, the ends journal empties,
and alice's jobs run.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.conftest import Pki
from tests.integration.isolated import SYSTEM_PYTHON, Isolated, isolated_deployment
from tests.integration.refclient import ReferenceClient, reference_client
from tests.support import delegate, state_word, wait_for

pytestmark = pytest.mark.integration

#: Bob's payload: ``hostile.py <mode> [args]``, run in its work dir as his account.
PAYLOAD = r'''
import json, os, sys
mode = sys.argv[1]

def forge(**fields):
    status = {"version": 1, "wrapper_pid": 1, "hostname": "forged", "started_at": "2026-01-01T00:00:00Z",
              "ended_at": "2026-01-01T00:00:01Z", "payload_started": True, "exit_code": 0}
    status.update(fields)
    with open(".wmproxy/forged.tmp", "w") as f:
        json.dump(status, f)
    os.rename(".wmproxy/forged.tmp", ".wmproxy/status.json")
    # The wrapper runs as this account: the state dir made read-only, it cannot write its own
    # status at the end and exits on its own (EXIT_NO_STATUS), and the worker reads this one.
    # (A wrapper killed after the forgery is Aborted as killed, the file not read, where the
    # worker learns how it ended: test_isolation.py::TestForgedStatus.)
    os.chmod(".wmproxy", 0o500)
    sys.exit(0)

if mode == "names":
    os.symlink("nowhere", b"\xff.o")   # not UTF-8, matched by OutputSandbox {"*.o"}
    with open(b"\xfe.o", "wb") as f:
        f.write(b"data")
    os.symlink("nowhere", "forged\n2026-12-06 18:00:00,000 ERROR wmproxy.store: FORGED NAME.o")
elif mode == "exit":
    forge(exit_code=int(sys.argv[2]))
elif mode == "nul":
    forge(exit_code=None, failure="x\u0000y")
elif mode == "newline":
    forge(payload_started=False, exit_code=None,
          failure="bye\n2026-12-06 18:00:00,000 ERROR wmproxy.store: FORGED LINE")
'''
FORGED = "2026-12-06 18:00:00,000 ERROR wmproxy.store: FORGED"


@pytest.fixture(scope="module")
def iso(pki: Pki, database_url: str) -> Iterator[Isolated]:
    with isolated_deployment(pki, database_url, extra_env={"WMPROXY_INSPECTION_MODE": "off"},
                             start_worker=False) as deployment:
        script = deployment.root / "hostile.py"
        script.write_text(PAYLOAD)
        os.chmod(script, 0o644)
        yield deployment


@pytest.fixture(scope="module")
def worker(iso: Isolated) -> subprocess.Popen[bytes]:
    return iso.start_worker()


@pytest.fixture(scope="module")
def users(iso: Isolated, pki: Pki) -> dict[str, ReferenceClient]:
    """alice's and bob's clients, each with its delegation ``ends``."""
    made = {}
    for user in ("alice", "bob"):
        made[user] = reference_client(iso.deployment.endpoint, pki.users[user].proxy, iso.root / "certificates")
        delegate(made[user], pki.users[user].proxy, "ends")
    return made


def _hostile(iso: Isolated, bob: ReferenceClient, args: str, extra: str = "") -> str:
    jdl = f'[ Executable = "{SYSTEM_PYTHON}"; Arguments = "-I {iso.root / "hostile.py"} {args}"; {extra} ]'
    return bob.wmproxy.jobSubmit(jdl, "ends").id


def _ended(ref: ReferenceClient, job_id: str, worker: subprocess.Popen[bytes]) -> str:
    """The job's final status text; fails at once should the worker end before it."""
    status = wait_for(lambda: (worker.poll(), str(ref.wmproxy.getJobStatus(job_id).status)),
                      lambda seen: seen[0] is not None or state_word(seen[1]) in ("Done", "Aborted", "Cancelled"),
                      what=f"job {job_id} to end")
    assert worker.poll() is None, f"the worker ended ({worker.returncode}); job {job_id}: {status[1]}"
    return status[1]


def _reason(iso: Isolated, database_url: str, job_id: str) -> str:
    """The job's reason in the deployment's database (getJobStatus tells a Done job's exit code only)."""
    url = f"sqlite:///{iso.state}/wmproxy.db" if database_url.startswith("sqlite") else database_url
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SELECT reason FROM jobs WHERE id = :id"), {"id": job_id}).scalar_one())
    finally:
        engine.dispose()


def _worker_lives_on(iso: Isolated, alice: ReferenceClient, worker: subprocess.Popen[bytes]) -> None:
    """Another user's job runs, and no end is left in an ends journal."""
    job_id = alice.wmproxy.jobSubmit('[ Executable = "/bin/true"; ]', "ends").id
    assert _ended(alice, job_id, worker) == "Done (Exit Code 0)"
    journals = iso.work_root / ".unrecorded-ends"
    assert wait_for(lambda: sorted(journals.glob("*.json")) if journals.exists() else [], lambda left: not left,
                    what="the ends journal to empty") == []
    assert worker.poll() is None


def _log(iso: Isolated) -> list[str]:
    return (iso.state / "worker-1.log").read_text(errors="replace").splitlines()


def test_output_names_the_job_chose_reach_its_reason_escaped(
    iso: Isolated, users: dict[str, ReferenceClient], worker: subprocess.Popen[bytes], database_url: str
) -> None:
    alice, bob = users["alice"], users["bob"]
    job_id = _hostile(iso, bob, "names", 'OutputSandbox = {"*.o"};')
    assert _ended(bob, job_id, worker) == "Done (Exit Code 0)"
    reason = _reason(iso, database_url, job_id)
    assert "output sandbox file \\udcff.o not collected: symbolic link" in reason
    # a regular file whose name is not UTF-8: not collected either, the sandbox edge could not serve it
    assert "output sandbox file \\udcfe.o not collected: its destination name cannot be served" in reason
    assert f"output sandbox file forged\\x0a{FORGED} NAME.o not collected: symbolic link" in reason
    assert not bob.wmproxy.getOutputFileList(job_id, "https")
    _worker_lives_on(iso, alice, worker)


@pytest.mark.parametrize("forged", ["exit 2147483648", "exit 9223372036854775808"], ids=["exit-2-31", "exit-2-63"])
def test_a_status_the_database_cannot_store_aborts_the_job(iso: Isolated, users: dict[str, ReferenceClient],
                                                           worker: subprocess.Popen[bytes], forged: str) -> None:
    alice, bob = users["alice"], users["bob"]
    job_id = _hostile(iso, bob, forged)
    status = _ended(bob, job_id, worker)
    assert status.startswith("Aborted (The job's status.json is malformed: "), status
    _worker_lives_on(iso, alice, worker)


def test_a_nul_in_the_jobs_failure_is_stored_escaped(iso: Isolated, users: dict[str, ReferenceClient],
                                                     worker: subprocess.Popen[bytes], database_url: str) -> None:
    alice, bob = users["alice"], users["bob"]
    job_id = _hostile(iso, bob, "nul")
    assert state_word(_ended(bob, job_id, worker)) == "Done"  # no exit code: 1, the failure its reason
    assert "x\\x00y" in _reason(iso, database_url, job_id)
    _worker_lives_on(iso, alice, worker)


def test_a_newline_in_the_jobs_failure_forges_no_log_line(iso: Isolated, users: dict[str, ReferenceClient],
                                                          worker: subprocess.Popen[bytes], database_url: str) -> None:
    alice, bob = users["alice"], users["bob"]
    job_id = _hostile(iso, bob, "newline")
    assert state_word(_ended(bob, job_id, worker)) == "Aborted"
    assert _reason(iso, database_url, job_id) == f"bye\n{FORGED} LINE"  # the job's own text, stored as it is
    _worker_lives_on(iso, alice, worker)
    lines = _log(iso)
    assert any(job_id in line and f"bye\\x0a{FORGED} LINE" in line for line in lines)
    assert not [line for line in lines if line.startswith(FORGED)]
