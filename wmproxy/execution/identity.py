"""The identity switch: prepare a job's work dir for its mapped account, start the job
wrapper (:mod:`wmproxy.execution.jobwrapper`) as that account, read its outcome back,
and remove the work dir. The execution worker is the only privileged part of wmproxy;
this module holds everything it does with its privileges.

Layout of a work dir (``<work_root>/<name>``)::

    <work_root>/             owned by the worker, not writable by group/other
      <name>/                account:group 0700   (HOME of the job)
        .wmproxy/            account:group 0700   wrapper state
          job.marshal        account:group 0400   the JobSpec (JobSpec.to_bytes, written atomically;
                                                  a wrapper forked by a zygote has it in memory:
                                                  not written then)
          wrapper.log        account:group 0600   wrapper's stdout/stderr (from a zygote: only once
                                                  the wrapper writes to it)
          jobwrapper.py      account:group 0500   copy of the wrapper (batch backends only)
          slurm.sh           account:group 0400   the batch script (Slurm backend only)
          started.json       written by the wrapper once the payload has been executed
          status.json        written by the wrapper when everything has ended (started.json
                                                  rewritten and renamed, when there was one)
        user.proxy           account:group 0600   the job's proxy copy
        tmp/                 created by the wrapper (TMPDIR), unless the work dir is a reused one
      .spare.<random>/       an emptied work dir (the three directories above) kept for the
                             next job of its account (:func:`recycle_work_dir`)

Trust model: everything below ``<name>`` belongs to the account and the wrapper runs as
the account, so the job can change any of it, including forging the exit code of its
own job in ``status.json``; that is accepted (the same holds for the reference
JobWrapper, which reports the outcome from the worker node as the job's user). What
the job must not achieve is to make the worker act on anything else, hence:

* the worker writes into the work dir only through descriptors (``O_NOFOLLOW``,
  ``O_EXCL``, ``dir_fd``) and renames, so a symlink or hard link the job plants is
  replaced, never followed (this host even runs with ``fs.protected_symlinks = 0``);
* a renewed proxy goes only into a work dir still at its job's name (:func:`renew_proxy`),
  checked under the work dir's ``flock``, under which the worker also empties and renames an
  ended job's work dir to reuse it (:func:`recycle_work_dir`): the next job of the account,
  maybe another user's (a static account), never gets the proxy of the job before;
* :func:`read_status` opens ``status.json`` without following symlinks and without
  blocking on a FIFO, accepts only a small regular file owned by the account, and
  checks every field's type and a number's range (an exit code 0-255, a signal 1-64) and
  escapes what text the database cannot carry (NUL, control characters, lone surrogates; cut
  at 16 Ki characters), so that nothing the job forges reaches the database unchecked;
  ``wrapper_pid`` in it is informational only: never signal
  a pid read from the work dir (signal the pid returned by :func:`spawn_wrapper`);
* :func:`remove_work_dir` removes the tree through descriptors, never following a symlink
  and without recursion, whatever its depth (:func:`wmproxy.sandbox.trees.remove_tree`), on
  a path whose parent (``work_root``) is owned by the worker, so the job cannot swap the
  directory itself for a link.

Privileges: run the worker as root, or as an unprivileged user holding exactly these
capabilities (e.g. systemd ``AmbientCapabilities=``), each for one step:

* ``CAP_CHOWN``: hand the work dir, ``.wmproxy``, the spec, the log, the staged input
  sandbox (each file through the descriptor that created it, in the local backend) and the
  proxy copy to the account (:func:`prepare_work_dir`, :func:`install_proxy`);
* ``CAP_SETGID``: ``setgroups([])`` and ``setregid`` in the wrapper's child;
* ``CAP_SETUID``: ``setreuid`` in the wrapper's child;
* ``CAP_KILL``: signal the wrapper and the job's process groups (other uid);
* ``CAP_DAC_OVERRIDE``: write the renewed proxy into the account's 0700 directory,
  read outputs whatever their mode, and remove the work dir even where the job made
  directories read-only. (``CAP_DAC_READ_SEARCH`` alone would cover reading only.)

The job cgroups (``[execution] cgroup_root``, :mod:`wmproxy.execution.cgroups`) need no
capability beyond these: the root directory belongs to the worker's user, so it creates,
writes and removes the job cgroups as their owner, and ``CAP_KILL`` kills their members. A
process that joins the tree from the worker's cgroup (a zygote, a wrapper the worker starts
itself) needs write access to ``cgroup.procs`` of the two cgroups' common ancestor: the
worker's own when the root is inside the worker's delegated cgroup (systemd
``Delegate=yes``), else ``CAP_DAC_OVERRIDE`` grants it.
Every file of the tree is the worker's and not writable by the accounts, so a job cannot
leave its cgroup. A cgroup v1 hierarchy (``freezer``) needs a worker running as root: v1
lets only euid 0 move another uid's process (no capability does).

``CAP_FOWNER`` is not needed: the worker sets modes on files it has just created, before
handing them over. The systemd unit must leave jobs alive when the worker stops
(``KillMode=process``): the wrapper runs in its own session and records the outcome
in ``status.json``, so a restarted worker reads the result of a job it did not see end.

A batch backend submits as the account with :func:`run_as` (the same switch, applied to
``sbatch``/``scancel``), so the batch system authenticates the account's uid itself.

Without an account (``account=None``: no mapping configured) the wrapper runs as the
worker's own user; a worker running as root must always pass an account
(:class:`IdentityError` otherwise), so a job never runs as root by omission.

Every switch to an account (:func:`spawn_wrapper`, :func:`zygote_command`, :func:`run_as`, all
through :func:`check_account`) refuses, whatever the caller passes, root (uid 0 or primary group
0), the worker's own uid or primary group, and the service user's (:func:`refuse_identities`):
the account comes from the database (``jobs.local_account``), which a compromised service or a
job reaching the database could rewrite (:class:`AccountRefusedError`).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import pwd
import secrets
import stat
import subprocess
import sys
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wmproxy.domain import JOB_PROXY_NAME
from wmproxy.errors import WMProxyError
from wmproxy.execution import jobwrapper
from wmproxy.execution.jobwrapper import (
    LOG_NAME,
    SPEC_NAME,
    STARTED_NAME,
    STATE_DIR,
    STATUS_NAME,
    TMP_DIR,
    JobSpec,
)
from wmproxy.sandbox.trees import flock_directory, removal_steps, run_removal
from wmproxy.text import xml_text

WRAPPER_PATH = Path(jobwrapper.__file__).resolve()
"""The wrapper script shipped in the package; it must be readable by every account
(the package installed in a world-readable location)."""

SYSTEM_PYTHON = "/usr/bin/python3"
SETPRIV = "/usr/bin/setpriv"
"""util-linux ``setpriv``: clears the worker's inheritable and ambient capabilities before
the wrapper runs (an ambient capability survives a change between two non-zero uids, so
``Popen(user=...)`` alone would hand the worker's capabilities to the job)."""
DROP_CAPABILITIES = ("--inh-caps=-all", "--ambient-caps=-all", "--no-new-privs", "--")
#: The real gid a zygote of an account starts with (:func:`zygote_command`), until its first
#: statement sets it back to the account's: the overflow gid (``nogroup``/``nobody``), which owns
#: nothing; 65533 for an account whose gid it is.
ZYGOTE_SPARE_GID = 65534
PROXY_NAME = JOB_PROXY_NAME
"""File name of the job's proxy copy in its work dir."""

_MAX_STATUS_BYTES = 256 * 1024
#: Characters at most in one text of ``status.json`` (the failure, a note...): the wrapper's
#: own sentences are far shorter, even naming a 4096-byte path.
_MAX_STATUS_TEXT = 16 * 1024
#: The largest signal number (Linux ``SIGRTMAX``).
_MAX_SIGNAL = 64
#: The largest pid (Linux ``PID_MAX_LIMIT``, 2**22).
_MAX_PID = 2**22
log = logging.getLogger(__name__)
#: Prefix joining the cgroup whose ``cgroup.procs`` follows it, then executing the rest.
_JOIN = ("/bin/sh", "-c", 'echo 0 > "$0" && exec "$@"')


class IdentityError(WMProxyError):
    """The work dir or the identity switch could not be set up (bad work root, unknown
    account, a planted file in the way, a refused spawn as root). The message says
    why and never holds key material."""


class CommandTimeoutError(IdentityError):
    """A command run with :func:`run_as` did not end in time (it was killed); whether it
    did its work is unknown."""


class AccountRefusedError(IdentityError):
    """The account is one no job may ever run as (:func:`check_account`): root, the worker's
    own user or group, or the service user's."""


class WrapperStatusError(IdentityError):
    """``status.json`` or ``started.json`` exists but is not something the wrapper wrote
    (not a regular file of the account, too large, not JSON, wrong field types)."""


@dataclass(frozen=True)
class Account:
    """A local account a job runs as (the result of the DN/FQAN mapping).

    Attributes:
        uid, gid: numeric user and primary group; supplementary groups are dropped.
        name: the login name (for messages).
    """

    uid: int
    gid: int
    name: str

    @classmethod
    def from_name(cls, name: str) -> Account:
        """The account ``name`` from the password database.

        Raises:
            IdentityError: no such account.
        """
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise IdentityError(f"There is no local account {name!r}") from None
        return cls(uid=entry.pw_uid, gid=entry.pw_gid, name=entry.pw_name)


#: Uids and primary gids no job may run as beyond root's and the worker's own
#: (:func:`refuse_identities`: the service user's, when the worker runs as another user).
_REFUSED_UIDS: set[int] = set()
_REFUSED_GIDS: set[int] = set()


def refuse_identities(uids: Iterable[int], gids: Iterable[int]) -> None:
    """Add ``uids`` and primary ``gids`` to those :func:`check_account` refuses, for the rest
    of the process: the service user's and group (the owner of the store key and of the
    sandbox), which differ from the worker's own when the worker runs as root."""
    _REFUSED_UIDS.update(uids)
    _REFUSED_GIDS.update(gids)


def account_refusal(account: Account) -> str | None:
    """Why no job may run as ``account``, None when one may: it is root (uid 0, or primary
    group 0), the worker's own user or primary group (real or effective), or the service
    user's or group (:func:`refuse_identities`)."""
    for what, number, own, service in (("uid", account.uid, (os.getuid(), os.geteuid()), _REFUSED_UIDS),
                                       ("primary group", account.gid, (os.getgid(), os.getegid()), _REFUSED_GIDS)):
        if number == 0:
            return f"its {what} 0 is root's"
        if number in own:
            return f"its {what} {number} is the worker's own"
        if number in service:
            return f"its {what} {number} is the service's"
    return None


def check_account(account: Account, action: str = "run a job") -> None:
    """Refuse to switch to ``account`` when :func:`account_refusal` gives a reason: the last line
    of defence of every identity switch, whatever account the caller was given.

    Raises:
        AccountRefusedError: "Refusing to <action> as <name>: <why>".
    """
    why = account_refusal(account)
    if why is not None:
        raise AccountRefusedError(f"Refusing to {action} as {account.name}: {why}")


@dataclass(frozen=True)
class PhaseOutcome:
    """How a prologue or epilogue ended: ``exit_code`` if it exited, ``signal`` if a
    signal killed it, ``failure`` (a sentence) if it could not be started."""

    exit_code: int | None
    signal: int | None
    failure: str | None

    @property
    def succeeded(self) -> bool:
        """True when it exited with code 0."""
        return self.failure is None and self.exit_code == 0


@dataclass(frozen=True)
class WrapperStatus:
    """The outcome the wrapper recorded in ``status.json`` (format: module docstring
    of :mod:`wmproxy.execution.jobwrapper`). Times are timezone-aware UTC datetimes.

    Attributes:
        job_id: grid job id from the spec (None if the spec could not be read).
        wrapper_pid: informational only; never signal it.
        payload_started: whether the payload was executed (False: shallow retry is
            possible; True: deep retry).
        exit_code: the payload's exit code, None if it did not exit normally.
        signal: the signal that killed the payload, else None.
        cancelled_by: the signal (SIGTERM/SIGINT) the wrapper was cancelled with.
        prologue, epilogue: their outcomes, None when not run.
        failure: "Job Wrapper error: ..." when the payload did not run.
        notes: remarks such as dropped ``LD_PRELOAD`` entries.
    """

    job_id: str | None
    wrapper_pid: int
    hostname: str
    started_at: datetime.datetime
    ended_at: datetime.datetime
    payload_started: bool
    payload_started_at: datetime.datetime | None
    exit_code: int | None
    signal: int | None
    cancelled_by: int | None
    prologue: PhaseOutcome | None
    epilogue: PhaseOutcome | None
    failure: str | None
    notes: tuple[str, ...]

    @property
    def succeeded(self) -> bool:
        """True when the payload exited 0 and the epilogue, if any, exited 0 (the
        reference fails a job whose epilogue fails)."""
        epilogue_ok = self.epilogue is None or self.epilogue.succeeded
        return self.payload_started and self.failure is None and self.exit_code == 0 and epilogue_ok

    @property
    def shell_exit_code(self) -> int | None:
        """The payload's outcome as one number: exit code 0-255, 128+N for signal N,
        None when the payload did not run."""
        if self.signal is not None:
            return 128 + self.signal
        return self.exit_code


# --- preparing -------------------------------------------------------------------


def prepare_work_dir(work_root: Path, name: str, account: Account | None) -> Path:
    """Create ``<work_root>/<name>`` (0700) and its ``.wmproxy`` (0700), both owned by
    ``account`` (by the worker's user when None).

    ``work_root`` must be a real directory (not a symlink) owned by the worker's user
    and not writable by group or others, so no job can replace its own directory.
    The mapped accounts need search permission on ``work_root`` and its parents.

    Returns:
        the absolute work dir path.

    Raises:
        IdentityError: unsafe work root, ``name`` not one plain path component, or
            the work dir already exists.
    """
    root = Path(os.path.abspath(work_root))
    _check_work_root(root)
    _check_name(name)
    work_dir = root / name
    try:
        os.mkdir(work_dir, 0o700)
    except FileExistsError:
        raise IdentityError(f"The work directory {work_dir} already exists") from None
    except OSError as exc:
        raise IdentityError(f"Cannot create the work directory {work_dir}: {exc.strerror}") from None
    try:
        with _DirFd(work_dir) as work_fd:
            os.fchmod(work_fd, 0o700)
            os.mkdir(STATE_DIR, 0o700, dir_fd=work_fd)
            with _DirFd(STATE_DIR, work_fd) as state_fd:
                os.fchmod(state_fd, 0o700)
                _give(state_fd, account)
            _give(work_fd, account)
    except OSError as exc:
        raise IdentityError(f"Cannot hand the work directory {work_dir} over: {exc.strerror}") from None
    return work_dir


def check_work_root(work_root: Path) -> None:
    """Check that ``work_root`` is usable as :func:`prepare_work_dir` requires (a real
    directory owned by the worker's user, not writable by group or others); the worker
    calls it at startup so a wrong work root is refused once, not for every job.

    Raises:
        IdentityError: the work root is missing or unsafe.
    """
    _check_work_root(Path(os.path.abspath(work_root)))


def _check_work_root(root: Path | str) -> None:
    try:
        st = os.lstat(root)
    except OSError as exc:
        raise IdentityError(f"The work root {root} is not usable: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise IdentityError(f"The work root {root} is not a directory (or is a symbolic link)")
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise IdentityError(f"The work root {root} must be owned by the worker and not writable by others")


def _check_name(name: str) -> None:
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise IdentityError(f"Invalid work directory name {name!r}")


def write_spec(work_dir: Path, spec: JobSpec, account: Account | None, *, sync: bool = True,
               fresh: bool = False) -> None:
    """Write ``spec`` to ``.wmproxy/job.marshal`` (:meth:`JobSpec.to_bytes
    <wmproxy.execution.jobwrapper.JobSpec.to_bytes>`, 0400, owned by ``account``), replacing
    any previous one atomically; fsynced unless ``sync`` is False (a freshly prepared
    job: a spec lost to a crash leaves a work dir without ``started.json``, which is
    prepared again). ``fresh``: the work dir was just made and nothing runs in it yet, so
    the file is created at its name (``O_EXCL``, a planted entry is refused) instead of
    renamed over it.

    Raises:
        IdentityError: the spec is invalid (the wrapper would refuse it) or cannot be
            written.
    """
    check_spec(spec)
    write_spec_bytes(work_dir, spec.to_bytes(), account, sync=sync, fresh=fresh)


def check_spec(spec: JobSpec) -> None:
    """Refuse a spec the wrapper would refuse (:meth:`JobSpec.check
    <wmproxy.execution.jobwrapper.JobSpec.check>`).

    Raises:
        IdentityError: why.
    """
    try:
        spec.check()
    except jobwrapper.WrapperError as exc:
        raise IdentityError(str(exc)) from None


def write_spec_bytes(work_dir: Path, spec: bytes, account: Account | None, *, sync: bool = False,
                     fresh: bool = False) -> None:
    """:func:`write_spec` for a spec already checked (:func:`check_spec`) and encoded
    (:meth:`JobSpec.to_bytes <wmproxy.execution.jobwrapper.JobSpec.to_bytes>`); not fsynced
    unless ``sync``.

    Raises:
        IdentityError: the file cannot be written.
    """
    with _DirFd(work_dir) as work_fd, _DirFd(STATE_DIR, work_fd) as state_fd:
        _replace_file(state_fd, SPEC_NAME, spec, 0o400, account, sync=sync, fresh=fresh)


def install_proxy(work_dir: Path, proxy_pem: bytes, account: Account | None, name: str = PROXY_NAME,
                  *, sync: bool = True, fresh: bool = False) -> Path:
    """Put the job's proxy (PEM bytes, with its key) into the work dir as ``name``,
    mode 0600, owned by ``account``. Safe while the job runs (a renewal goes through
    :func:`renew_proxy`, which also checks the work dir is still the job's): the copy
    is written to a fresh file, fsynced (unless ``sync`` is False: a job not started
    yet) and renamed over ``name``, so a link planted there is replaced, not followed.
    ``fresh``: as :func:`write_spec`'s (created at ``name`` with ``O_EXCL``, no rename).

    Returns:
        the proxy copy's path.

    Raises:
        IdentityError: ``name`` is not a plain file name or the file cannot be written.
    """
    _check_proxy_name(name)
    with _DirFd(work_dir) as work_fd:
        _replace_file(work_fd, name, proxy_pem, 0o600, account, sync=sync, fresh=fresh)
    return Path(work_dir) / name


def renew_proxy(work_dir: Path, proxy_pem: bytes, name: str = PROXY_NAME) -> bool:
    """Replace the proxy copy ``name`` of a running job with ``proxy_pem`` (the renewal
    worker's push), as :func:`install_proxy` does (a fresh file, fsynced, renamed over it),
    owned by the owner of the work dir, only if the job still has that work dir and a copy in
    it. ``work_dir`` is ``<work_root>/<name of the job>``: a directory at that path is the
    job's, whoever else's it was before (a spare reused) or becomes after.

    The work dir is opened, then locked (:func:`_lock_work_dir`), then checked: the path must
    still name the directory opened. The execution worker empties an ended job's work dir and
    renames it to a spare for the next job of its account under the same lock
    (:func:`recycle_work_dir`), so a push that opened the directory before it was recycled
    finds it is no longer at ``work_dir`` and writes nothing, and a recycling that comes while
    a push holds the lock keeps its hands off (the directory is removed instead): the renewed
    proxy of this job's owner never lands in the next job's work dir. Neither side waits for
    the lock (the job's account can open its work dir and hold a lock for ever): a push that
    finds it taken fails, and the next pass tries again.

    Returns:
        True: the copy was written; False: there is no copy at ``work_dir`` (the job has
        not got one yet, or it ended: its work dir was released, recycled or removed).

    Raises:
        IdentityError: the work dir cannot be opened (also when it was removed since the
            call began: the caller tells), it is locked by another process, or the copy cannot
            be written (the old one is then intact).
    """
    _check_proxy_name(name)
    path = os.path.abspath(work_dir)
    if not os.path.lexists(path):
        return False
    with _DirFd(path) as work_fd:
        try:
            if not _lock_work_dir(work_fd, path):
                raise IdentityError(f"The job directory {path} is locked by another process")
            opened = os.fstat(work_fd)
            named = os.lstat(path)
            os.lstat(name, dir_fd=work_fd)  # a job without a copy gets the stored proxy at its start
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise IdentityError(f"Cannot check the job directory {path}: {exc.strerror}") from None
        if (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
            return False  # recycled since it was opened: another job's now, or a spare
        account = None if opened.st_uid == os.geteuid() else Account(opened.st_uid, opened.st_gid,
                                                                      str(opened.st_uid))
        _replace_file(work_fd, name, proxy_pem, 0o600, account)
    return True


def _check_proxy_name(name: str) -> None:
    if not name or "/" in name or name in (".", "..", STATE_DIR):
        raise IdentityError(f"Invalid proxy file name {name!r}")


def write_state_file(work_dir: Path, name: str, data: bytes, mode: int, account: Account | None) -> Path:
    """Put ``data`` into ``.wmproxy/<name>`` of the work dir with ``mode``, owned by
    ``account`` (the worker's user when None), created fresh (whatever was there is
    unlinked, a link is never followed). A batch backend keeps what it submits here (a
    copy of the wrapper, the batch script), before the job is submitted. Not synced to
    disk (unlike the spec): it is read at once, and a worker that crashes before
    submitting prepares the job again.

    Returns:
        the file's path.

    Raises:
        IdentityError: ``name`` is not a plain file name or the file cannot be written.
    """
    _check_name(name)
    with _DirFd(work_dir) as work_fd, _DirFd(STATE_DIR, work_fd) as state_fd:
        fd = _fresh_file(state_fd, name, mode, account)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except OSError as exc:
            raise IdentityError(f"Cannot write {name} in the job directory: {exc.strerror}") from None
    return Path(work_dir) / STATE_DIR / name


def install_wrapper(work_dir: Path, account: Account | None) -> Path:
    """Copy the job wrapper (:data:`WRAPPER_PATH`, standard library only) into the work
    dir as ``.wmproxy/jobwrapper.py`` (0500, the account's), so that a batch node needs
    only a system ``python3`` and the shared filesystem, not the wmproxy package.

    Returns:
        the copy's path.

    Raises:
        IdentityError: the wrapper cannot be read or the copy cannot be written.
    """
    try:
        source = WRAPPER_PATH.read_bytes()
    except OSError as exc:
        raise IdentityError(f"Cannot read the job wrapper {WRAPPER_PATH}: {exc.strerror}") from None
    agent = WRAPPER_PATH.with_name(jobwrapper.INSPECTION_AGENT)  # started by the wrapper, copied beside it
    if agent.is_file():
        write_state_file(work_dir, agent.name, agent.read_bytes(), 0o500, account)
    return write_state_file(work_dir, WRAPPER_PATH.name, source, 0o500, account)


# --- running ---------------------------------------------------------------------


def spawn_wrapper(work_dir: Path, account: Account | None, *, python: str | None = None,
                  cgroup_procs: str | None = None) -> subprocess.Popen[bytes]:
    """Start ``python3 -I -S jobwrapper.py <work_dir>`` as ``account``.

    The wrapper holds no capability: when the worker has any (the documented five), the
    wrapper is started through ``setpriv`` clearing the inheritable and ambient sets with
    ``no_new_privs`` set, so neither the wrapper nor the job can hold or regain them. The
    wrapper leads a new session (its pid is also its process group id), has no
    supplementary groups, umask 0o077 (it sets the spec's own umask), a minimal
    environment (it builds the job's from scratch anyway), standard input from
    ``/dev/null`` and output to a fresh ``.wmproxy/wrapper.log``. The interpreter is
    ``python`` or else ``/usr/bin/python3`` (else the worker's own).

    ``cgroup_procs``: the ``cgroup.procs`` of the job's cgroup
    (:mod:`wmproxy.execution.cgroups`): a shell still holding the worker's credentials
    writes itself into it, then ``setpriv`` switches to the account (as :func:`run_as`) and
    starts the wrapper, so nothing of the job ever runs outside the cgroup; a failed write
    starts nothing (the wrapper's log says why).

    Returns:
        the wrapper process. Poll or wait it (it is the worker's child until the worker
        exits). To cancel the job send SIGTERM to its pid: the wrapper forwards it to
        the job's process group, SIGKILLs after the spec's ``kill_grace`` seconds and
        records the outcome. A process the job moved out of its group with ``setsid``
        is beyond the wrapper's reach.

    Raises:
        AccountRefusedError: ``account`` is one no job may run as (:func:`check_account`).
        IdentityError: ``account`` is None while the worker runs as root, or the
            wrapper could not be started.
    """
    if account is not None:
        check_account(account, "start a job")
    prefix = _switch_prefix(account)
    switch_here = cgroup_procs is None or account is None
    if account is not None and not switch_here:  # the switch after the join, by setpriv (the worker's until then)
        prefix = _setpriv_to(account, "start a job")
    if cgroup_procs is not None:
        prefix = [*_JOIN, cgroup_procs, *prefix]
    interpreter = python or (SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable)
    work_dir = Path(os.path.abspath(work_dir))
    with _DirFd(work_dir) as work_fd, _DirFd(STATE_DIR, work_fd) as state_fd:
        log_fd = _fresh_file(state_fd, LOG_NAME, 0o600, account)
    try:
        return subprocess.Popen(  # noqa: S603 - a fixed argv: the package's own wrapper
            [*prefix, interpreter, "-I", "-S", str(WRAPPER_PATH), str(work_dir)],
            cwd=work_dir,
            env={"PATH": jobwrapper.BASE_PATH, "LANG": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            close_fds=True,
            start_new_session=True,
            umask=0o077,
            user=None if account is None or not switch_here else account.uid,
            group=None if account is None or not switch_here else account.gid,
            extra_groups=None if account is None or not switch_here else [],
        )
    except OSError as exc:
        raise IdentityError(f"Cannot start the job wrapper: {exc.strerror or exc}") from None
    except subprocess.SubprocessError as exc:
        raise IdentityError(f"Cannot start the job wrapper: {exc}") from None
    finally:
        os.close(log_fd)


def run_as(argv: list[str], account: Account | None, *, env: dict[str, str], cwd: Path | None = None,
           timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a command (a batch system's client: ``sbatch``, ``scancel``) as ``account``,
    holding none of the worker's capabilities: ``setpriv`` switches to the account's uid
    and gid without supplementary groups and clears the inheritable and ambient sets with
    ``no_new_privs``, as for the wrapper (:func:`spawn_wrapper`; ``setpriv`` switching
    itself lets Python start it with ``vfork``, which matters at a thousand submissions).
    Standard input is ``/dev/null`` and the environment is exactly ``env``. The batch
    system then authenticates the account's uid (munge), so the job is the account's
    without any ``--uid`` privilege.

    Args:
        argv: absolute program path and arguments.
        account: whom to run as; None runs as the worker's own user.
        env: the complete environment.
        cwd: working directory (the account must be able to enter it).
        timeout: seconds before the command is killed.

    Returns:
        the finished command with its text output (any exit status).

    Raises:
        CommandTimeoutError: it did not end within ``timeout`` seconds.
        AccountRefusedError: ``account`` is one no job may run as (:func:`check_account`).
        IdentityError: ``account`` is None while the worker runs as root, or the
            command cannot be started.
    """
    if account is None:
        return _run([*_switch_prefix(None), *argv], argv[0], env, cwd, timeout)
    return _run([*_setpriv_to(account, f"run {argv[0]}"), *argv], argv[0], env, cwd, timeout)


def run_as_worker(argv: list[str], *, env: dict[str, str], cwd: Path | None = None,
                  timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a command as the worker itself (e.g. reading the batch system's state with
    ``squeue``), otherwise like :func:`run_as`.

    Raises:
        CommandTimeoutError: it did not end within ``timeout`` seconds.
        IdentityError: the command cannot be started.
    """
    return _run(argv, argv[0], env, cwd, timeout)


def _run(argv: list[str], name: str, env: dict[str, str], cwd: Path | None,
         timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(  # noqa: S603 - argv chosen by the backend, never by the job
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            check=False, close_fds=True, umask=0o077,
        )
    except subprocess.TimeoutExpired:
        raise CommandTimeoutError(f"{name} did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise IdentityError(f"Cannot run {name}: {exc.strerror or exc}") from None
    except subprocess.SubprocessError as exc:
        raise IdentityError(f"Cannot run {name}: {exc}") from None


def _switch_prefix(account: Account | None) -> list[str]:
    """The ``setpriv`` prefix that drops the worker's capabilities (empty when it holds
    none).

    Raises:
        IdentityError: no account while running as root (a job never runs as root by
            omission), or ``setpriv`` is missing while capabilities must be dropped.
    """
    if account is None and os.geteuid() == 0:
        raise IdentityError("Refusing to run a job as root: no account was mapped")
    if not holds_capabilities():
        return []
    if not os.path.exists(SETPRIV):
        raise IdentityError(f"Refusing to start a job: {SETPRIV} (util-linux) must drop the worker's capabilities")
    return [SETPRIV, *DROP_CAPABILITIES]


def _setpriv_to(account: Account, action: str, *, real_gid: int | None = None) -> list[str]:
    """The ``setpriv`` prefix that switches to ``account`` (no supplementary group) and drops
    every capability. ``real_gid``: the real gid instead of the account's (effective and saved
    gids stay the account's; :func:`zygote_command`).

    Raises:
        AccountRefusedError: ``account`` is one no job may run as (:func:`check_account`).
        IdentityError: ``setpriv`` is missing ("Refusing to <action> as <account>: ...").
    """
    check_account(account, action)
    if not os.path.exists(SETPRIV):
        raise IdentityError(f"Refusing to {action} as {account.name}: {SETPRIV} (util-linux) is missing")
    gids = [f"--regid={account.gid}"] if real_gid is None else [f"--rgid={real_gid}", f"--egid={account.gid}"]
    return [SETPRIV, f"--reuid={account.uid}", *gids, "--clear-groups", *DROP_CAPABILITIES]


def holds_capabilities() -> bool:
    """True when this process has a capability in its permitted, inheritable or ambient
    set (``/proc/self/status``); root counts as holding them all."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            lines = [line.split() for line in status if line.startswith(("CapPrm:", "CapInh:", "CapAmb:"))]
    except OSError:
        return True  # unknown: drop them to be safe
    return any(int(fields[1], 16) for fields in lines if len(fields) == 2)


# --- reading the outcome ----------------------------------------------------------


def payload_started(work_dir: Path, account: Account | None) -> bool:
    """True once the wrapper recorded that the payload was executed (``started.json``
    or ``status.json``). ``started.json`` counts whatever it holds: the wrapper creates it
    empty and writes into it after (``jobwrapper._write_new``), so a reader may find it empty
    or partial, as one after a host crash may.

    Raises:
        WrapperStatusError: ``started.json`` is present but not a regular file of ``account``,
            or ``status.json`` is unacceptable (:func:`read_status`).
    """
    if _read_raw(work_dir, STARTED_NAME, account, 0) is not None:
        return True
    status = read_status(work_dir, account)
    return status is not None and status.payload_started


def read_status(work_dir: Path, account: Account | None, *, any_owner: bool = False) -> WrapperStatus | None:
    """The wrapper's final status, None while it has not been written.

    ``account`` is whom the file must belong to (the worker's user when None); ``any_owner``:
    whoever owns it (a work dir an earlier attempt left, whose account may have been another).

    Raises:
        WrapperStatusError: the file is a symlink, FIFO, too large, not owned by the
            account, not JSON, or has a field of the wrong type or a number out of its range
            (an exit code not 0-255, a signal not 1-64). Text is not refused: a NUL, a control
            character other than tab, LF and CR, or a lone surrogate is escaped, and text is cut
            at 16 Ki characters.
        IdentityError: the work dir or its ``.wmproxy`` cannot be opened (removed, or
            replaced by a symlink).
    """
    data = _read_json(work_dir, STATUS_NAME, account, any_owner=any_owner)
    if data is None:
        return None
    try:
        return WrapperStatus(
            job_id=_opt(data, "job_id", str),
            wrapper_pid=_number(_req(data, "wrapper_pid", int), "wrapper_pid", 1, _MAX_PID),
            hostname=_req(data, "hostname", str),
            started_at=_time(_req(data, "started_at", str)),
            ended_at=_time(_req(data, "ended_at", str)),
            payload_started=_req(data, "payload_started", bool),
            payload_started_at=_opt_time(_opt(data, "payload_started_at", str)),
            exit_code=_exit_code(data),
            signal=_signal(data, "signal"),
            cancelled_by=_signal(data, "cancelled_by"),
            prologue=_phase(data.get("prologue")),
            epilogue=_phase(data.get("epilogue")),
            failure=_opt(data, "failure", str),
            notes=tuple(_strings(data.get("notes", []))),
        )
    except (TypeError, ValueError) as exc:
        raise WrapperStatusError(f"The job's {STATUS_NAME} is malformed: {exc}") from None


def _read_raw(work_dir: Path, name: str, account: Account | None, size: int, *, any_owner: bool = False
              ) -> bytes | None:
    """The first ``size`` bytes of the state file ``name`` (None: absent), once it is known
    to be a regular file of ``account`` (of whoever, with ``any_owner``)."""
    owner = os.geteuid() if account is None else account.uid
    try:
        with _DirFd(work_dir) as work_fd, _DirFd(STATE_DIR, work_fd) as state_fd:
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=state_fd)
            except FileNotFoundError:
                return None
            with os.fdopen(fd, "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode) or (st.st_uid != owner and not any_owner):
                    raise WrapperStatusError(f"The job's {name} is not a regular file of the job's account")
                return f.read(size)
    except IdentityError:
        raise
    except OSError as exc:
        raise WrapperStatusError(f"Cannot read the job's {name}: {exc.strerror}") from None


def _read_json(work_dir: Path, name: str, account: Account | None, *, any_owner: bool = False
               ) -> dict[str, Any] | None:
    raw = _read_raw(work_dir, name, account, _MAX_STATUS_BYTES + 1, any_owner=any_owner)
    if raw is None:
        return None
    if len(raw) > _MAX_STATUS_BYTES:
        raise WrapperStatusError(f"The job's {name} is too large")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes ('[' * 100000)
        raise WrapperStatusError(f"The job's {name} is not JSON") from None
    if not isinstance(data, dict) or data.get("version") != jobwrapper.SPEC_VERSION:
        raise WrapperStatusError(f"The job's {name} has an unknown format")
    return data


def _req(data: dict[str, Any], key: str, kind: type) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{key} must be {kind.__name__}")
    if isinstance(value, str):
        return _clean_text(value)
    return value


def _clean_text(value: str) -> str:
    """``value`` as the database (and a SOAP answer) can carry it: a NUL and every other
    character outside XML's (C0 controls but tab, LF and CR), and a lone surrogate (what a name
    that is not UTF-8 decodes to), escaped (:func:`~wmproxy.text.xml_text`), then cut at
    :data:`_MAX_STATUS_TEXT` characters. Not refused: the wrapper's own texts quote what the job
    gave it (an ``LD_PRELOAD`` entry, the shell's last line, a whole ``Environment`` entry), and
    a refused status would cost a real job its result."""
    cleaned = xml_text(value)
    if len(cleaned) > _MAX_STATUS_TEXT:
        cleaned = cleaned[:_MAX_STATUS_TEXT] + " [cut]"
    return cleaned


def _number(value: int, key: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ValueError(f"{key} must be from {low} to {high}")
    return value


def _exit_code(data: dict[str, Any]) -> int | None:
    """An exit code as the wrapper writes it: what ``waitpid`` gives, 0 to 255."""
    code = _opt(data, "exit_code", int)
    return None if code is None else _number(code, "exit_code", 0, 255)


def _signal(data: dict[str, Any], key: str) -> int | None:
    """A signal number as the wrapper writes it (the payload's, or the one it received):
    1 to :data:`_MAX_SIGNAL`."""
    number = _opt(data, key, int)
    return None if number is None else _number(number, key, 1, _MAX_SIGNAL)


def _opt(data: dict[str, Any], key: str, kind: type) -> Any:
    return None if data.get(key) is None else _req(data, key, kind)


def _time(text: str) -> datetime.datetime:
    if not text.endswith("Z"):
        raise ValueError(f"{text!r} is not a UTC time")
    return datetime.datetime.fromisoformat(text[:-1]).replace(tzinfo=datetime.UTC)


def _opt_time(text: str | None) -> datetime.datetime | None:
    return None if text is None else _time(text)


def _phase(value: object) -> PhaseOutcome | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError("a prologue/epilogue outcome must be an object")
    return PhaseOutcome(
        exit_code=_exit_code(value), signal=_signal(value, "signal"), failure=_opt(value, "failure", str)
    )


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError("notes must be a list of strings")
    return [_clean_text(item) for item in value]


# --- removing --------------------------------------------------------------------


#: Name prefix of a work dir set aside for removal (:func:`discard_work_dir`).
DISCARDED_PREFIX = ".discarded."


def discard_work_dir(work_root: Path, name: str) -> str | None:
    """Set ``<work_root>/<name>`` aside for removal with one rename (to a hidden
    :data:`DISCARDED_PREFIX` name), so that a job's next attempt never finds it while the
    slow removal (:func:`remove_work_dir`) can happen later, off the worker's path.

    Returns:
        The new name below ``work_root``, None when there was no such directory.

    Raises:
        IdentityError: unsafe work root, bad name, or the rename failed.
    """
    root = Path(os.path.abspath(work_root))
    _check_work_root(root)
    _check_name(name)
    new_name = f"{DISCARDED_PREFIX}{name}.{secrets.token_hex(4)}"
    try:
        os.rename(root / name, root / new_name)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IdentityError(f"Cannot set the work directory {root / name} aside: {exc.strerror or exc}") from None
    return new_name


#: Name prefix of an emptied work dir kept for the next job of its account
#: (:func:`recycle_work_dir`). Not a job's name, so the purger never takes it. Whoever renames
#: a spare owns it: the worker that made it, to reuse it (:func:`reuse_work_dir`), or a worker
#: starting on the same work root, to remove it (:func:`discard_work_dir`), so a spare is never
#: removed while a job uses it, whatever the number of workers sharing the root.
SPARE_PREFIX = ".spare."
#: What a work dir kept for reuse holds (and nothing inside them).
_SKELETON = (STATE_DIR, TMP_DIR)
#: Entries a directory of a released work dir may hold for it to be emptied and kept as a spare
#: (:func:`recycle_work_dir`): a job that left 200,000 files held the worker's cycle for 2.2 s
#: unlinking them; such a work dir is removed in the background instead, within its budget.
RECYCLE_MAX_ENTRIES = 1024
_FS_IOC_GETFLAGS = 0x80086601
#: Inode flags a directory of this layout may carry (ext4's extents, hashed index and inline
#: data, which the file system sets itself); any other (``chattr +D``, ``+S``, casefold...)
#: is the job's doing, and such a directory is not reused.
_PLAIN_FLAGS = 0x00080000 | 0x00001000 | 0x10000000


def recycle_work_dir(work_root: Path, name: str, account: Account | None) -> str | None:
    """Empty the work dir of an ended job and set it aside as a spare for the next job of the
    same account (:func:`reuse_work_dir`), instead of removing it: the directory, its
    ``.wmproxy`` and ``tmp/`` are kept, so the next job creates and removes three inodes fewer
    (each removal is a block discard on a disk mounted with ``discard``).

    Only the usual layout is recycled: the three directories are the account's (uid and gid),
    mode 0700 exactly, without extended attributes (an ACL) or inode flags the job set, and
    none holds a directory. The files, links and other non-directories the job left in them
    are unlinked (never followed). Anything else returns None, and the caller removes what is
    left as before (:func:`remove_work_dir` or :func:`discard_work_dir`), and so does a work dir
    whose lock (:func:`_lock_work_dir`) another process holds: the renewal worker writing the
    job's proxy (:func:`renew_proxy`), which must not find the directory become another job's
    in the middle; it is emptied and renamed under that lock. Call it once the job's wrapper
    has ended.

    Returns:
        The spare's name below ``work_root`` (:data:`SPARE_PREFIX`), or None (not recycled;
        its non-directory entries may have been unlinked).
    """
    root = os.path.abspath(work_root)  # strings, not Paths: pathlib was a fifth of this function's CPU
    _check_work_root(root)
    _check_name(name)
    owner = _owner(account)
    work_dir = os.path.join(root, name)
    try:
        with _DirFd(work_dir) as work_fd:
            if not _lock_work_dir(work_fd, work_dir) or not _plain_dir(work_fd, owner):
                return None  # locked: a renewal is writing the job's proxy into it (renew_proxy)
            entries = _few_entries(work_fd)
            if entries is None:
                return None
            for entry in entries:
                if entry not in _SKELETON and not _unlink_plain(work_fd, entry):
                    return None
            for sub in _SKELETON:
                with _DirFd(sub, work_fd) as sub_fd:
                    if not _plain_dir(sub_fd, owner) or (entries := _few_entries(sub_fd)) is None:
                        return None
                    for entry in entries:
                        if not _unlink_plain(sub_fd, entry):
                            return None
            spare = f"{SPARE_PREFIX}{secrets.token_hex(8)}"
            os.rename(work_dir, os.path.join(root, spare))  # still locked: a renewal never sees it half done
    except (OSError, IdentityError):
        return None
    return spare


def reuse_work_dir(work_root: Path, spare: str, name: str, account: Account | None) -> bool:
    """Rename the spare ``spare`` (:func:`recycle_work_dir`) to ``<work_root>/<name>`` for a job
    of ``account``, and check it there: it must be exactly what :func:`prepare_work_dir` makes
    plus an empty ``tmp/`` (the wrapper's), owned by ``account`` (uid and gid), mode 0700,
    without extended attributes or inode flags, and empty. A spare that is not (another
    account's, or something of its account wrote into it since) is removed.

    Returns:
        True: ``<work_root>/<name>`` is the job's empty work dir; False: there is none (the
        spare was gone or has been removed), the caller prepares a new one.

    Raises:
        IdentityError: unsafe work root or bad name, or a spare that failed the check could
            not be removed.
    """
    root = os.path.abspath(work_root)
    _check_work_root(root)
    _check_name(name)
    _check_name(spare)
    if not spare.startswith(SPARE_PREFIX):
        raise IdentityError(f"Invalid spare work directory name {spare!r}")
    work_dir = os.path.join(root, name)
    try:
        os.rename(os.path.join(root, spare), work_dir)
    except OSError:
        return False
    owner = _owner(account)
    try:
        with _DirFd(work_dir) as work_fd:
            if _plain_dir(work_fd, owner) and sorted(os.listdir(work_fd)) == sorted(_SKELETON):
                for sub in _SKELETON:
                    with _DirFd(sub, work_fd) as sub_fd:
                        if not _plain_dir(sub_fd, owner) or os.listdir(sub_fd):
                            break
                else:
                    return True
    except (OSError, IdentityError):
        pass
    remove_work_dir(Path(root), name)
    return False


def _owner(account: Account | None) -> tuple[int, int]:
    return (os.geteuid(), os.getegid()) if account is None else (account.uid, account.gid)


def _plain_dir(fd: int, owner: tuple[int, int]) -> bool:
    """Whether the directory ``fd`` is as the worker or the wrapper made it: ``owner``'s,
    mode 0700, no extended attribute (``security.*`` aside, which the system sets), no inode
    flag :data:`_PLAIN_FLAGS` does not list."""
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode) or (st.st_uid, st.st_gid) != owner or stat.S_IMODE(st.st_mode) != 0o700:
        return False
    if any(not attr.startswith("security.") for attr in os.listxattr(fd)):
        return False
    flags = bytearray(8)
    try:
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags)
    except OSError:  # the file system has no inode flags: the job cannot have set any
        return True
    return int.from_bytes(flags[:4], sys.byteorder) & ~_PLAIN_FLAGS == 0


def _few_entries(dir_fd: int) -> list[str] | None:
    """The names in the directory ``dir_fd``, None when it holds more than
    :data:`RECYCLE_MAX_ENTRIES` (read no further): emptying it is left to the background
    removal, which stops at its budget, where a recycle runs in the worker's cycle."""
    names: list[str] = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if len(names) == RECYCLE_MAX_ENTRIES:
                return None
            names.append(entry.name)
    return names


def _unlink_plain(dir_fd: int, name: str) -> bool:
    """Unlink ``name`` unless it is a directory (never followed); False for a directory."""
    if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
        return False
    os.unlink(name, dir_fd=dir_fd)
    return True


def remove_work_dir(work_root: Path, name: str, *, deadline: float | None = None) -> None:
    """Remove ``<work_root>/<name>`` and everything in it, never following a symlink
    (the job may have planted some). Call it once the job's processes are gone. A
    missing directory is not an error. With ``deadline`` (``time.monotonic()`` seconds) the
    removal stops once it passed (:func:`~wmproxy.sandbox.trees.run_removal`), to be called
    again (which walks down the tree again: :func:`work_dir_removal` goes on where it stopped).

    Raises:
        IdentityError: unsafe work root, bad name, or the tree could not be removed.
        wmproxy.sandbox.trees.RemovalPaused: ``deadline`` passed before the tree was gone.
    """
    run_removal(work_dir_removal(work_root, name), deadline)


def work_dir_removal(work_root: Path, name: str) -> Generator[None, None, None]:
    """:func:`remove_work_dir` one removal at a time (:func:`~wmproxy.sandbox.trees.removal_steps`):
    kept between calls of :func:`~wmproxy.sandbox.trees.advance`, it goes on where it stopped
    (a job's chain of 50,000 directories is walked down once, not once per budget).

    Raises (when iterated):
        IdentityError: unsafe work root, bad name, or the tree could not be removed.
    """
    root = Path(os.path.abspath(work_root))
    _check_work_root(root)
    _check_name(name)
    target = root / name
    try:
        yield from removal_steps(target)  # a job's tree may be deeper than any recursion or descriptor limit
    except FileNotFoundError:
        return
    except OSError as exc:
        raise IdentityError(f"Cannot remove the work directory {target}: {exc.strerror or exc}") from None


# --- descriptors -----------------------------------------------------------------


class _DirFd:
    """``with _DirFd(path[, dir_fd]) as fd``: a directory opened without following a
    symlink at its last component."""

    def __init__(self, path: Path | str, dir_fd: int | None = None) -> None:
        self.path = path
        self.dir_fd = dir_fd
        self.fd = -1

    def __enter__(self) -> int:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self.fd = os.open(self.path, flags, dir_fd=self.dir_fd)
        except OSError as exc:
            raise IdentityError(f"Cannot open the job directory {self.path}: {exc.strerror}") from None
        return self.fd

    def __exit__(self, *_exc: object) -> None:
        os.close(self.fd)


def _lock_work_dir(fd: int, path: Path | str) -> bool:
    """Take the exclusive ``flock`` of the work dir ``fd`` (across processes; let go when ``fd``
    is closed) without waiting: False when another descriptor holds it. It orders a renewal's
    push (:func:`renew_proxy`) and the recycling of the work dir (:func:`recycle_work_dir`); each
    holds this lock only, and neither waits for it, since the job's account can open its work
    dir and take the lock too (it would only keep its own proxy from being renewed, and its
    work dir from being reused).

    A file system without ``flock`` for directories (NFS emulates it with byte-range locks, which
    need a file open for writing: EBADF; Lustre mounted ``noflock``: ENOSYS) goes on without the
    lock, logged once per file system (as the sandbox's job locks): the push still checks that
    the work dir is the job's before writing, which leaves only a narrow window open.
    """
    return flock_directory(fd, path, wait=False, unlocked=(
        "renewed proxies and the reuse of work directories go on without taking turns"))


def _give(fd: int, account: Account | None) -> None:
    if account is not None:
        os.fchown(fd, account.uid, account.gid)


def _fresh_file(dir_fd: int, name: str, mode: int, account: Account | None, *, unlink: bool = True) -> int:
    """Create ``name`` anew (whatever was there is unlinked, never followed; ``unlink=False``
    for a random name nothing can be at: ``O_EXCL`` refuses it anyway), with ``mode``,
    owned by ``account``; return a write descriptor."""
    try:
        if unlink:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, mode, dir_fd=dir_fd)
    except OSError as exc:
        raise IdentityError(f"Cannot create {name} in the job directory: {exc.strerror}") from None
    try:
        os.fchmod(fd, mode)
        _give(fd, account)
    except OSError as exc:
        os.close(fd)
        raise IdentityError(f"Cannot set up {name} in the job directory: {exc.strerror}") from None
    return fd


def _replace_file(dir_fd: int, name: str, data: bytes, mode: int, account: Account | None,
                  *, sync: bool = True, fresh: bool = False) -> None:
    """Write ``data`` to a fresh temporary file, fsync it (when ``sync``), and rename it over
    ``name``; ``fresh``: create ``name`` itself (``O_EXCL``: refused if anything is there)."""
    tmp = name if fresh else f".{name}.{secrets.token_hex(8)}.tmp"
    fd = _fresh_file(dir_fd, tmp, mode, account, unlink=False)  # fresh, or 64 random bits: never there
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        if not fresh:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise IdentityError(f"Cannot write {name} in the job directory: {exc.strerror}") from None


def zygote_command(account: Account | None, *, python: str | None = None,
                   cgroup_procs: str | None = None) -> list[str]:
    """The command starting a wrapper fork server (:mod:`wmproxy.execution.zygote`) as
    ``account``, holding none of the worker's capabilities: ``setpriv`` switches to the
    account's uid and gid without supplementary groups and clears the inheritable and
    ambient sets with ``no_new_privs`` (as :func:`run_as`); without an account it runs as
    the worker's own user, through ``setpriv`` dropping the capabilities when the worker
    holds any (as :func:`spawn_wrapper`). Every wrapper it forks inherits exactly that.
    ``cgroup_procs``: a ``cgroup.procs`` the zygote joins first, with the worker's credentials
    (as :func:`spawn_wrapper`'s).

    For an account the zygote starts with a spare real gid (:data:`ZYGOTE_SPARE_GID`, the
    account's as effective and saved gid): the kernel makes a process whose real and effective
    gids differ at its ``exec`` non-dumpable (``fs.suid_dumpable`` 0 or 2; with 1 the real gid
    that is not the account's refuses the account's processes all the same), so no other process
    of the account can ``ptrace`` the zygote or open its ``/proc/<pid>/mem`` before it seals
    itself (:func:`wmproxy.execution.zygote._seal`, which makes itself non-dumpable before it
    sets its real gid back).

    Returns:
        ``[setpriv ..., python, "-I", "-S", <zygote.py>]``; the caller appends the
        zygote's own arguments.

    Raises:
        AccountRefusedError: ``account`` is one no job may run as (:func:`check_account`).
        IdentityError: ``account`` is None while the worker runs as root, or ``setpriv``
            is missing while an account or capabilities need it.
    """
    from wmproxy.execution import zygote

    interpreter = python or (SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable)
    script = str(Path(zygote.__file__).resolve())
    join = [] if cgroup_procs is None else [*_JOIN, cgroup_procs]
    if account is None:
        return [*join, *_switch_prefix(None), interpreter, "-I", "-S", script]
    # The spare real gid also puts the C library in secure mode (AT_SECURE) in the zygote and the
    # wrappers it forks: LD_LIBRARY_PATH, LD_PRELOAD, TMPDIR, TZDIR and $ORIGIN in run paths are
    # ignored. Harmless here (the zygote's environment is PATH and LANG only; the system Python),
    # but an interpreter that needs LD_LIBRARY_PATH or $ORIGIN to find libpython exits with 127 at
    # every zygote start, which the worker logs; it then starts the wrappers itself (docs/execution.md).
    spare = ZYGOTE_SPARE_GID if account.gid != ZYGOTE_SPARE_GID else ZYGOTE_SPARE_GID - 1
    return [*join, *_setpriv_to(account, "start a job", real_gid=spare), interpreter, "-I", "-S", script]
