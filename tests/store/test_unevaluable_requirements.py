"""A job whose Requirements classad2 cannot evaluate fails alone; the site's other jobs run.

classad2 raises ``ClassAdException: failed to evaluate expression`` on references nested
deeper than it evaluates (a chain of a few hundred). That exception is neither a
WMProxyError nor an OSError: it left the execution worker's claim, ended the process, and
the restarted worker claimed the same request first again, so no job of the site started.
The job is now Aborted with the error as its reason and the claim goes on with the other
jobs (``wmproxy/services/matchmaking.py``, ``execution._claim``).

Real worker in process, both databases. The chain is in the CE's ad of the site's
catalogue, reached through the job's ``Requirements = other.D0``: the job's JDL itself is
an ordinary one, so this is the evaluation failure whatever checks registration makes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.store.conftest import mapped_runtime
from tests.store.worker_support import LEASE, aborted_beside_done, job_row
from wmproxy.execution.identity import Account
from wmproxy.services.runtime import Runtime

CE = "ce.example.org:8443/deep"
#: A CE attribute classad2 cannot evaluate: 500 references, each to the next.
CHAIN = "; ".join(f"D{i} = D{i + 1}" for i in range(500)) + "; D500 = true"


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, database_url: str, work_root: Path, job_account: Account,
       store_key_dir: Path) -> Iterator[Runtime]:
    catalogue = tmp_path / "ce-catalogue.ads"
    catalogue.write_text(f'[ GlueCEUniqueID = "{CE}"; GlueCEStateStatus = "Production"; {CHAIN} ]\n')
    with mapped_runtime(tmp_path, pki, database_url, store_key_dir, job_account,
                        execution={"work_dir": str(work_root), "heartbeat_lease": LEASE,
                                   "poll_interval": 0.05, "kill_grace": 2.0},
                        jobs={"ce_catalogue": str(catalogue)}) as runtime:
        yield runtime


def test_a_job_whose_requirements_cannot_be_evaluated_is_aborted_and_the_next_one_runs(
        rt: Runtime, pki: Pki, work_root: Path) -> None:
    bad, good = aborted_beside_done(rt, pki, work_root, "the job with bad Requirements aborted and the other one done",
                                    extra="Requirements = other.D0;")
    row = job_row(rt, bad)
    assert row.reason == f"the job's Requirements cannot be evaluated against CE {CE}: failed to evaluate expression"
    assert (row.destination, row.backend_ref, row.shallow_retries) == (None, None, 0)  # never matched nor run
    assert job_row(rt, good).destination == CE


def test_a_job_whose_stored_jdl_no_longer_reads_is_aborted_and_the_next_one_runs(
        rt: Runtime, pki: Pki, work_root: Path) -> None:
    """A JDL stored before a rule it breaks (a quoted attribute name, refused since) no longer
    parses at the claim: that job ends Aborted, the claim goes on with the others (before, the
    claim's transaction rolled back at each cycle and no job of the site started)."""
    bad, _ = aborted_beside_done(rt, pki, work_root, "the job whose JDL no longer reads aborted and the other one done",
                                 stored={"jdl_registered": '[ Executable = "/bin/true"; \'my attr\' = 1; ]'})
    row = job_row(rt, bad)
    assert (row.reason or "").startswith("the registered JDL cannot be read: ") and "my attr" in (row.reason or "")
    assert row.backend_ref is None
