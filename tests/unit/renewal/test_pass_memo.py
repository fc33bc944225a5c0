"""The renewal worker's memo of AC ends (:class:`wmproxy.renewal.worker.PassMemo`): each stored
VOMS proxy is read once, and what the last two passes did not look up is forgotten (stop 52: it
kept one entry per renewal or re-delegation, up to 100,000)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.unit.renewal.cycle_support import DELEG, SERVER, add_job, delegate
from tests.voms_support import FQANS, fake_voms_proxy, fake_voms_server
from wmproxy.domain import JobState, utcnow
from wmproxy.renewal.worker import PassMemo, RenewalWorker
from wmproxy.services import renewal as service
from wmproxy.services.runtime import Runtime

PASSES = 12


class TestPassMemo:
    def test_what_the_last_two_passes_looked_up_is_kept_and_nothing_else(self) -> None:
        memo: PassMemo[str, int] = PassMemo()
        for n in range(PASSES):
            memo.next_pass()
            if n == 0:
                memo["every pass"] = 0
            assert memo["every pass"] == 0
            if n % 2 == 0:
                memo["every other pass"] = n
            memo[f"pass {n}"] = n
        assert dict(memo) == {"every pass": 0, "every other pass": PASSES - 2, f"pass {PASSES - 1}": PASSES - 1,
                              f"pass {PASSES - 2}": PASSES - 2}
        memo.next_pass()
        memo.next_pass()
        assert len(memo) == 0 and "every pass" not in memo
        with pytest.raises(KeyError):
            memo["every pass"]

    def test_a_key_is_deleted_from_either_pass(self) -> None:
        memo: PassMemo[str, int] = PassMemo()
        memo["old"] = 1
        memo.next_pass()
        memo["new"] = 2
        del memo["old"], memo["new"]
        assert len(memo) == 0
        with pytest.raises(KeyError):
            del memo["old"]


def test_the_worker_keeps_the_ac_ends_of_the_last_two_passes_only(rt: Runtime, pki: Pki, tmp_path: Path) -> None:
    """A VOMS credential stored again before each pass (as a renewal or a re-delegation does):
    each pass reads its new stored proxy once, and the memo holds two entries, not one a pass."""
    server = fake_voms_server(pki, tmp_path)
    pem = fake_voms_proxy(pki, server, tmp_path / "p0", "-hours", "24", "-vomslife", "12").read_bytes()
    dn, start = pki.users["alice"].dn, utcnow()
    delegate(rt, dn, pem, start, FQANS)
    add_job(rt, dn, "running", JobState.RUNNING, start)  # a job needing the credential keeps its record
    with rt.uow() as uow:
        service.register_for_renewal(uow, dn, DELEG, SERVER, start)
    worker = RenewalWorker(rt, threads=1)
    for n in range(PASSES):
        delegate(rt, dn, pem, start + dt.timedelta(seconds=n), FQANS)  # a new updated_at: a new key
        assert worker.step().attempted == 0  # neither the proxy nor its AC is due: only looked at
        assert len(worker.ac_ends) == min(n + 1, 2)
    assert set(worker.ac_ends) == {(dn, DELEG, start + dt.timedelta(seconds=n)) for n in (PASSES - 2, PASSES - 1)}
