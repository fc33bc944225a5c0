"""A JDL nested deeper than classad2's stack allows gets the JDL fault over the real service, and
the gunicorn worker that read it lives on (it died with SIGSEGV, cutting every request it served);
a JDL just within the bound is registered and run (``wmproxy.jdl.depth``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import zeep

from tests.conftest import Pki
from tests.integration.refclient import ReferenceClient, reference_client
from tests.integration.service import Deployment
from tests.support import ECHO_JDL, assert_fault, delegate, state_word, wait_for_final
from wmproxy.jdl.depth import MAX_DEPTH

pytestmark = pytest.mark.integration

#: 200,000 terms (0.8 MB): classad2's parser overflowed the request thread's stack.
DEEP_JDL = '[ Executable = "/bin/true"; X = 1' + " + 1" * 200_000 + "; ]"
_BOOTED = re.compile(r"Booting worker with pid: (\d+)")


@pytest.fixture(scope="module")
def alice(deployment: Deployment, pki: Pki) -> ReferenceClient:
    proxy = pki.users["alice"].proxy
    ref = reference_client(deployment.endpoint, proxy, pki.ca_dir)
    delegate(ref, proxy, "depth")
    return ref


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:][:1] != "Z"


def _workers(deployment: Deployment) -> set[int]:
    """The gunicorn workers of the deployment running now (booted as its log says)."""
    log = (deployment.state / "gunicorn.log").read_text(errors="replace")
    return {pid for pid in map(int, _BOOTED.findall(log)) if _running(pid)}


def test_a_deep_jdl_gets_the_jdl_fault_and_no_worker_dies(deployment: Deployment, alice: ReferenceClient) -> None:
    log = deployment.state / "gunicorn.log"
    offset = log.stat().st_size
    workers = _workers(deployment)
    assert workers

    for operation in ("jobRegister", "jobSubmit", "jobListMatch"):
        with pytest.raises(zeep.exceptions.Fault) as err:
            getattr(alice.wmproxy, operation)(DEEP_JDL, "depth")
        assert_fault(err, "InvalidArgumentFault", operation, "1219",
                     f"the expression of attribute X nests too deep: more than {MAX_DEPTH} levels")

    for _ in range(4):  # answered afterwards, whichever worker takes it
        assert alice.wmproxy.jobRegister(ECHO_JDL, "depth").id
    assert _workers(deployment) >= workers  # the same processes, none ended
    after = log.read_bytes()[offset:].decode(errors="replace")
    assert not re.search(r"SIGSEGV|signal 11|Booting worker", after), after


def test_a_jdl_just_within_the_bound_is_registered_and_runs(alice: ReferenceClient) -> None:
    chain = "a" + ".b" * (MAX_DEPTH - 10)
    job = alice.wmproxy.jobSubmit(ECHO_JDL.replace("[", f"[ X = {chain};", 1), "depth")

    assert state_word(wait_for_final(alice, job.id)) == "Done"


def test_a_requirements_of_2000_ces_is_registered(alice: ReferenceClient) -> None:
    ces = " || ".join(f'other.GlueCEUniqueID == "ce{i}.example.org:8443/cream-pbs-long"' for i in range(2_000))

    assert alice.wmproxy.jobRegister(ECHO_JDL.replace("[", f"[ Requirements = {ces};", 1), "depth").id
