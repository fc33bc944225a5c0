"""Collections, DAGs and parametric jobs after registration (``wmproxy-behaviour.md`` §2.3, §9.5).

The parent row stands for the whole job; each node is a job of its own (``parent_id``)
with its own sandbox area, and DAG edges are ``job_dependencies`` rows. Starting the
parent queues every node that depends on nothing; when a node ends Done with exit code
0, its dependents whose parents all did so are queued; when it ends any other way its
descendants are aborted with a reason. The parent's state follows its nodes.
"""

from __future__ import annotations

import datetime as dt

from wmproxy.domain import ACTIVE_STATES, FINAL_STATES, JobState
from wmproxy.store import UnitOfWork
from wmproxy.store.schema import Job


def start_nodes(uow: UnitOfWork, parent: Job, now: dt.datetime) -> None:
    """jobStart of a compound job: every node becomes Waiting; those without parents are queued."""
    blocked = uow.jobs.nodes_with_dependencies(parent.id)
    for node in uow.jobs.children(parent.id):
        uow.jobs.set_state(node, JobState.WAITING.value, now)
        if node.id not in blocked:
            uow.queue.enqueue(node.id, "start", now)


def succeeded(job: Job) -> bool:
    return job.state == JobState.DONE.value and job.exit_code == 0


def on_node_ended(uow: UnitOfWork, node: Job, now: dt.datetime) -> None:
    """Release or abort the node's dependents, then refresh the parent's state."""
    if node.parent_id is None:
        return
    for dependent_id in uow.jobs.dependents(node.id):
        dependent = uow.jobs.get(dependent_id)
        if dependent is None or JobState(dependent.state) in FINAL_STATES:
            continue
        if not succeeded(node):
            _abort_subtree(uow, dependent, f"dependency {node.node_name} did not end successfully", now)
        elif dependent.state == JobState.WAITING.value and all(
            _done_ok(uow, dep) for dep in uow.jobs.dependencies(dependent.id)
        ):
            uow.queue.enqueue(dependent.id, "start", now)
    parent = uow.jobs.get(node.parent_id)
    if parent is not None:
        refresh_parent(uow, parent, now)


def _done_ok(uow: UnitOfWork, job_id: str) -> bool:
    job = uow.jobs.get(job_id)
    return job is not None and succeeded(job)


def _abort_subtree(uow: UnitOfWork, job: Job, reason: str, now: dt.datetime) -> None:
    if JobState(job.state) in FINAL_STATES:
        return
    if JobState(job.state) in ACTIVE_STATES and job.state != JobState.WAITING.value:
        uow.queue.enqueue(job.id, "cancel", now)  # a worker holds it: stop the process
    uow.jobs.set_state(job, JobState.ABORTED.value, now, reason=reason)
    for dependent_id in uow.jobs.dependents(job.id):
        dependent = uow.jobs.get(dependent_id)
        if dependent is not None:
            _abort_subtree(uow, dependent, f"dependency {job.node_name} did not end successfully", now)


#: Node states that make a compound job Running (once every node is final it ends).
_STARTED_STATES = (JobState.RUNNING, JobState.DONE, JobState.ABORTED, JobState.CANCELLED)
_NOT_FINAL = tuple(state.value for state in JobState if state not in FINAL_STATES)


def refresh_parent(uow: UnitOfWork, parent: Job, now: dt.datetime) -> None:
    """Set the parent's state from its nodes'.

    Costs two indexed existence queries per call while a node is not final (never a load
    of every node: a node change of a 10,000-node collection costs what one of a 100-node
    collection does); the nodes are loaded once, when the last one has ended.
    """
    if parent.state in (JobState.SUBMITTED.value, JobState.CLEARED.value):
        return
    if uow.jobs.has_children_in(parent.id, _NOT_FINAL):
        started = uow.jobs.has_children_in(parent.id, tuple(s.value for s in _STARTED_STATES))
        state, reason, code = (JobState.RUNNING if started else JobState.WAITING), None, None
    else:
        nodes = uow.jobs.children(parent.id)
        states = [JobState(n.state) for n in nodes]
        if all(succeeded(n) for n in nodes):
            state, reason, code = JobState.DONE, None, 0
        elif all(s == JobState.CANCELLED for s in states):
            state, reason, code = JobState.CANCELLED, "Cancelled by user", None
        else:
            failed = [n for n in nodes if not succeeded(n)]
            state, code = JobState.DONE, next((n.exit_code for n in failed if n.exit_code), 1)
            reason = f"{len(failed)} of {len(nodes)} nodes did not end successfully"
            if any(s == JobState.ABORTED for s in states):
                state, code = JobState.ABORTED, None
    if parent.state != state.value or parent.reason != reason:
        uow.jobs.set_state(parent, state.value, now, reason=reason, exit_code=code)
