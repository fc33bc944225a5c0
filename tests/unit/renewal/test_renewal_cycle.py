"""The renewal services in-process on a real SQLite database (no TLS, no MyProxy): registration,
schedule, attempts, expiry, deregistration and status, with explicit times (no wall clock)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import socket
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.unit.renewal.copy_support import count_verifications, proxy_levels, self_signed
from tests.unit.renewal.cycle_support import (
    CYCLE,
    DELEG,
    SERVER,
    add_job,
    claim,
    delegate,
    end_of,
    proxy,
    running_job,
    stored_proxy,
)
from tests.unit.renewal.pass_support import stage_running_job
from tests.voms_support import FQANS, fake_voms_proxy, fake_voms_server, untrusted_voms_server
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.execution.identity import install_proxy
from wmproxy.renewal.jobfiles import push_job_proxy
from wmproxy.renewal.myproxy import UNREACHABLE_TEXT
from wmproxy.renewal.worker import RenewalWorker
from wmproxy.security.chain import load_pem_chain
from wmproxy.security.dn import slash_dn
from wmproxy.security.proxy import Credential, credential_pem, load_credential, make_proxy
from wmproxy.security.voms import verified_fqans
from wmproxy.services.delegation import destroy
from wmproxy.services.renewal import (
    DESTROYED_REASON,
    PROXY_EXPIRED_REASON,
    RETRY_FRACTION,
    ProxyRefresh,
    RenewalOrder,
    RenewalOutcome,
    abort_expired_credential,
    begin_renewal,
    deregister_unused,
    due_renewals,
    expired_credentials,
    finish_renewal,
    job_proxy_path,
    register_for_renewal,
    renewal_status,
    stale_job_proxies,
)
from wmproxy.services.renewal import jobfiles as jobfiles_module
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job


def kept_events(rt: Runtime, job_id: str) -> list[str]:
    """The reasons of the job's events saying it kept its own proxy."""
    with rt.uow() as uow:
        return [e.reason for e in uow.jobs.history(job_id, kinds=["renewal_failed"])
                if "proxy not written into the job" in (e.reason or "")]


def refusal(rt: Runtime, order: RenewalOrder, pem: bytes, now: dt.datetime) -> str:
    """Finish ``order`` with ``pem`` from MyProxy, which must fail and leave the stored proxy;
    the error recorded."""
    with rt.uow() as uow:
        assert finish_renewal(uow, rt, order, RenewalOutcome("renewed", proxy_pem=pem), now) == ("failed", [])
    with rt.uow() as uow:
        assert stored_proxy(uow, rt, order.owner_dn, DELEG) == order.proxy_pem
        status = renewal_status(uow, order.owner_dn, DELEG)
    assert status is not None and status.last_error is not None
    return status.last_error


@pytest.fixture
def alice(rt: Runtime, pki: Pki) -> tuple[str, dt.datetime]:
    """Alice's credential, registered for renewal, ending in 20 min (below the 35 min threshold)."""
    dn, now = pki.users["alice"].dn, utcnow()
    delegate(rt, dn, proxy(pki, "alice", 20 * 60, now), now)
    with rt.uow() as uow:
        register_for_renewal(uow, dn, DELEG, SERVER, now)
    return dn, now


class TestRegistration:
    def test_one_record_per_credential_with_the_latest_server(self, rt: Runtime, alice) -> None:
        dn, now = alice
        with rt.uow() as uow:
            register_for_renewal(uow, dn, DELEG, "other.example.org", now)
        with rt.uow() as uow:
            register_for_renewal(uow, dn, DELEG, None, now)  # no renewal asked: left alone
        with rt.uow() as uow:
            assert len(uow.renewals.candidates()) == 1
            status = renewal_status(uow, dn, DELEG)
        assert status is not None and status.myproxy_server == "other.example.org"
        assert (status.attempts, status.renewals, status.last_result) == (0, 0, None)

    def test_a_default_server_never_replaces_the_one_a_job_named(self, rt: Runtime, pki: Pki) -> None:
        # a job without MyProxyServer makes the record with the site's default (other.example.org);
        # a job naming SERVER replaces it; the next one without the attribute leaves SERVER, which
        # the user named (not renewed from the default from then on); a job naming another does not
        rt = dataclasses.replace(rt, settings=dataclasses.replace(rt.settings, renewal=dataclasses.replace(
            rt.settings.renewal, myproxy_server="other.example.org")))
        dn, now = pki.users["alice"].dn, utcnow()
        delegate(rt, dn, proxy(pki, "alice", 3600, now), now)
        alice = Principal(dn)

        def server_after(jdl: str) -> str:
            register_job(rt, alice, jdl, DELEG)
            with rt.uow() as uow:
                status = renewal_status(uow, dn, DELEG)
            assert status is not None
            return status.myproxy_server

        assert server_after('[ Executable = "/bin/true"; ]') == "other.example.org"
        assert server_after(f'[ Executable = "/bin/true"; MyProxyServer = "{SERVER}"; ]') == SERVER
        assert server_after('[ Executable = "/bin/true"; ]') == SERVER
        assert server_after('[ Executable = "/bin/true"; MyProxyServer = "other.example.org"; ]') == "other.example.org"
        with rt.uow() as uow:
            assert len(uow.renewals.candidates()) == 1

    def test_no_record_no_status(self, rt: Runtime) -> None:
        with rt.uow() as uow:
            assert renewal_status(uow, "/CN=nobody", DELEG) is None


class TestSchedule:
    def test_a_proxy_below_the_threshold_is_due(self, rt: Runtime, alice) -> None:
        _, now = alice
        with rt.uow() as uow:
            assert len(due_renewals(uow, rt, now)) == 1

    def test_a_long_proxy_is_not_due_yet(self, rt: Runtime, pki: Pki) -> None:
        dn, now = pki.users["bob"].dn, utcnow()
        delegate(rt, dn, proxy(pki, "bob", 3 * 3600, now), now)  # 3 h left; due at 2.5 h
        with rt.uow() as uow:
            register_for_renewal(uow, dn, DELEG, SERVER, now)
        with rt.uow() as uow:
            assert due_renewals(uow, rt, now) == []
            assert len(due_renewals(uow, rt, now + dt.timedelta(minutes=31))) == 1


class TestOutage:
    """A MyProxy outage over a 12 h proxy, with the reference's schedule (``anchors.md`` §2.2):
    5-minute cycles, renewal due at 2.5 h left, the last 35 min tried on every cycle; explicit
    times, one worker pass per cycle."""

    @staticmethod
    def outage(rt: Runtime, pki: Pki, answer: str) -> list[float]:
        """Seconds left on the proxy at each attempt until it expires, MyProxy ``unreachable``
        on every one, or (``not-extended``) granting a proxy that ends no later than the stored one."""
        rt = dataclasses.replace(rt, settings=dataclasses.replace(rt.settings, renewal=dataclasses.replace(
            rt.settings.renewal, cycle=300.0)))
        dn, t0 = pki.users["alice"].dn, utcnow()
        pem = proxy(pki, "alice", 12 * 3600, t0)
        delegate(rt, dn, pem, t0)
        with rt.uow() as uow:
            register_for_renewal(uow, dn, DELEG, SERVER, t0)
        end = end_of(pem)
        outcome = (RenewalOutcome("unreachable", error="down") if answer == "unreachable"
                   else RenewalOutcome("renewed", proxy_pem=pem))
        left: list[float] = []
        now = end - dt.timedelta(hours=12) + dt.timedelta(seconds=17)  # not on a boundary
        while now < end:
            with rt.uow() as uow:
                due = due_renewals(uow, rt, now)
            for record_id in due:
                with rt.uow() as uow:
                    order = begin_renewal(uow, rt, record_id, "w1", now)
                if order is not None:
                    with rt.uow() as uow:
                        assert finish_renewal(uow, rt, order, outcome, now)[0] == answer
                    left.append((end - now).total_seconds())
            now += dt.timedelta(seconds=300)
        return left

    @pytest.mark.parametrize("answer", ["unreachable", "not-extended"])
    def test_a_failing_renewal_is_tried_on_every_cycle_only_in_the_last_35_minutes(
            self, rt: Runtime, pki: Pki, answer: str) -> None:
        left = self.outage(rt, pki, answer)
        early = [s for s in left if s > 35 * 60]
        late = [s for s in left if s <= 35 * 60]
        # due at 2.5 h left (the first pass at 8983 s); then planned when 63.75 min (3825 s), 42.2
        # min (2531.25 s) and 36.8 min (2207.8 s) are left, the planned margin beyond the
        # threshold shrinking to a quarter each time its point has passed: tried at the first
        # pass after each, 3583 s and 2383 s; the next pass after 2207.8 s left is inside the
        # 35 min. (Before, on every pass from 2.5 h left on: 23 attempts with more than 35 min left.)
        assert early == [8983.0, 3583.0, 2383.0], f"{len(early)} attempts with more than 35 min left: {early}"
        # then on every cycle until it expires
        assert [a - b for a, b in itertools.pairwise(late)] == [300.0] * (len(late) - 1), late
        assert late[0] > 35 * 60 - 300 and late[-1] <= 300, late


class TestAttempts:
    def test_at_most_one_attempt_per_cycle_whatever_the_number_of_workers(self, rt: Runtime, alice) -> None:
        _, start = alice
        with rt.uow() as uow:
            (record_id,) = due_renewals(uow, rt, start)
        begun: list[tuple[str, dt.datetime]] = []
        # four workers taking turns every third of a cycle, over ten cycles; every attempt fails
        for tick in range(30):
            now = start + dt.timedelta(seconds=tick * CYCLE / 3)
            worker = f"w{tick % 4}"
            with rt.uow() as uow:
                order = begin_renewal(uow, rt, record_id, worker, now)
            if order is not None:
                begun.append((worker, now))
                with rt.uow() as uow:
                    finish_renewal(uow, rt, order, RenewalOutcome("unreachable", error="down"), now)
        times = [now for _, now in begun]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        assert len(begun) == 10 and min(gaps) >= CYCLE * RETRY_FRACTION
        assert {worker for worker, _ in begun} == {"w0", "w1", "w2", "w3"}  # whichever worker is awake
        with rt.uow() as uow:
            status = renewal_status(uow, alice[0], DELEG)
        assert status is not None and status.attempts == len(begun)
        assert (status.last_result, status.last_error, status.last_attempt_at) == ("unreachable", "down", times[-1])

    def test_a_servers_long_error_text_is_stored_cut_and_on_one_line(self, rt: Runtime, alice) -> None:
        """Red team: a MyProxy server's 58 KB of ERROR text, changing at each attempt, was stored
        whole as the record's last_error and in an event of each held job at each attempt."""
        dn, now = alice
        job = add_job(rt, dn, "running", JobState.RUNNING, now)
        for attempt in range(2):
            at = now + dt.timedelta(seconds=attempt * CYCLE)
            order = claim(rt, at)
            text = f"attempt {attempt} \x1b[2J" + "x" * 60_000 + "\nforged log line"
            with rt.uow() as uow:
                finish_renewal(uow, rt, order, RenewalOutcome("refused", error=text), at)
        with rt.uow() as uow:
            status = renewal_status(uow, dn, DELEG)
            reasons = [e.reason or "" for e in uow.jobs.history(job, kinds=["renewal_failed"])]
        assert status is not None and status.last_error is not None
        assert len(status.last_error) <= 1000 and status.last_error.startswith("attempt 1 \\x1b[2Jxxx")
        # one event for the refusals, whatever their text; the record has the latest
        assert len(reasons) == 1 and len(reasons[0]) <= 1100 and "\n" not in reasons[0] and "\x1b" not in reasons[0]

    @pytest.mark.parametrize("named", [False, True])
    def test_a_server_allowed_by_a_wildcard_is_not_reached_on_loopback(self, rt: Runtime, pki: Pki,
                                                                        named: bool) -> None:
        """Red team: with ``myproxy_allowed_servers = *`` a user's MyProxyServer reached the
        service host's ports and read in last_error which were open. A server the site names
        is reached wherever it is."""
        with socket.socket() as listening:
            listening.bind(("127.0.0.1", 0))
            listening.listen(8)
            server = f"127.0.0.1:{listening.getsockname()[1]}"
            rt.settings = dataclasses.replace(
                rt.settings, renewal=dataclasses.replace(rt.settings.renewal, timeout=0.5,
                                                         myproxy_allowed_servers=f"{server}, *" if named else "*"),
                security=dataclasses.replace(rt.settings.security, host_cert=str(pki.host_cert),
                                             host_key=str(pki.host_key)))
            alice = pki.users["alice"]
            staged = stage_running_job(rt, alice.dn, proxy(pki, "alice", 20 * 60), server)
            assert RenewalWorker(rt, threads=1).step().attempted == 1
            listening.settimeout(0)
            if named:
                listening.accept()[0].close()  # it connected
            else:
                with pytest.raises(BlockingIOError):
                    listening.accept()
        with rt.uow() as uow:
            status = renewal_status(uow, alice.dn, staged.delegation_id)
        assert status is not None and status.last_result == "unreachable"
        assert (status.last_error == UNREACHABLE_TEXT.format(where=server)) is not named

    def test_a_claimed_record_is_not_given_to_a_second_worker(self, rt: Runtime, alice) -> None:
        _, now = alice
        with rt.uow() as uow:
            (record_id,) = due_renewals(uow, rt, now)
            assert begin_renewal(uow, rt, record_id, "w1", now) is not None
        # past the next attempt time (0.9 cycle) but within w1's lease (timeout + 30 s = 1 cycle)
        later = now + dt.timedelta(seconds=0.95 * CYCLE)
        with rt.uow() as uow:
            assert due_renewals(uow, rt, later) == []
            assert begin_renewal(uow, rt, record_id, "w2", later) is None

    def test_a_longer_proxy_replaces_the_stored_one_and_names_the_held_jobs(
        self, rt: Runtime, pki: Pki, alice
    ) -> None:
        dn, now = alice
        running = add_job(rt, dn, "running", JobState.RUNNING, now)
        add_job(rt, dn, "registered", JobState.SUBMITTED, now)
        order = claim(rt, now)
        assert (order.host, order.port) == ("myproxy.example.org", 7512)
        renewed = proxy(pki, "alice", 10 * 3600)
        with rt.uow() as uow:
            result, jobs = finish_renewal(uow, rt, order, RenewalOutcome("renewed", proxy_pem=renewed), now)
        assert (result, jobs) == ("renewed", [running])
        with rt.uow() as uow:
            assert stored_proxy(uow, rt, dn, DELEG) == renewed
            assert uow.delegations.get(dn, DELEG).not_after == end_of(renewed)
            status = renewal_status(uow, dn, DELEG)
        assert status is not None and (status.renewals, status.last_result, status.last_renewed_at) == (
            1, "renewed", now)

    def test_a_shorter_proxy_is_not_stored(self, rt: Runtime, pki: Pki, alice) -> None:
        dn, now = alice
        order = claim(rt, now)
        with rt.uow() as uow:
            result, jobs = finish_renewal(uow, rt, order, RenewalOutcome("renewed", proxy_pem=proxy(
                pki, "alice", 60)), now)
            assert (result, jobs) == ("not-extended", [])
            assert stored_proxy(uow, rt, dn, DELEG) == order.proxy_pem
            assert "not later than the stored one" in renewal_status(uow, dn, DELEG).last_error

    def test_a_proxy_delegated_again_during_the_exchange_is_kept(self, rt: Runtime, pki: Pki, alice) -> None:
        # the renewal reads P0; the user's putProxy stores P1; MyProxy's P2, made from P0, ends after P1
        dn, now = alice
        add_job(rt, dn, "running", JobState.RUNNING, now)
        order = claim(rt, now)
        fresh = proxy(pki, "alice", 2 * 3600, now)
        delegate(rt, dn, fresh, now)  # the store's upsert, as putProxy writes it
        renewed = proxy(pki, "alice", 10 * 3600, now)
        assert end_of(renewed) > end_of(fresh)
        with rt.uow() as uow:
            result, jobs = finish_renewal(uow, rt, order, RenewalOutcome("renewed", proxy_pem=renewed), now)
        assert (result, jobs) == ("not-extended", [])
        with rt.uow() as uow:
            assert stored_proxy(uow, rt, dn, DELEG) == fresh
            assert uow.delegations.get(dn, DELEG).not_after == end_of(fresh)
            status = renewal_status(uow, dn, DELEG)
        assert status is not None and status.renewals == 0
        assert "replaced during the renewal" in (status.last_error or "")

    def test_a_proxy_of_another_user_is_refused(self, rt: Runtime, pki: Pki, alice) -> None:
        dn, now = alice
        order = claim(rt, now)
        with rt.uow() as uow:
            result, _ = finish_renewal(uow, rt, order, RenewalOutcome("renewed", proxy_pem=proxy(
                pki, "bob", 10 * 3600)), now)
            assert result == "failed"
            assert f"proxy of {pki.users['bob'].dn}" in renewal_status(uow, dn, DELEG).last_error
            assert stored_proxy(uow, rt, dn, DELEG) == order.proxy_pem

    def test_a_chain_verified_through_another_users_certificates_is_refused(
        self, rt: Runtime, pki: Pki, alice
    ) -> None:
        # [new proxy, Alice's certificate, Bob's proxy, Bob's certificate]: OpenSSL verifies the
        # new proxy through Bob's proxy and certificate; the first user certificate is Alice's
        _, now = alice
        bobs = make_proxy(pki.users["bob"].credential, lifetime=12 * 3600)
        new = make_proxy(bobs, lifetime=10 * 3600)
        crafted = credential_pem(Credential(new.cert, new.key, [
            pki.users["alice"].credential.cert, bobs.cert, pki.users["bob"].credential.cert]))
        assert "not the verified path" in refusal(rt, claim(rt, now), crafted, now)

    def test_a_chain_with_a_certificate_beside_the_path_is_refused(self, rt: Runtime, pki: Pki, alice) -> None:
        _, now = alice
        new = make_proxy(pki.users["alice"].credential, lifetime=10 * 3600)
        extra = credential_pem(Credential(new.cert, new.key, [*new.chain, pki.users["bob"].credential.cert]))
        assert "not the verified path" in refusal(rt, claim(rt, now), extra, now)

    def test_a_proxy_of_the_owners_renewed_certificate_renews(self, rt: Runtime, pki: Pki, alice) -> None:
        """The user's certificate renewed by the CA (the same DN, a new key; the yearly renewal,
        then myproxy-init again): its proxy replaces the stored one, as gLite's renewal did."""
        dn, now = alice
        rekeyed = pki.ca.issue_user("Alice")
        assert slash_dn(rekeyed.cert.subject) == dn
        renewed = credential_pem(make_proxy(rekeyed, lifetime=10 * 3600))
        order = claim(rt, now)
        with rt.uow() as uow:
            assert finish_renewal(uow, rt, order, RenewalOutcome("renewed", proxy_pem=renewed), now)[0] == "renewed"
        with rt.uow() as uow:
            assert stored_proxy(uow, rt, dn, DELEG) == renewed

    @pytest.mark.parametrize("signed_by_limited", [False, True])
    def test_a_limited_proxy_is_refused(self, rt: Runtime, pki: Pki, alice, signed_by_limited: bool) -> None:
        _, now = alice
        limited = make_proxy(pki.users["alice"].credential, lifetime=12 * 3600, limited=True)
        renewed = make_proxy(limited, lifetime=10 * 3600) if signed_by_limited else limited
        assert "a limited proxy" in refusal(rt, claim(rt, now), credential_pem(renewed), now)


class TestVomsAttributes:
    def test_a_proxy_with_other_fqans_is_refused_the_same_fqans_renew(
        self, rt: Runtime, pki: Pki, tmp_path: Path
    ) -> None:
        server = fake_voms_server(pki, tmp_path)  # its vomsdir is the runtime's
        dn = pki.users["alice"].dn
        # delegated under /atlas/Role=production: a 24 h VOMS proxy started 23.5 h ago, due
        delegated = fake_voms_proxy(pki, server, tmp_path / "p0", "-pastproxy", str(23 * 3600 + 1800)).read_bytes()
        other = fake_voms_proxy(pki, server, tmp_path / "other", fqans=(FQANS[2],)).read_bytes()
        same = fake_voms_proxy(pki, server, tmp_path / "same").read_bytes()
        now = utcnow()  # after the ACs' start: each AC is valid from its making
        fqans = verified_fqans(load_pem_chain(delegated), vomsdir=server.vomsdir, ca_dir=pki.ca_dir, at=now)
        assert fqans == FQANS
        delegate(rt, dn, delegated, now, fqans)
        with rt.uow() as uow:
            register_for_renewal(uow, dn, DELEG, SERVER, now)
        error = refusal(rt, claim(rt, now), other, now)
        assert f"VOMS attributes {FQANS[2]}, not the delegated ones ({' '.join(FQANS)})" in error
        later = now + dt.timedelta(seconds=CYCLE)  # the next cycle's attempt
        with rt.uow() as uow:
            assert finish_renewal(uow, rt, claim(rt, later), RenewalOutcome("renewed", proxy_pem=same), later) == (
                "renewed", [])
        with rt.uow() as uow:
            assert stored_proxy(uow, rt, dn, DELEG) == same


    @pytest.mark.parametrize("renewed_ac", ["untrusted", "ended", "none"])
    def test_a_renewed_proxy_proving_none_of_the_delegated_fqans_is_stored_with_a_note_for_the_owner(
        self, rt: Runtime, pki: Pki, tmp_path: Path, renewed_ac: str
    ) -> None:
        # the usual case: the MyProxy credential was stored with myproxy-init --voms and its 12 h
        # AC has ended; or its AC is of a VOMS server this service does not trust; or it has none
        server = fake_voms_server(pki, tmp_path)
        dn = pki.users["alice"].dn
        delegated = fake_voms_proxy(pki, server, tmp_path / "p0", "-pastproxy", str(23 * 3600 + 1800)).read_bytes()
        renewed = {
            "untrusted": lambda: fake_voms_proxy(pki, untrusted_voms_server(pki, tmp_path), tmp_path / "r"),
            "ended": lambda: fake_voms_proxy(pki, server, tmp_path / "r", "-pastac", "7200", "-vomslife", "1"),
            "none": lambda: None,
        }[renewed_ac]()
        pem = proxy(pki, "alice", 10 * 3600) if renewed is None else renewed.read_bytes()
        now = utcnow()
        assert verified_fqans(load_pem_chain(pem), vomsdir=server.vomsdir, ca_dir=pki.ca_dir, at=now) == ()
        delegate(rt, dn, delegated, now, FQANS)
        job = running_job(rt, dn, FQANS, delegated)
        with rt.uow() as uow:
            register_for_renewal(uow, dn, DELEG, SERVER, now)
        with rt.uow() as uow:
            assert finish_renewal(uow, rt, claim(rt, now), RenewalOutcome("renewed", proxy_pem=pem), now) == (
                "renewed", [job])
        note = ("the renewed proxy carries no VOMS attributes" if renewed_ac == "none" else
                f"the VOMS attributes of the renewed proxy do not verify (ended, or not signed by a VOMS server "
                f"this service trusts): it does not prove the delegated ones ({' '.join(FQANS)})")
        with rt.uow() as uow:
            status = renewal_status(uow, dn, DELEG)
            assert status is not None and note in (status.notes or "")
            assert stored_proxy(uow, rt, dn, DELEG) == pem
            delegation = uow.delegations.get(dn, DELEG)
            assert delegation is not None and delegation.fqans == "\n".join(FQANS)  # the credential's, kept
            (event,) = uow.jobs.history(job, kinds=["proxy_renewed"])
        assert event.reason.startswith("proxy renewed from MyProxy; ") and note in event.reason


class TestJobFiles:
    def test_a_pass_verifies_a_copy_again_only_once_it_changed(self, rt: Runtime, pki: Pki,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
        """Red team: each pass verified every held job's copy again, in its transaction, and a job
        could make its copy slow to verify (22 proxy levels below its own, keys with huge
        exponents: 156 ms a job a pass). A copy deeper than the limit is replaced unverified."""
        monkeypatch.setattr(jobfiles_module, "SETTLED_NS", 0)  # as if the files were written long ago
        verified = count_verifications(monkeypatch)
        bob = pki.users["bob"]
        stored = credential_pem(make_proxy(bob.credential, lifetime=6 * 3600))
        staged = [stage_running_job(rt, bob.dn, stored, SERVER) for _ in range(3)]
        worker = RenewalWorker(rt, threads=1)
        worker.step()
        assert len(verified) == 3
        verified.clear()
        worker.step()
        assert verified == []
        copy = job_proxy_path(rt, staged[0].job_id)
        copy.unlink()  # the job's account owns its work dir: it writes a proxy 11 levels below its own
        copy.write_bytes(credential_pem(proxy_levels(load_credential(stored), 11)))
        assert worker.step().pushed == 1 and verified == []
        assert copy.read_bytes() == stored
        worker.step()
        assert len(verified) == 1  # the copy written by the push, once
        worker.step()
        assert len(verified) == 1

    def test_a_job_file_older_than_the_stored_proxy_is_stale_until_pushed(
        self, rt: Runtime, pki: Pki, alice
    ) -> None:
        dn, now = alice
        running = add_job(rt, dn, "running", JobState.RUNNING, now)
        old = proxy(pki, "alice", 600, now)
        job_proxy_path(rt, running).parent.mkdir(parents=True)
        job_proxy_path(rt, running).write_bytes(old)
        with rt.uow() as uow:
            current = stored_proxy(uow, rt, dn, DELEG)
            assert stale_job_proxies(uow, rt, now) == [ProxyRefresh(dn, DELEG, current, [running])]
        assert current is not None and push_job_proxy(rt, running, current)
        with rt.uow() as uow:
            assert stale_job_proxies(uow, rt, now) == []


class TestProxiesDelegatedAgain:
    """A re-delegation under the same id reaches running jobs (it lets a user extend them) only
    when its VOMS FQAN is the one each job was registered and mapped with."""

    def test_a_proxy_with_another_fqan_is_not_written_into_running_jobs(
        self, rt: Runtime, pki: Pki, tmp_path: Path
    ) -> None:
        server = fake_voms_server(pki, tmp_path)
        dn, now = pki.users["alice"].dn, utcnow()
        fqans = lambda pem: verified_fqans(load_pem_chain(pem), vomsdir=server.vomsdir,  # noqa: E731
                                           ca_dir=pki.ca_dir, at=utcnow())
        production = fake_voms_proxy(pki, server, tmp_path / "prod", "-hours", "6").read_bytes()
        delegate(rt, dn, production, now, fqans(production))
        job = running_job(rt, dn, FQANS, production)
        uk = fake_voms_proxy(pki, server, tmp_path / "uk", fqans=(FQANS[2],)).read_bytes()  # 24 h
        delegate(rt, dn, uk, now, fqans(uk))
        for _ in range(2):  # two passes: the job keeps its proxy, one event
            RenewalWorker(rt).step()
            assert job_proxy_path(rt, job).read_bytes() == production
        (event,) = kept_events(rt, job)
        assert (f"has the VOMS FQAN {FQANS[2]}, the job was registered and mapped with the VOMS FQAN "
                f"{FQANS[0]};") in event
        again = fake_voms_proxy(pki, server, tmp_path / "again").read_bytes()  # 24 h, the job's FQANs
        delegate(rt, dn, again, now, fqans(again))
        assert RenewalWorker(rt).step().pushed == 1
        assert job_proxy_path(rt, job).read_bytes() == again

    def test_a_job_registered_without_fqan_gets_no_proxy_bringing_one(
        self, rt: Runtime, pki: Pki, tmp_path: Path
    ) -> None:
        server = fake_voms_server(pki, tmp_path)
        dn, now = pki.users["alice"].dn, utcnow()
        plain = proxy(pki, "alice", 3600, now)
        delegate(rt, dn, plain, now)
        job = running_job(rt, dn, (), plain)
        voms = fake_voms_proxy(pki, server, tmp_path / "x509up_voms").read_bytes()
        delegate(rt, dn, voms, now, FQANS)
        RenewalWorker(rt).step()
        assert job_proxy_path(rt, job).read_bytes() == plain
        (event,) = kept_events(rt, job)
        assert f"has the VOMS FQAN {FQANS[0]}, the job was registered and mapped with no VOMS FQAN;" in event
        longer = proxy(pki, "alice", 7200, now)
        delegate(rt, dn, longer, now)
        RenewalWorker(rt).step()
        assert job_proxy_path(rt, job).read_bytes() == longer

    def test_a_renewal_reaches_the_jobs_of_its_fqan_only(self, rt: Runtime, pki: Pki, tmp_path: Path) -> None:
        # production jobs run; the user delegates /atlas/uk under the same id and registers a job
        # with it; the credential is renewed from MyProxy (the /atlas/uk one, as delegated)
        server = fake_voms_server(pki, tmp_path)
        dn, now = pki.users["alice"].dn, utcnow()
        production = fake_voms_proxy(pki, server, tmp_path / "prod", "-hours", "6").read_bytes()
        delegate(rt, dn, production, now, FQANS)
        old = running_job(rt, dn, FQANS, production)
        uk = fake_voms_proxy(pki, server, tmp_path / "uk", "-pastproxy", str(23 * 3600 + 1800),
                             fqans=(FQANS[2],)).read_bytes()  # due
        delegate(rt, dn, uk, now, (FQANS[2],))
        new = running_job(rt, dn, (FQANS[2],), uk)
        with rt.uow() as uow:
            register_for_renewal(uow, dn, DELEG, SERVER, now)
        renewed = fake_voms_proxy(pki, server, tmp_path / "renewed", fqans=(FQANS[2],)).read_bytes()
        with rt.uow() as uow:
            result = finish_renewal(uow, rt, claim(rt, now), RenewalOutcome("renewed", proxy_pem=renewed), now)
        assert result == ("renewed", [new])
        with rt.uow() as uow:
            assert [e.kind for e in uow.jobs.history(new, kinds=["proxy_renewed", "renewal_failed"])] == [
                "proxy_renewed"]
            assert uow.jobs.history(old, kinds=["proxy_renewed"]) == []
        assert len(kept_events(rt, old)) == 1

    def test_a_renewal_without_voms_attributes_reaches_every_job_of_the_credential(
        self, rt: Runtime, pki: Pki, tmp_path: Path
    ) -> None:
        # MyProxy's copy has no AC: the production job gets it (as before), and so does a job
        # registered without FQAN (registered while the stored proxy proved none)
        server = fake_voms_server(pki, tmp_path)
        dn, now = pki.users["alice"].dn, utcnow()
        delegated = fake_voms_proxy(pki, server, tmp_path / "p0", "-pastproxy", str(23 * 3600 + 1800)).read_bytes()
        delegate(rt, dn, delegated, now, FQANS)
        production = running_job(rt, dn, FQANS, delegated)
        without = add_job(rt, dn, "without", JobState.RUNNING, now)  # registered with no VOMS_FQAN
        with rt.uow() as uow:
            register_for_renewal(uow, dn, DELEG, SERVER, now)
        order = claim(rt, now)
        with rt.uow() as uow:
            result, pushed = finish_renewal(uow, rt, order, RenewalOutcome(
                "renewed", proxy_pem=proxy(pki, "alice", 10 * 3600)), now)
        assert (result, sorted(pushed)) == ("renewed", sorted([production, without]))
        # the same FQANs, verified: not into the job registered without FQAN
        later = now + dt.timedelta(seconds=CYCLE)
        delegate(rt, dn, delegated, later, FQANS)
        with rt.uow() as uow:
            result, pushed = finish_renewal(uow, rt, claim(rt, later), RenewalOutcome(
                "renewed", proxy_pem=fake_voms_proxy(pki, server, tmp_path / "same").read_bytes()), later)
        assert (result, pushed) == ("renewed", [production])
        assert len(kept_events(rt, without)) == 1


    @pytest.mark.parametrize("registered", ["other FQAN", "no FQAN"])
    def test_a_job_left_out_is_aborted_once_its_own_copy_ended(
        self, rt: Runtime, pki: Pki, tmp_path: Path, registered: str
    ) -> None:
        # the stored proxy stays valid (delegated again, renewed for the jobs it fits), but never
        # reaches this job: once the job's own copy has ended, it is aborted as if its credential
        # had expired; until then it runs on
        server = fake_voms_server(pki, tmp_path)
        dn, now = pki.users["alice"].dn, utcnow()
        if registered == "other FQAN":
            production = fake_voms_proxy(pki, server, tmp_path / "prod", "-hours", "6").read_bytes()
            delegate(rt, dn, production, now, FQANS)
            job = running_job(rt, dn, FQANS, production)
            stored, stored_fqans = fake_voms_proxy(pki, server, tmp_path / "uk", fqans=(FQANS[2],)), (FQANS[2],)
        else:
            plain = proxy(pki, "alice", 6 * 3600, now)
            delegate(rt, dn, plain, now)
            job = running_job(rt, dn, (), plain)
            stored, stored_fqans = fake_voms_proxy(pki, server, tmp_path / "x509up_voms"), FQANS
        delegate(rt, dn, stored.read_bytes(), now, stored_fqans)  # 24 h
        fitting = running_job(rt, dn, stored_fqans, stored.read_bytes())
        assert RenewalWorker(rt).step().aborted == 0
        with rt.uow() as uow:
            assert uow.jobs.get(job).state == JobState.RUNNING.value
        assert len(kept_events(rt, job)) == 1
        ended = proxy(pki, "alice", 60, now - dt.timedelta(minutes=5))  # its copy, as once ended
        install_proxy(job_proxy_path(rt, job).parent, ended, None)
        RenewalWorker(rt).step()
        with rt.uow() as uow:
            assert (uow.jobs.get(job).state, uow.jobs.get(job).reason) == (JobState.ABORTED.value,
                                                                            PROXY_EXPIRED_REASON)
            assert [r.command for r in uow.queue.pending_for(job)] == ["cancel"]
            assert uow.jobs.get(fitting).state == JobState.RUNNING.value
            assert uow.queue.pending_for(fitting) == []
        assert job_proxy_path(rt, job).read_bytes() == ended  # the stored proxy never written into it


class TestExpiry:
    def test_an_expired_credential_aborts_its_jobs_and_stops_the_running_one(self, rt: Runtime, alice) -> None:
        dn, now = alice
        running = add_job(rt, dn, "running", JobState.RUNNING, now)
        registered = add_job(rt, dn, "registered", JobState.SUBMITTED, now)
        done = add_job(rt, dn, "done", JobState.DONE, now)
        later = now + dt.timedelta(minutes=21)  # the proxy ended at now + 20 min
        with rt.uow() as uow:
            assert expired_credentials(uow, now) == []
            assert expired_credentials(uow, later) == [(dn, DELEG)]
        with rt.uow() as uow:
            assert sorted(abort_expired_credential(uow, rt, dn, DELEG, later)) == sorted([running, registered])
        with rt.uow() as uow:
            for job_id in (running, registered):
                job = uow.jobs.get(job_id)
                assert (job.state, job.reason) == (JobState.ABORTED.value, PROXY_EXPIRED_REASON)
            assert uow.jobs.get(done).state == JobState.DONE.value
            assert [r.command for r in uow.queue.pending_for(running)] == ["cancel"]
            assert uow.queue.pending_for(registered) == []
        with rt.uow() as uow:
            assert deregister_unused(uow, later) == 1
        with rt.uow() as uow:
            assert renewal_status(uow, dn, DELEG) is None

    def test_a_credential_renewed_meanwhile_aborts_nothing(self, rt: Runtime, alice) -> None:
        dn, now = alice
        add_job(rt, dn, "running", JobState.RUNNING, now)
        with rt.uow() as uow:
            assert abort_expired_credential(uow, rt, dn, DELEG, now) == []

    def test_a_running_job_runs_on_with_its_own_copy_after_a_shorter_proxy_delegated_again_expired(
        self, rt: Runtime, pki: Pki
    ) -> None:
        dn, now = pki.users["alice"].dn, utcnow()
        long = proxy(pki, "alice", 12 * 3600, now)
        delegate(rt, dn, long, now)
        running = add_job(rt, dn, "running", JobState.RUNNING, now)
        job_proxy_path(rt, running).parent.mkdir(parents=True)
        install_proxy(job_proxy_path(rt, running).parent, long, None)
        waiting = add_job(rt, dn, "waiting", JobState.WAITING, now)
        short = proxy(pki, "alice", 60, now - dt.timedelta(minutes=5))  # a 1-minute proxy, ended before now
        delegate(rt, dn, short, now)  # under the same id: the stored proxy has expired
        assert RenewalWorker(rt).step().aborted == 1
        with rt.uow() as uow:
            assert uow.jobs.get(running).state == JobState.RUNNING.value
            assert uow.queue.pending_for(running) == []
            assert (uow.jobs.get(waiting).state, uow.jobs.get(waiting).reason) == (
                JobState.ABORTED.value, PROXY_EXPIRED_REASON)
        assert job_proxy_path(rt, running).read_bytes() == long  # not replaced by the expired one
        with rt.uow() as uow:  # once its own copy has ended
            assert abort_expired_credential(uow, rt, dn, DELEG, end_of(long)) == [running]
        with rt.uow() as uow:
            assert (uow.jobs.get(running).state, uow.jobs.get(running).reason) == (
                JobState.ABORTED.value, PROXY_EXPIRED_REASON)
            assert [r.command for r in uow.queue.pending_for(running)] == ["cancel"]

    def test_a_job_that_rewrote_its_copy_is_aborted_once_the_credential_expired(self, rt: Runtime, pki: Pki) -> None:
        # the job's account owns its copy: a certificate of its own ending in 10 years, or its
        # own proxy once ended, does not keep it running
        dn, now = pki.users["alice"].dn, utcnow()
        delegate(rt, dn, proxy(pki, "alice", 60, now - dt.timedelta(minutes=5)), now)  # ended
        forged = add_job(rt, dn, "forged", JobState.RUNNING, now)
        other = add_job(rt, dn, "other", JobState.RUNNING, now)
        for job_id, copy in ((forged, self_signed(days=3650)), (other, proxy(pki, "bob", 12 * 3600, now))):
            job_proxy_path(rt, job_id).parent.mkdir(parents=True)
            install_proxy(job_proxy_path(rt, job_id).parent, copy, None)
        assert RenewalWorker(rt).step().aborted == 2
        with rt.uow() as uow:
            for job_id in (forged, other):
                assert (uow.jobs.get(job_id).state, uow.jobs.get(job_id).reason) == (
                    JobState.ABORTED.value, PROXY_EXPIRED_REASON)
                assert [r.command for r in uow.queue.pending_for(job_id)] == ["cancel"]

    def test_a_destroyed_delegations_running_jobs_run_on_until_their_copies_end(
        self, rt: Runtime, pki: Pki, alice
    ) -> None:
        # they were never aborted (expired_credentials joined the delegation row), and ran on
        # with ended proxies; the record stays, and renewal resumes once delegated again
        dn, now = alice
        with rt.uow() as uow:
            copy = stored_proxy(uow, rt, dn, DELEG)
        assert copy is not None
        running = add_job(rt, dn, "running", JobState.RUNNING, now)
        job_proxy_path(rt, running).parent.mkdir(parents=True)
        install_proxy(job_proxy_path(rt, running).parent, copy, None)
        waiting = add_job(rt, dn, "waiting", JobState.WAITING, now)
        registered = add_job(rt, dn, "registered", JobState.SUBMITTED, now)
        destroy(rt, Principal(dn), DELEG)
        later = end_of(copy) + dt.timedelta(seconds=1)
        with rt.uow() as uow:
            assert expired_credentials(uow, now) == [(dn, DELEG)]
            assert abort_expired_credential(uow, rt, dn, DELEG, now) == []  # its copy is valid
            assert due_renewals(uow, rt, now) == []  # nothing to renew it with
            assert deregister_unused(uow, later) == 0
        with rt.uow() as uow:
            assert abort_expired_credential(uow, rt, dn, DELEG, later) == [running]
        with rt.uow() as uow:
            assert (uow.jobs.get(running).state, uow.jobs.get(running).reason) == (
                JobState.ABORTED.value, DESTROYED_REASON)
            assert [r.command for r in uow.queue.pending_for(running)] == ["cancel"]
            for job_id, state in ((waiting, JobState.WAITING), (registered, JobState.SUBMITTED)):
                assert uow.jobs.get(job_id).state == state.value  # they wait for a proxy delegated again
            assert expired_credentials(uow, later) == []
            assert renewal_status(uow, dn, DELEG) is not None  # the waiting jobs use it
        delegate(rt, dn, proxy(pki, "alice", 20 * 60, now), now)
        with rt.uow() as uow:
            assert len(due_renewals(uow, rt, now)) == 1

    def test_a_record_in_use_stays(self, rt: Runtime, alice) -> None:
        dn, now = alice
        add_job(rt, dn, "running", JobState.RUNNING, now)
        with rt.uow() as uow:
            assert deregister_unused(uow, now) == 0
        with rt.uow() as uow:
            assert renewal_status(uow, dn, DELEG) is not None
