"""Collections, DAGs and parametric jobs after registration (``wmproxy-behaviour.md`` §2.3, §9.5).

The parent row stands for the whole job; each node is a job of its own (``parent_id``)
with its own sandbox area, and DAG edges are ``job_dependencies`` rows. Starting the
parent queues every node that depends on nothing; when a node ends Done with exit code
0, its dependents whose parents all did so are queued; when it ends any other way its
descendants are aborted with a reason. The parent's state follows its nodes.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence

from wmproxy.domain import ACTIVE_STATES, FINAL_STATES, JobState
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job


def start_nodes(uow: UnitOfWork, parent: Job, now: dt.datetime) -> None:
    """jobStart of a compound job: every node that has not ended becomes Waiting; those
    without parents are queued.

    A node that ended before the start (cancelled alone while the job was Submitted, or a
    DAG descendant aborted because of such a cancel) keeps its state and is not queued; the
    parent's state is then refreshed once. (A compound job whose nodes have all ended this
    way ended at the last of these cancels: :func:`end_unstarted`.)"""
    blocked = uow.jobs.nodes_with_dependencies(parent.id)
    ended = False
    for node in uow.jobs.children(parent.id):
        if JobState(node.state) in FINAL_STATES:
            ended = True
            continue
        uow.jobs.set_state(node, JobState.WAITING.value, now)
        if node.id not in blocked:
            uow.queue.enqueue(node.id, "start", now)
    if ended:
        refresh_parent(uow, parent, now)


def succeeded(job: Job) -> bool:
    return job.state == JobState.DONE.value and job.exit_code == 0


def on_node_ended(uow: UnitOfWork, node: Job, now: dt.datetime) -> None:
    """Release or abort the node's dependents, then refresh the parent's state.

    Nothing here recurses per node: the descendants of a node that did not succeed are
    walked with a stack (:func:`_abort_descendants`), and the parent is refreshed once."""
    if node.parent_id is None:
        return
    if not succeeded(node):
        _abort_descendants(uow, node, now)
    else:
        for dependent_id in uow.jobs.dependents(node.id):
            _release_if_ready(uow, dependent_id, now)
    parent = uow.jobs.get(node.parent_id)
    if parent is not None:
        refresh_parent(uow, parent, now)


def on_nodes_succeeded(uow: UnitOfWork, nodes: Sequence[tuple[str, str]], now: dt.datetime) -> None:
    """:func:`on_node_ended` for several nodes of ``(node id, compound job id)`` whose rows this
    transaction has just changed to Done with exit code 0 (``SqlJobStore.set_states``, so no ORM
    object of theirs is held): the dependents of all of them read in one query and each released
    once when every node it waits for succeeded (in the order node after node would have
    released them), then each compound job refreshed once.

    What this leaves is what :func:`on_node_ended` node after node leaves (the same start
    requests, the compound jobs in the same state with the same event): a dependent waiting
    for several of these nodes is released once, after the last of them, and a compound job
    takes the state its nodes give once they have all changed, with the Running a refresh after
    each node would have written first when it was still Waiting (:func:`refresh_parent`'s
    ``changed``): its other intermediate refreshes would have written nothing."""
    if not nodes:
        return
    position = {node_id: i for i, (node_id, _parent) in enumerate(nodes)}
    last: dict[str, int] = {}  # dependent -> the last of these nodes it waits for (node after node, checked there)
    for dependent_id, depends_on in uow.jobs.edges_to(list(position)):
        last[dependent_id] = max(last.get(dependent_id, -1), position[depends_on])
    for dependent_id in sorted(last, key=last.__getitem__):
        _release_if_ready(uow, dependent_id, now)
    refresh_parents(uow, (parent_id for _node, parent_id in nodes), now)


def refresh_parents(uow: UnitOfWork, parent_ids: Iterable[str], now: dt.datetime) -> None:
    """:func:`refresh_parent` once for each compound job of ``parent_ids``, after a batch of its
    nodes changed state (a worker cycle's Scheduled, Running or Done): one id per node changed
    (repeated for several nodes of one compound job)."""
    for parent_id, changed in Counter(parent_ids).items():
        parent = uow.jobs.get(parent_id)
        if parent is not None:
            refresh_parent(uow, parent, now, changed=changed)


def _release_if_ready(uow: UnitOfWork, dependent_id: str, now: dt.datetime) -> None:
    """Queue the start of DAG node ``dependent_id`` if it is Waiting and every node it waits for
    succeeded."""
    dependent = uow.jobs.get(dependent_id)
    if dependent is not None and dependent.state == JobState.WAITING.value and all(
        _done_ok(uow, dep) for dep in uow.jobs.dependencies(dependent.id)
    ):
        uow.queue.enqueue(dependent.id, "start", now)


def _done_ok(uow: UnitOfWork, job_id: str) -> bool:
    job = uow.jobs.get(job_id)
    return job is not None and succeeded(job)


def _abort_descendants(uow: UnitOfWork, node: Job, now: dt.datetime) -> None:
    """Abort every unfinished DAG descendant of ``node`` (which did not succeed), each with
    the reason "dependency <the node it waited for> did not end successfully"; one a worker
    holds also gets a ``cancel`` request. A descendant that has ended already is left as it
    is, and so are its own descendants (as far as they depend on nothing else aborted).

    The DAG below ``node`` is read one level per query (``SqlJobStore.descendants``), pruned
    at the nodes that have ended (not read below them: after a whole cancel of a chain, the
    end of its held first node reads one level, not the whole chain), and
    walked with a stack and a set of the nodes seen, never by recursion: a chain of 10,000 nodes
    (``[jobs] max_nodes``) is as deep as it is long, and a recursion per node ended in a
    RecursionError past about a thousand (in the execution worker, a crash at every restart)."""
    edges, jobs = uow.jobs.descendants(node.id, _FINAL)
    below: dict[str, list[str]] = {}
    for job_id, depends_on in edges:
        below.setdefault(depends_on, []).append(job_id)
    stack = [(job_id, node.node_name) for job_id in sorted(below.get(node.id, ()), reverse=True)]
    seen: set[str] = set()
    while stack:
        job_id, cause = stack.pop()
        if job_id in seen:
            continue
        seen.add(job_id)
        job = jobs.get(job_id)
        if job is None or JobState(job.state) in FINAL_STATES:
            continue
        if JobState(job.state) in ACTIVE_STATES and job.state != JobState.WAITING.value:
            uow.queue.enqueue(job.id, "cancel", now)  # a worker holds it: stop the process
        uow.jobs.set_state(job, JobState.ABORTED.value, now, reason=f"dependency {cause} did not end successfully")
        stack.extend((dependent_id, job.node_name) for dependent_id in sorted(below.get(job.id, ()), reverse=True))


#: The event of a cancel of a whole compound job (``wmproxy.services.jobs.cancel_job``).
CANCEL_REQUESTED = "cancel_requested"

#: Node states that make a compound job Running (once every node is final it ends).
_STARTED_STATES = (JobState.RUNNING, JobState.DONE, JobState.ABORTED, JobState.CANCELLED)
_NOT_FINAL = tuple(state.value for state in JobState if state not in FINAL_STATES)
_FINAL = tuple(state.value for state in FINAL_STATES)


def refresh_parent(uow: UnitOfWork, parent: Job, now: dt.datetime, *, changed: int = 1) -> None:
    """Set the parent's state from its nodes'.

    ``changed``: how many of its nodes the caller changed before this one refresh (a batch,
    :func:`refresh_parents`); a parent still Waiting whose nodes have all ended then goes through
    Running first, as a refresh after each of them would have had it (the first of them ended
    while the others had not).

    While a node has not ended: Running when a node has started, else Waiting; a parent once
    Running stays Running until it ends (a node resubmitted goes back to Waiting, the
    parent does not).
    Once every node has ended: as :func:`_final_state` says.

    Costs two indexed existence queries per call while a node is not final (never a load
    of every node: a node change of a 10,000-node collection costs what one of a 100-node
    collection does); the nodes are loaded once, when the last one has ended.
    """
    if parent.state in (JobState.SUBMITTED.value, JobState.CLEARED.value):
        return
    if uow.jobs.has_children_in(parent.id, _NOT_FINAL):
        started = parent.state == JobState.RUNNING.value or uow.jobs.has_children_in(
            parent.id, tuple(s.value for s in _STARTED_STATES))
        state, reason, code = (JobState.RUNNING if started else JobState.WAITING), None, None
    else:
        state, reason, code = _final_state(uow, parent)
        if changed > 1 and parent.state == JobState.WAITING.value:
            uow.jobs.set_state(parent, JobState.RUNNING.value, now)
    if parent.state != state.value or parent.reason != reason:
        uow.jobs.set_state(parent, state.value, now, reason=reason, exit_code=code)


def end_unstarted(uow: UnitOfWork, parent: Job, now: dt.datetime) -> bool:
    """End a compound job never started (Submitted) whose nodes have all ended (each
    cancelled alone, or aborted below such a node), as :func:`_final_state` says; True
    when it ended (its areas are then the caller's to release), False when it is not
    Submitted or a node has not ended."""
    if parent.state != JobState.SUBMITTED.value or uow.jobs.has_children_in(parent.id, _NOT_FINAL):
        return False
    state, reason, code = _final_state(uow, parent)
    uow.jobs.set_state(parent, state.value, now, reason=reason, exit_code=code)
    return True


def _final_state(uow: UnitOfWork, parent: Job) -> tuple[JobState, str | None, int | None]:
    """The state, reason and exit code of a compound job whose nodes have all ended.

    Done (exit code 0) when all succeeded; else Cancelled when all were cancelled or the
    compound job was cancelled as a whole (its :data:`CANCEL_REQUESTED` event; nodes that
    ended otherwise meanwhile do not change that); else Aborted when a node was aborted,
    Done with a failed node's exit code when none was.
    """
    nodes = uow.jobs.children(parent.id)
    states = [JobState(n.state) for n in nodes]
    if all(succeeded(n) for n in nodes):
        return JobState.DONE, None, 0
    if all(s == JobState.CANCELLED for s in states) or uow.jobs.history(parent.id, kinds=(CANCEL_REQUESTED,)):
        return JobState.CANCELLED, "Cancelled by user", None
    failed = [n for n in nodes if not succeeded(n)]
    reason = f"{len(failed)} of {len(nodes)} nodes did not end successfully"
    if any(s == JobState.ABORTED for s in states):
        return JobState.ABORTED, reason, None
    return JobState.DONE, reason, next((n.exit_code for n in failed if n.exit_code), 1)
