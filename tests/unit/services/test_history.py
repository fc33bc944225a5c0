"""Job history and listing rules (services/history.py, services/listing.py; issue 12)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.support import ECHO_JDL
from wmproxy.domain import JobState, Principal, utcnow
from wmproxy.errors import AuthorizationError, InvalidArgumentError, JobNotFoundError
from wmproxy.services import history, jobs, listing
from wmproxy.services.acl import add_acl_items
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import register_job

TAGGED = '[ Executable = "/bin/echo"; UserTags = [ campaign = "c1"; run = 7 ]; ]'


def move(rt: Runtime, job_id: str, state: JobState, **kwargs: object) -> None:
    with rt.uow() as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        uow.jobs.set_state(job, state.value, utcnow(), **kwargs)  # type: ignore[arg-type]


class TestEvents:
    def test_state_changes_and_actions_are_recorded_with_kind_and_source(
            self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        move(rt, job_id, JobState.RUNNING)
        jobs.cancel_job(rt, alice, job_id)
        found = history.job_history(rt, alice, job_id)
        assert [(e.kind, e.state, e.source) for e in found.events] == [
            ("registered", "Submitted", "user"), ("running", "Running", "worker"),
            ("cancel_requested", "Running", "user")]
        assert all(e.at.tzinfo is not None for e in found.events)
        with rt.uow() as uow:  # the state history stays what it was: state changes only
            assert [e.state for e in uow.jobs.events(job_id)] == ["Submitted", "Running"]

    def test_filters_by_kind_and_period(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        move(rt, job_id, JobState.DONE, exit_code=0)
        assert [e.kind for e in history.job_history(rt, alice, job_id, kinds=["done"]).events] == ["done"]
        later = utcnow() + dt.timedelta(hours=1)
        assert history.job_history(rt, alice, job_id, since=later).events == ()
        assert len(history.job_history(rt, alice, job_id, until=later).events) == 2
        with pytest.raises(InvalidArgumentError, match="Unknown event kind"):
            history.job_history(rt, alice, job_id, kinds=["nonsense"])
        with pytest.raises(InvalidArgumentError, match="after its end"):
            history.job_history(rt, alice, job_id, since=later, until=utcnow())

    def test_unknown_kind_or_source_is_refused_by_the_store(self, rt: Runtime, alice: Principal,
                                                             delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        with rt.uow() as uow:
            job = uow.jobs.get(job_id)
            assert job is not None
            with pytest.raises(ValueError, match="unknown job event"):
                uow.jobs.record_event(job, "exploded", utcnow(), source="user")
            with pytest.raises(ValueError, match="unknown job event"):
                uow.jobs.record_event(job, "retry", utcnow(), source="somebody")

    def test_summary_names_missing_outputs_tags_and_state_times(self, rt: Runtime, alice: Principal,
                                                                 delegated: str) -> None:
        job_id = register_job(rt, alice, TAGGED, delegated).job_id
        move(rt, job_id, JobState.DONE, exit_code=0,
             reason="output sandbox file a.txt not collected: not produced; "
                    "output sandbox file b.txt not collected: symbolic link")
        summary = history.job_history(rt, alice, job_id).job
        assert summary.missing_outputs == (("a.txt", "not produced"), ("b.txt", "symbolic link"))
        assert summary.user_tags == {"campaign": "c1", "run": "7"}
        assert set(summary.state_times) == {"Submitted", "Done"}
        assert (summary.status, summary.owner_dn) == ("Done (Exit Code 0)", alice.dn)

    def test_a_collections_tags_read_though_its_node_names_are_quoted(self, rt: Runtime, alice: Principal,
                                                                       delegated: str) -> None:
        """A parent's registered JDL names its nodes, quoted when not plain (``'Node_run-1'``): its
        UserTags are still read (the user's JDL parser refuses quoted names)."""
        jdl = ('[ Type = "collection"; UserTags = [ campaign = "c1" ]; '
               'nodes = { [ NodeName = "run-1"; Executable = "/bin/echo"; ] }; ]')
        job_id = register_job(rt, alice, jdl, delegated).job_id
        with rt.uow() as uow:
            job = uow.jobs.get(job_id)
            assert job is not None and "'" in job.jdl_registered  # a quoted node name
        assert history.job_history(rt, alice, job_id).job.user_tags == {"campaign": "c1"}

    def test_only_owner_and_acl_readers(self, rt: Runtime, alice: Principal, bob: Principal,
                                        delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        with pytest.raises(AuthorizationError):
            history.job_history(rt, bob, job_id)
        add_acl_items(rt, alice, job_id, [bob.dn])
        assert history.job_history(rt, bob, job_id).job.job_id == job_id
        with pytest.raises(JobNotFoundError):
            history.job_history(rt, alice, job_id[:-2] + "zz")


class TestListing:
    def test_own_and_shared_jobs_newest_first_with_filters_and_paging(
            self, rt: Runtime, alice: Principal, bob: Principal, delegated: str) -> None:
        first = register_job(rt, alice, TAGGED, delegated).job_id
        second = register_job(rt, alice, ECHO_JDL, delegated).job_id
        move(rt, second, JobState.RUNNING)
        page = listing.list_jobs(rt, alice, listing.JobFilter())
        assert ([j.job_id for j in page.jobs], page.total) == ([second, first], 2)
        only = listing.list_jobs(rt, alice, listing.JobFilter(states=("running",)))
        assert [j.job_id for j in only.jobs] == [second]
        assert [j.job_id for j in listing.list_jobs(
            rt, alice, listing.JobFilter(exclude_states=("Running",))).jobs] == [first]
        assert [j.job_id for j in listing.list_jobs(
            rt, alice, listing.JobFilter(user_tags={"campaign": "c1"})).jobs] == [first]
        paged = listing.list_jobs(rt, alice, listing.JobFilter(offset=1, limit=1))
        assert ([j.job_id for j in paged.jobs], paged.total) == ([first], 2)
        assert listing.list_jobs(rt, bob, listing.JobFilter()).total == 0
        add_acl_items(rt, alice, first, [bob.dn])
        assert [j.job_id for j in listing.list_jobs(rt, bob, listing.JobFilter()).jobs] == [first]

    @pytest.mark.parametrize("bad", [
        listing.JobFilter(states=("Sleeping",)), listing.JobFilter(limit=0),
        listing.JobFilter(limit=listing.MAX_PAGE + 1), listing.JobFilter(offset=-1),
    ])
    def test_bad_filters_are_invalid_arguments(self, rt: Runtime, alice: Principal, bad: listing.JobFilter) -> None:
        with pytest.raises(InvalidArgumentError):
            listing.list_jobs(rt, alice, bad)


class TestWorkerAndRenewalEvents:
    def test_match_retry_and_backend_submission(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        from wmproxy.services.execution import claim_next_start, set_state
        from wmproxy.services.retries import AttemptEnd, end_attempt
        from wmproxy.services.submission import submit_job

        job_id = submit_job(rt, alice, '[ Executable = "/bin/hostname"; ShallowRetryCount = 1; ]', delegated).job_id
        order = claim_next_start(rt, "w1")
        assert order is not None and order.job_id == job_id
        set_state(rt, job_id, JobState.SCHEDULED, backend_ref="local:h:1:/work/x")
        end_attempt(rt, job_id, AttemptEnd(JobState.ABORTED, reason="prologue failed", payload_started=False))
        events = history.job_history(rt, alice, job_id).events
        assert [e.kind for e in events] == ["registered", "enqueued", "matched", "scheduled", "backend_submitted",
                                            "retry", "enqueued"]
        by_kind = {e.kind: e for e in events}
        assert by_kind["backend_submitted"].reason == "submitted to local:h:1:/work/x"
        assert by_kind["retry"].source == "worker" and by_kind["retry"].reason.startswith("shallow resubmission: ")
        assert by_kind["matched"].reason.startswith("matched to CE ")

    def test_renewal_outcomes_on_held_jobs(self, rt: Runtime, alice: Principal, delegated: str) -> None:
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        move(rt, job_id, JobState.RUNNING)
        for result, error in (("renewed", None), ("failed", "myproxy down"), ("failed", "myproxy down"),
                              ("failed", "bad password")):
            with rt.uow() as uow:
                history.note_renewal(uow, alice.dn, delegated, result, error, utcnow())
        events = history.job_history(rt, alice, job_id, kinds=["proxy_renewed", "renewal_failed"]).events
        assert [(e.kind, e.source, e.reason) for e in events] == [
            ("proxy_renewed", "renewal", "proxy renewed from MyProxy"),
            ("renewal_failed", "renewal", "proxy renewal failed: myproxy down"),
            ("renewal_failed", "renewal", "proxy renewal failed: bad password")]

    def test_refusals_are_recorded_once_until_the_result_changes(self, rt: Runtime, alice: Principal,
                                                                 delegated: str) -> None:
        """Red team: a MyProxy server that changed its refusal's text at each attempt made a new
        event on every held job at every attempt; the record's last_error has the latest text."""
        job_id = register_job(rt, alice, ECHO_JDL, delegated).job_id
        move(rt, job_id, JobState.RUNNING)
        for result, error in (("refused", "attempt 1"), ("refused", "attempt 2"), ("unreachable", "down"),
                              ("refused", "attempt 3"), ("refused", "attempt 4"), ("renewed", None),
                              ("refused", "attempt 5")):
            with rt.uow() as uow:
                history.note_renewal(uow, alice.dn, delegated, result, error, utcnow())
        events = history.job_history(rt, alice, job_id, kinds=["proxy_renewed", "renewal_failed"]).events
        assert [e.reason for e in events] == [
            "proxy renewal refused: attempt 1", "proxy renewal unreachable: down", "proxy renewal refused: attempt 3",
            "proxy renewed from MyProxy", "proxy renewal refused: attempt 5"]
