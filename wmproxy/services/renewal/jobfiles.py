"""Which proxy copies of running jobs get the stored proxy (issue 4): the copy lives in the
job's work dir, ``<work root>/<job>/user.proxy`` (issue 8: 0600, owned by the job's mapped
account).

After a renewal the renewal worker rewrites the copy of every job a worker holds
(:func:`wmproxy.renewal.jobfiles.push_job_proxy`, the edge that writes as the account);
each pass also rewrites the copies that ended up older than the stored proxy
(:func:`stale_job_proxies`: a push lost to a crash, a job staged with the proxy read just
before a renewal, a re-delegation under the same id, which lets a user extend running jobs).

Only into a job the stored proxy fits (:class:`ProxyFit`): a job keeps the local account and
the ``VOMS_FQAN`` it was registered, mapped and matched with, so a proxy delegated again with
another primary FQAN (``/atlas/uk`` for a job of ``/atlas/Role=production``) is not written
into it. The job keeps its own copy (it gets the stored proxy again once the FQANs agree
again) and gets one ``renewal_failed`` event per stored proxy, not one per pass.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cachetools import LRUCache

from wmproxy.domain import JOB_PROXY_NAME, JobState
from wmproxy.errors import SandboxError, WMProxyError
from wmproxy.jdl.parse import parse_stored_jdl
from wmproxy.sandbox.confined import open_confined
from wmproxy.security.chain import SETTLED_NS, ca_dir_state, load_pem_chain
from wmproxy.security.gridmap import normalise_fqan
from wmproxy.security.renewed import verified_proxy_end
from wmproxy.security.voms import verified_fqans
from wmproxy.services import history
from wmproxy.services.delegation import ac_host_names
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork
from wmproxy.store.renewals import JobProxyTarget
from wmproxy.store.schema import Delegation, Job

#: States of jobs a worker holds; their proxy copy gets the renewed proxy.
HELD_STATES = (JobState.READY.value, JobState.SCHEDULED.value, JobState.RUNNING.value)


def job_proxy_path(rt: Runtime, job_id: str) -> Path:
    """The job's proxy copy in its work dir (the job area's ``proxy_file``), what the job
    sees as ``X509_USER_PROXY``."""
    return rt.storage.job_area(job_id).proxy_file


#: Bytes of a job's proxy copy read to learn its end (a proxy file is a few kB).
MAX_PROXY_BYTES = 64 * 1024


#: The end :func:`job_proxy_end` gives a copy that is there but is not a valid proxy of the
#: job's owner: ended long ago.
COPY_NOT_VALID = dt.datetime.min.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class _CheckedCopy:
    """What :func:`job_proxy_end` found of a job's copy: the copy's ``(st_dev, st_ino,
    st_mtime_ns, st_size, st_ctime_ns)``, the owner, CA directory (its parsed state,
    :func:`~wmproxy.security.chain.ca_dir_state`) and depth limit it was verified for, and its
    end (None: not a valid proxy of the owner)."""

    stat: tuple[int, int, int, int, int]
    owner_dn: str
    ca_dir: str
    ca_state: object
    max_depth: int
    end: dt.datetime | None


#: Copies checked, by job id (one entry a job: its copy as last checked).
_checked: LRUCache[str, _CheckedCopy] = LRUCache(maxsize=100_000)
_checked_lock = threading.Lock()


def job_proxy_end(rt: Runtime, job_id: str, owner_dn: str, now: dt.datetime) -> dt.datetime | None:
    """The end (aware UTC) of the job's proxy copy, trusted only as far as it verifies: None
    when there is no copy (not staged yet, or cleaned up), :data:`COPY_NOT_VALID` when there is
    one that is not a valid proxy of ``owner_dn`` at ``now`` (ended, rewritten by the job,
    unreadable, not a regular file of its own, over :data:`MAX_PROXY_BYTES`, deeper than
    ``[limits] max_proxy_chain_depth`` or with a key slow to verify with,
    :func:`~wmproxy.security.renewed.check_chain_cost`).

    The file is in the job's work dir, which the job's account owns: it is read without
    trusting it (:func:`~wmproxy.sandbox.confined.open_confined`: no link followed, a FIFO
    not waited for, a hard link refused) and at most :data:`MAX_PROXY_BYTES` of it. Read by
    path, a FIFO there blocked the renewal worker for good inside its transaction, and a
    link made it read any file (``/dev/zero``: all of it). Its end counts only if it verifies
    as a chain of the owner to the CA directory
    (:func:`~wmproxy.security.renewed.verified_proxy_end`): a job that wrote a certificate of
    its own ending in ten years would otherwise never be aborted once its credential expired.

    Every pass asks this of every held job: a copy is verified once, and its result kept while
    the file's ``stat`` (device, inode, mtime, size, ctime: a write or a rename changes the
    ctime, which no user sets) and the CA directory stay as they were (red team: a job's copy
    made slow to verify cost each pass 156 ms). A file changed within
    :data:`~wmproxy.security.chain.SETTLED_NS` of the check is not kept (a second write within
    the file system's timestamp granularity would leave the same ``stat``).
    """
    area = rt.storage.job_area(job_id)
    try:
        fd = open_confined(area.work_dir, JOB_PROXY_NAME)
    except SandboxError:
        return COPY_NOT_VALID if os.path.lexists(area.proxy_file) else None
    ca_dir, max_depth = rt.settings.security.ca_dir, rt.settings.limits.max_proxy_chain_depth
    try:
        with os.fdopen(fd, "rb") as copy:
            st = os.fstat(copy.fileno())  # before the read: a write after it changes the stat
            key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns)
            try:
                ca_state = ca_dir_state(ca_dir)
            except WMProxyError:
                return COPY_NOT_VALID
            with _checked_lock:
                kept = _checked.get(job_id)
            if kept is not None and kept == _CheckedCopy(key, owner_dn, ca_dir, ca_state, max_depth, kept.end):
                return kept.end if kept.end is not None and kept.end > now else COPY_NOT_VALID
            data = copy.read(MAX_PROXY_BYTES + 1)
    except OSError:
        return COPY_NOT_VALID
    end = _verified_end(data, owner_dn, ca_dir, max_depth, now)
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) >= SETTLED_NS:
        with _checked_lock:
            _checked[job_id] = _CheckedCopy(key, owner_dn, ca_dir, ca_state, max_depth, end)
    return end if end is not None else COPY_NOT_VALID


def _verified_end(data: bytes, owner_dn: str, ca_dir: str, max_depth: int, now: dt.datetime) -> dt.datetime | None:
    """The end of the copy ``data`` if it is a valid proxy of ``owner_dn`` at ``now``, else None."""
    if len(data) > MAX_PROXY_BYTES:
        return None
    try:
        return verified_proxy_end(data, owner_dn, ca_dir, now, max_depth=max_depth)
    except (WMProxyError, ValueError):
        return None


def registered_fqan(job: Job) -> str | None:
    """The primary FQAN the job was registered with: its registered JDL's ``VOMS_FQAN``, the
    first verified FQAN of the delegated proxy at registration, which the account mapping
    chose the job's account with and matching read (None: the proxy proved no FQAN then).

    Only the primary FQAN is stored with a job, so it is all a proxy is compared on.

    Raises:
        JdlSyntaxError: the registered JDL does not parse (never seen: the service wrote it).
    """
    value = parse_stored_jdl(job.jdl_registered).get("VOMS_FQAN")
    return value if isinstance(value, str) and value else None


@dataclass
class ProxyFit:
    """Which held jobs of one credential may get its stored proxy ``proxy_pem``, credited with
    ``fqans`` (``delegations.fqans``: the FQANs verified when it was delegated, primary first,
    which a MyProxy renewal never changes).

    A job fits when its registered primary FQAN (:func:`registered_fqan`) is the proxy's
    (compared as the mapping does, ``/Role=NULL`` and ``/Capability=NULL`` left out), or, for a
    job registered without one, when the proxy proves no FQAN now either (no VOMS AC, or none
    that verifies: a MyProxy renewal that could not refresh them). A job of another FQAN, or
    one registered without an FQAN to which the proxy would bring one, does not fit.
    """

    rt: Runtime
    proxy_pem: bytes
    fqans: Sequence[str]
    not_after: dt.datetime
    now: dt.datetime
    _proven: tuple[str, ...] | None = field(default=None, init=False, repr=False)

    @classmethod
    def stored(cls, rt: Runtime, row: Delegation, now: dt.datetime) -> ProxyFit:
        """The fit of the proxy stored in the delegation ``row`` (opened here) at ``now``."""
        return cls(rt, rt.sealer.open(row.sealed_proxy), [f for f in row.fqans.split("\n") if f], row.not_after,
                   now)

    def reason(self, job: Job) -> str | None:
        """None when the proxy fits ``job``, else why not (the text of the job's event)."""
        try:
            held = registered_fqan(job)
        except WMProxyError:
            return "proxy not written into the job: its registered JDL cannot be read; the job keeps its proxy"
        primary = self.fqans[0] if self.fqans else None
        if held is not None and primary is not None and normalise_fqan(held) == normalise_fqan(primary):
            return None
        if held is None and (primary is None or not self.proven()):
            return None
        return (f"proxy not written into the job: the proxy stored for its delegation (valid until "
                f"{self.not_after.isoformat()}) has {_fqan_text(primary)}, the job was registered and mapped "
                f"with {_fqan_text(held)}; the job keeps its proxy")

    def proven(self) -> tuple[str, ...]:
        """The FQANs ``proxy_pem`` proves now (VOMS ACs that verify), computed once."""
        if self._proven is None:
            sec = self.rt.settings.security
            try:
                self._proven = verified_fqans(load_pem_chain(self.proxy_pem), vomsdir=sec.vomsdir,
                                              ca_dir=sec.ca_dir, at=self.now, host_names=ac_host_names(self.rt))
            except WMProxyError:
                self._proven = ()
        return self._proven


def _fqan_text(fqan: str | None) -> str:
    return f"the VOMS FQAN {fqan}" if fqan else "no VOMS FQAN"


def fitting_jobs(uow: UnitOfWork, fit: ProxyFit, jobs: Sequence[Job]) -> tuple[list[str], list[str]]:
    """The ids of the ``jobs`` ``fit`` allows and of the others, which keep their copies; each of
    those gets a ``renewal_failed`` event with the reason, once per reason (the reason names the
    stored proxy's end: :func:`~wmproxy.services.history.note_proxy_kept`). In the caller's
    transaction."""
    fitting: list[str] = []
    kept: list[str] = []
    for job in jobs:
        reason = fit.reason(job)
        if reason is None:
            fitting.append(job.id)
        else:
            kept.append(job.id)
            history.note_proxy_kept(uow, job, reason, fit.now)
    return fitting, kept


@dataclass(frozen=True)
class ProxyRefresh:
    """The stored proxy of one credential and the held jobs whose copies it replaces;
    ``ended``: the held jobs it does not fit whose own copies have ended (to be aborted:
    :func:`~wmproxy.services.renewal.expiry.abort_ended_copies`)."""

    owner_dn: str
    delegation_id: str
    proxy_pem: bytes
    job_ids: list[str]
    ended: list[str] = field(default_factory=list)


#: Stale copies by credential (owner DN, delegation id): the job id and the end of each.
StaleCopies = dict[tuple[str, str], dict[str, dt.datetime]]


def stale_copies(rt: Runtime, targets: Sequence[JobProxyTarget], now: dt.datetime) -> StaleCopies:
    """Of ``targets`` (:meth:`~wmproxy.store.renewals.RenewalRepository.held_jobs`), the jobs
    whose proxy copy ends before the stored proxy of their credential (by more than a second; a
    copy that is not a valid proxy of the owner counts as ended, :func:`job_proxy_end`), with
    those ends. Reads the copies: outside any transaction (the renewal worker's), or in one.

    ``targets`` are all the held jobs: what :func:`job_proxy_end` kept of a job no longer among
    them is dropped (one entry a job held now, not one a job ever held)."""
    stale: StaleCopies = {}
    for target in targets:
        end = job_proxy_end(rt, target.job_id, target.owner_dn, now)
        if end is not None and end < target.not_after - dt.timedelta(seconds=1):
            stale.setdefault((target.owner_dn, target.delegation_id), {})[target.job_id] = end
    _forget_checked_except({target.job_id for target in targets})
    return stale


def _forget_checked_except(held: set[str]) -> None:
    """Drop the checked copies of jobs not in ``held`` (job ids)."""
    with _checked_lock:
        for job_id in [job_id for job_id in _checked if job_id not in held]:
            del _checked[job_id]


def stale_job_proxies(uow: UnitOfWork, rt: Runtime, now: dt.datetime,
                      stale: StaleCopies | None = None) -> list[ProxyRefresh]:
    """Jobs a worker holds whose proxy copy ends before the stored proxy of their credential
    (:func:`stale_copies`: ``stale`` when the caller read the copies before this transaction,
    else read here) and which that proxy fits (:class:`ProxyFit`, at ``now``, aware
    UTC), with the stored proxy read in this transaction. A job it does not fit keeps its copy
    and gets its event (:func:`fitting_jobs`), in the caller's transaction; once that copy has
    ended, the job is in ``ended`` (nothing else would ever stop it while the stored proxy
    stays valid, renewed for the very jobs it fits). A job no longer held is left out."""
    if stale is None:
        stale = stale_copies(rt, uow.renewals.held_jobs(HELD_STATES), now)
    refreshes: list[ProxyRefresh] = []
    for (owner_dn, delegation_id), ends in stale.items():
        row = uow.delegations.get(owner_dn, delegation_id)
        if row is None:
            continue
        fit = ProxyFit.stored(rt, row, now)
        jobs = [job for job in (uow.jobs.get(job_id) for job_id in ends)
                if job is not None and job.state in HELD_STATES]
        fitting, kept = fitting_jobs(uow, fit, jobs)
        ended = [job_id for job_id in kept if ends[job_id] <= now]
        if fitting or ended:
            refreshes.append(ProxyRefresh(owner_dn, delegation_id, fit.proxy_pem, fitting, ended))
    return refreshes
