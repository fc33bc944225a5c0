"""The job wrapper: the one program every execution backend runs for a job (the analogue
of the gLite WMS ``JobWrapper``), executed as the job's mapped account.

Run as ``python3 -I -S <path>/jobwrapper.py <work_dir>``. It needs only the standard
library of a system ``python3`` (3.7 or later) and never imports the ``wmproxy``
package, so the same file runs on a batch node (``sbatch --uid/--gid``). The server side
imports it only for :class:`JobSpec` and the file names below.

Input: ``<work_dir>/.wmproxy/job.marshal`` (:data:`SPEC_NAME`, written by the worker:
:meth:`JobSpec.to_bytes`, see :class:`JobSpec` for its fields; a work dir prepared by an
older worker has ``job.json`` instead, :data:`LEGACY_SPEC_NAME`, read when there is no
``job.marshal``), or the same bytes in memory (:func:`run`'s ``spec``: a wrapper forked by
the zygote, whose work dir has no ``job.marshal``). Steps:

1. Build the environment from scratch (:func:`build_environment`); nothing of the
   wrapper's own environment is passed on. JDL ``Environment`` entries with shell syntax
   (``shell_environment``) are then evaluated by :data:`SHELL` in order, as the original's
   ``eval export <entry>`` (:meth:`_Run._evaluate_environment`; docs/execution.md, "JDL
   Environment and Arguments").
2. Run the JDL ``Prologue`` with ``PrologueArguments``; a non-zero exit (or a signal,
   or a prologue that cannot start) fails the job without running the payload, as in
   the reference ("prologue failed": shallow retry, behaviour spec §C job-resubmit).
3. Run the payload (``Executable``/``Arguments``, through :data:`SHELL` for
   ``shell_arguments``: :func:`payload_argv`) with ``StdInput``/``StdOutput``/
   ``StdError`` confined to the work dir; write ``started.json`` as soon as it has
   been executed.
4. Run the JDL ``Epilogue`` with ``EpilogueArguments`` (unless cancelled) and record
   its outcome. The reference counts a failed epilogue as a failed job (deep retry);
   that decision is left to the reader of the status
   (``wmproxy.execution.identity.WrapperStatus.succeeded``).
5. Write ``status.json`` atomically: when the payload was started, into ``started.json``
   (rewritten and renamed to ``status.json``: no new inode, no fsync; see
   :func:`_finish_started` for what a host crash can leave), else into a temporary file
   (fsync, rename, fsync of the directory). The wrapper's JSON
   files are written by :func:`dumps`, whose text is ``json.dumps(value, indent=1,
   sort_keys=True)``'s without importing ``json`` (which with ``re``, ``enum``,
   ``functools`` and ``collections`` was about three quarters of the wrapper's import time).

Every child runs in its own process group inside the wrapper's session. SIGTERM or SIGINT to
the wrapper is forwarded as SIGTERM to the running child's group, followed by SIGKILL after
``kill_grace`` seconds; the payload's signal and the wrapper's ``cancelled_by`` are recorded.
Processes a child leaves behind in its group are killed when it ends, and a wrapper that leads
its session (the local backend's) kills what else the job left when the job ends
(:func:`_kill_session_rest`). Such a wrapper adopts its job's orphans (``PR_SET_CHILD_SUBREAPER``:
a process of the job whose parent ended has the wrapper as its parent, not init, until the
wrapper ends) and reaps those that end while it waits for a child (:func:`_adopt_orphans`), so
every process of the job is among its descendants, and all of them are killed: one the job moved
to another group (``setpgid``, ``set -m; cmd &`` in bash) and one that left the session
(``setsid``, a daemon's double fork) alike. Without that (no ``prctl`` through ``_ctypes``, no
children lists in ``/proc``) it kills the other processes of its session only. A spec with a
``wall_time`` is stopped the same way once that many seconds have passed since the wrapper
started (prologue, payload and epilogue together; nothing of the job runs after it), unless a
batch system runs the wrapper (:func:`under_batch_system`), which enforces its own limit.
Prologue and epilogue read ``/dev/null`` and write to the wrapper's own standard output and
error (``.wmproxy/wrapper.log`` when started by ``wmproxy.execution.identity``; a wrapper forked
by the zygote creates that file when it first writes a line or starts a prologue, epilogue or
inspection agent: see :func:`run`).

Status file (``.wmproxy/status.json``, :data:`STATUS_NAME`), version 1::

    {"version": 1, "job_id": str, "wrapper_pid": int, "hostname": str,
     "started_at": "2026-12-02T06:20:00.123456Z", "ended_at": "...Z",
     "payload_started": bool, "payload_started_at": "...Z" | null,
     "exit_code": int | null,     # payload's exit code when it exited
     "signal": int | null,        # signal number that killed the payload
     "cancelled_by": int | null,  # signal the wrapper received (SIGTERM/SIGINT)
     "prologue": PHASE | null, "epilogue": PHASE | null,
     "failure": str | null,       # "Job Wrapper error: ..." when the payload did not run;
                                  # WALL_TIME_EXCEEDED... when the wrapper stopped the job at
                                  # its wall time (then also after the payload started)
     "notes": [str]}              # e.g. dropped LD_PRELOAD entries
    PHASE = {"exit_code": int | null, "signal": int | null, "failure": str | null}

``.wmproxy/started.json`` (:data:`STARTED_NAME`), created (``O_EXCL``, fsync: see
:func:`_write_new`) once the payload has been executed: ``{"version": 1, "job_id",
"wrapper_pid", "payload_pid", "payload_started_at"}``. Its presence tells a supervisor the job started (deep retry)
rather than never started (shallow retry). At the end the wrapper writes the final status into
it and renames it to ``status.json`` (whose ``payload_started`` then says the same), so a
finished job's state dir holds ``status.json`` only.

Exit status of the wrapper process (a hint for batch systems; the status file is
authoritative): the payload's exit code, 128+N when signal N killed it;
:data:`EXIT_NOT_FOUND` (127) when the executable does not exist,
:data:`EXIT_NOT_EXECUTABLE` (126) when it cannot be executed; :data:`EXIT_WRAPPER_ERROR`
(1) for any other failure before the payload (bad spec, StdInput missing, prologue
failed) and when the payload succeeded but the epilogue failed;
:data:`EXIT_NO_STATUS` (2) when the status file itself could not be written.

Environment of every child (:func:`build_environment`), later entries win:
``PATH=/usr/local/bin:/usr/bin:/bin``, ``LANG=C.UTF-8``, ``HOME=<work_dir>`` (the
job's own directory, as the local backend did: dotfiles stay with the job and go away
with it), ``TMPDIR=<work_dir>/.tmp.wmproxy-part`` (:data:`TMP_DIR`, created, 0700: a name
no sandbox file can take), ``USER``/``LOGNAME`` of the current uid (from the password
database, omitted if it has no entry), the batch system's description of the job's
allocation (the wrapper's own ``SLURM_*`` variables when Slurm runs it: ``SLURM_JOB_ID``,
``SLURM_CPUS_ON_NODE``..., so the payload can use them and ``srun``; the only part of the
wrapper's environment passed on), then the worker's ``base_environment``, then JDL
``Environment`` (``environment`` as it is, then ``shell_environment`` as the shell evaluates it
against all the rest, ``GLITE_WMS_JOBID`` and ``X509_USER_PROXY`` included), then
``GLITE_WMS_JOBID`` and ``X509_USER_PROXY`` (absolute path of the proxy copy), which cannot be
overridden.
``LD_PRELOAD``, ``LD_LIBRARY_PATH`` and ``PYTHON*`` never come from the wrapper's
environment or ``base_environment``. A JDL ``LD_PRELOAD`` keeps only entries that
exist (entries with a ``/``, relative to the work dir) or that the loader searches
itself (bare names); a missing entry is dropped with a note, because the loader would
otherwise print an error in every process of the payload.

Inspection agent (``docs/inspection.md``): when the spec's ``base_environment`` holds
``WMPROXY_INSPECTION_URL`` and the job has a proxy, the wrapper starts ``inspection_agent.py``
(beside this file) once the job has run ``WMPROXY_INSPECTION_DELAY`` seconds and still runs
(prologue, payload or epilogue; waited for through a pidfd and ``select.poll``), or at once
when the delay is 0 or missing or there is no pidfd (Python before 3.9, Linux before 5.3),
and stops it when the job ends. The ``WMPROXY_INSPECTION_*`` variables are removed from the
children's environment. The job's secret (``WMPROXY_INSPECTION_TOKEN``) is kept from the job's
processes, which run as the same uid: before any child starts, the wrapper makes itself
non-dumpable (``prctl``; its ``/proc/<pid>/environ`` and ``mem`` are then root's, ``ptrace``
is refused) and removes the spec file it read (``job.marshal``); the agent is forked without
``exec``, so it is non-dumpable from its start and gets the secret in memory only. When either
step fails the agent is not started (logged).

The umask of every child is the spec's ``umask`` (default 0o022: outputs readable by
the worker and the owner's group even when the spawner's umask was 0o077).
"""

# ruff: noqa: SIM105 - try/except/pass instead of contextlib.suppress: importing contextlib
# (with collections and functools) costs every job's start about 2 ms of CPU
from __future__ import annotations

import marshal
import os
import pwd
import stat
import sys
import time

# Imported for the type checker only: every import costs each job's start on a batch node
# (typing, socket, datetime and shutil together about a fifth of the wrapper's own time;
# dataclasses, with inspect and ast, another sixth: JobSpec is a plain class; subprocess,
# with threading, selectors and locale, and contextlib, with collections and functools,
# another fifth: children are started with os.posix_spawn, subprocess is imported only
# for the inspection agent or on a Python older than 3.8).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    import subprocess
    from collections.abc import Callable
    from typing import IO, Any
else:
    try:  # the C module under signal: signal.py imports enum (with functools, collections)
        import _signal as signal
    except ImportError:  # not CPython
        import signal

SPEC_VERSION = 1
STATE_DIR = ".wmproxy"
"""Directory inside the work dir holding the spec, status and wrapper log."""
SPEC_NAME = "job.marshal"
"""The spec the worker writes (:meth:`JobSpec.to_bytes`)."""
LEGACY_SPEC_NAME = "job.json"
"""The spec as workers before ``job.marshal`` wrote it (:meth:`JobSpec.to_json`), read when
:data:`SPEC_NAME` is missing."""
#: The ``marshal`` format of :data:`SPEC_NAME`: version 4, read by every Python 3.4 or later.
SPEC_MARSHAL_VERSION = 4
STATUS_NAME = "status.json"
STARTED_NAME = "started.json"
LOG_NAME = "wrapper.log"
TMP_DIR = ".tmp.wmproxy-part"
"""The job's ``TMPDIR`` in its work dir (0700, the account's): a name no sandbox file can take
(``wmproxy.sandbox.storage.check_file_name`` refuses names starting with ``.`` and ending in
``.wmproxy-part``), so an ``InputSandbox`` or ``OutputSandbox`` file never collides with it (a
file named ``tmp`` aborted every job staging it)."""
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_UMASK = 0o022
DEFAULT_KILL_GRACE = 10.0
#: Passes (over its descendants, or ``/proc``) at most, 10 ms apart, in which the wrapper kills
#: what its job left in its session (:func:`_kill_session_rest`).
SESSION_KILL_PASSES = 100
BATCH_PREFIXES = ("SLURM_",)
"""Variables of the wrapper's own environment passed to the job: the batch system's."""
BATCH_JOB_VARIABLES = ("SLURM_JOB_ID",)
"""Variables of the wrapper's own environment that say a batch system runs it
(:func:`under_batch_system`)."""
#: How the status's ``failure`` of a job stopped at its wall time (:attr:`JobSpec.wall_time`)
#: begins; the local backend reports such a job Aborted.
WALL_TIME_EXCEEDED = "the job exceeded its wall time"

EXIT_WRAPPER_ERROR = 1
EXIT_NO_STATUS = 2
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127

_FORBIDDEN_OUTSIDE = ("LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT")
_MAX_SPEC_BYTES = 1 << 20


class WrapperError(Exception):
    """The payload could not be run; ``str()`` is the reason, ``exit_code`` the
    wrapper's exit status."""

    def __init__(self, reason: str, exit_code: int = EXIT_WRAPPER_ERROR) -> None:
        super().__init__(reason)
        self.exit_code = exit_code


_SPEC_FIELDS = ("job_id", "executable", "arguments", "stdin", "stdout", "stderr", "environment", "proxy",
                "prologue", "prologue_arguments", "epilogue", "epilogue_arguments", "umask", "kill_grace",
                "base_environment", "wall_time", "max_processes", "shell_arguments", "shell_environment")
#: Fields written only when they differ from these defaults (:meth:`JobSpec.to_bytes`): the spec of
#: a job that needs no shell is what workers before them wrote, which their wrappers read.
_OMITTED_AT_DEFAULT: dict[str, Any] = {"shell_arguments": None, "shell_environment": []}


class JobSpec:
    """What the wrapper runs; stored in ``.wmproxy/job.marshal`` (:meth:`to_bytes`).

    Attributes:
        job_id: grid job id, exported as ``GLITE_WMS_JOBID``.
        executable: JDL ``Executable``: absolute path, path relative to the work dir
            (made executable if it is a regular file of ours inside the work dir), or
            a bare name looked up in the job's ``PATH``.
        arguments: JDL ``Arguments`` already split into a list (no shell expansion): the
            worker's split of a text with nothing for the shell to do (see ``shell_arguments``).
        stdin, stdout, stderr: JDL ``StdInput``/``StdOutput``/``StdError``, names
            relative to the work dir without ``..``; None means ``/dev/null``. Outputs
            are created fresh (an existing file or symlink at that name is replaced,
            never followed); ``stdout == stderr`` shares one file.
        environment: JDL ``Environment`` as a mapping, values taken as they are (the worker's
            for entries with nothing for the shell to do; see ``shell_environment``).
        proxy: name of the job's proxy copy relative to the work dir (exported as
            ``X509_USER_PROXY``), None when the job has no proxy.
        prologue, prologue_arguments, epilogue, epilogue_arguments: JDL ``Prologue``
            and ``Epilogue`` resolved like ``executable``, with their arguments as the worker
            split them without a shell (docs/execution.md, "PrologueArguments and
            EpilogueArguments: no shell").
        umask: umask of every child, an int such as 0o022.
        kill_grace: seconds between the forwarded SIGTERM and SIGKILL.
        base_environment: the worker's configured base variables (e.g. ``LANG``),
            applied before JDL ``Environment``.
        wall_time: seconds the job may run, counted from the wrapper's start (prologue,
            payload and epilogue together), None for no limit. When it is exceeded the running
            child's group gets SIGTERM, ``kill_grace`` seconds later SIGKILL, nothing of the job
            runs after it, and the status's ``failure`` says so (:data:`WALL_TIME_EXCEEDED`).
            Left to the batch system by a wrapper a batch system runs (:func:`under_batch_system`:
            Slurm enforces its own ``--time``).
        max_processes: the job's ``RLIMIT_NPROC`` (soft and hard), set by the wrapper before
            anything of the job runs; 0 for no limit (the wrapper's own, inherited). The kernel
            counts every process and thread of the account's uid on the host, so all the jobs of
            one account share it. Left to the batch system like ``wall_time``.
        shell_arguments: JDL ``Arguments`` as written, for :data:`SHELL` to evaluate as the
            original job wrapper's ``eval`` did (expansion, quote removal, globbing in the work
            dir), None when ``arguments`` holds them: the payload is then executed through
            ``/bin/sh -c "exec '<program>' <shell_arguments>" sh`` (:func:`payload_argv`).
        shell_environment: JDL ``Environment`` entries (``NAME=value`` as written) for
            :data:`SHELL` to evaluate in order as the original's ``eval export <entry>`` did,
            each seeing the job's environment so far (``PATH``, ``HOME``, ``GLITE_WMS_JOBID``,
            ``X509_USER_PROXY``, the entries before it); applied after ``environment``. Empty:
            no shell runs (:meth:`_Run._evaluate_environment`).
    """

    __slots__ = _SPEC_FIELDS

    job_id: str
    executable: str
    arguments: list[str]
    stdin: str | None
    stdout: str | None
    stderr: str | None
    environment: dict[str, str]
    proxy: str | None
    prologue: str | None
    prologue_arguments: list[str]
    epilogue: str | None
    epilogue_arguments: list[str]
    umask: int
    kill_grace: float
    base_environment: dict[str, str]
    wall_time: float | None
    max_processes: int
    shell_arguments: str | None
    shell_environment: list[str]

    def __init__(
        self, job_id: str, executable: str, arguments: list[str] | None = None, stdin: str | None = None,
        stdout: str | None = None, stderr: str | None = None, environment: dict[str, str] | None = None,
        proxy: str | None = None, prologue: str | None = None, prologue_arguments: list[str] | None = None,
        epilogue: str | None = None, epilogue_arguments: list[str] | None = None, umask: int = DEFAULT_UMASK,
        kill_grace: float = DEFAULT_KILL_GRACE, base_environment: dict[str, str] | None = None,
        wall_time: float | None = None, max_processes: int = 0, shell_arguments: str | None = None,
        shell_environment: list[str] | None = None,
    ) -> None:
        values = {
            "job_id": job_id, "executable": executable,
            "arguments": [] if arguments is None else arguments, "stdin": stdin, "stdout": stdout,
            "stderr": stderr, "environment": {} if environment is None else environment, "proxy": proxy,
            "prologue": prologue, "prologue_arguments": [] if prologue_arguments is None else prologue_arguments,
            "epilogue": epilogue, "epilogue_arguments": [] if epilogue_arguments is None else epilogue_arguments,
            "umask": umask, "kill_grace": kill_grace,
            "base_environment": {} if base_environment is None else base_environment,
            "wall_time": wall_time, "max_processes": max_processes, "shell_arguments": shell_arguments,
            "shell_environment": [] if shell_environment is None else shell_environment,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"JobSpec is frozen: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"JobSpec is frozen: cannot delete {name}")

    def as_dict(self) -> dict[str, Any]:
        """The fields by name (lists and mappings copied)."""
        return {name: _copied(getattr(self, name)) for name in _SPEC_FIELDS}

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _SPEC_FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable lists inside, as the dataclass was

    def __repr__(self) -> str:
        return "JobSpec(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in _SPEC_FIELDS) + ")"

    def _wire(self) -> dict[str, Any]:
        """The fields as written, with ``"version": 1``; ``shell_arguments`` and
        ``shell_environment`` only when set, so that a job needing no shell has the spec a
        wrapper older than them reads (a missing field takes its default when read)."""
        data: dict[str, Any] = {"version": SPEC_VERSION}
        data.update(self.as_dict())
        for name, default in _OMITTED_AT_DEFAULT.items():
            if data[name] == default:
                del data[name]
        return data

    def to_bytes(self) -> bytes:
        """The spec as the bytes of ``job.marshal``: ``marshal`` (version 4) of a plain dict
        of the fields (str, int, float, None, lists of str, dicts of str to str) with
        ``"version": 1`` (:meth:`_wire`); read back without importing anything (:meth:`from_bytes`)."""
        return marshal.dumps(self._wire(), SPEC_MARSHAL_VERSION)

    @classmethod
    def from_bytes(cls, raw: bytes) -> JobSpec:
        """Parse and check ``job.marshal`` (:meth:`to_bytes`). ``marshal`` is not meant for
        untrusted data, but the file is the account's own and the wrapper runs as the
        account: a forged spec harms nothing the job could not harm anyway; every field's
        type is checked (:meth:`check`), so no code object or other type gets through.

        Raises:
            WrapperError: not a marshalled mapping, unknown version, missing or mistyped
                field, a Std* name escaping the work dir, an invalid environment name.
        """
        try:
            data = marshal.loads(raw)  # noqa: S302 - the account's own file, every field checked
        except (EOFError, ValueError, TypeError) as exc:
            raise WrapperError(f"Job Wrapper error: the job description is unreadable: {exc}") from None
        return cls._from_mapping(data)

    def to_json(self) -> str:
        """The spec as the JSON text of the legacy ``job.json`` (with ``"version": 1``)."""
        return dumps(self._wire())

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        """Parse and check the legacy ``job.json`` (imports ``json``: only for a work dir
        an older worker prepared).

        Raises:
            WrapperError: not JSON, or as :meth:`from_bytes`.
        """
        import json

        try:
            data = json.loads(text)
        except ValueError as exc:
            raise WrapperError(f"Job Wrapper error: the job description is not JSON: {exc}") from None
        return cls._from_mapping(data)

    @classmethod
    def _from_mapping(cls, data: object) -> JobSpec:
        if not isinstance(data, dict) or data.pop("version", None) != SPEC_VERSION:
            raise WrapperError("Job Wrapper error: unsupported job description version")
        known = set(_SPEC_FIELDS)
        unknown = sorted(set(data) - known, key=repr)
        if unknown:
            raise WrapperError(f"Job Wrapper error: unknown job description fields {unknown}")
        try:
            spec = cls(**data)
        except TypeError:
            raise WrapperError("Job Wrapper error: the job description lacks job_id or executable") from None
        spec.check()
        return spec

    def check(self) -> None:
        """Raise :class:`WrapperError` unless every field has the documented type and
        every file name stays inside the work dir."""
        _expect(isinstance(self.job_id, str) and self.job_id != "", "job_id")
        _expect(isinstance(self.executable, str) and self.executable != "", "executable")
        for name in ("arguments", "prologue_arguments", "epilogue_arguments"):
            value = getattr(self, name)
            _expect(isinstance(value, list) and all(isinstance(a, str) and "\0" not in a for a in value), name)
        shell = self.shell_arguments
        _expect(shell is None or (isinstance(shell, str) and "\0" not in shell and not self.arguments),
                "shell_arguments")
        entries = self.shell_environment
        _expect(isinstance(entries, list) and all(isinstance(e, str) and "\0" not in e for e in entries),
                "shell_environment")
        for name in ("stdin", "stdout", "stderr", "proxy"):
            value = getattr(self, name)
            if value is not None:
                _expect(isinstance(value, str), name)
                check_relative(value, name)
                if name != "proxy" and value.split("/")[0] == STATE_DIR:
                    raise WrapperError(f"Job Wrapper error: the {name} {value!r} is inside the wrapper's own directory")
        for name in ("prologue", "epilogue"):
            value = getattr(self, name)
            _expect(value is None or (isinstance(value, str) and value != ""), name)
        for name in ("environment", "base_environment"):
            env = getattr(self, name)
            _expect(isinstance(env, dict), name)
            for key, value in env.items():
                if not isinstance(key, str) or not isinstance(value, str):
                    raise WrapperError(f"Job Wrapper error: {name} entries must be strings")
                if not key or "=" in key or "\0" in key or "\0" in value:
                    raise WrapperError(f"Job Wrapper error: invalid environment variable name {key!r}")
        _expect(isinstance(self.umask, int) and not isinstance(self.umask, bool) and 0 <= self.umask <= 0o777, "umask")
        grace = self.kill_grace
        _expect(isinstance(grace, (int, float)) and not isinstance(grace, bool) and grace >= 0, "kill_grace")
        wall = self.wall_time
        _expect(wall is None or (isinstance(wall, (int, float)) and not isinstance(wall, bool) and 0 < wall < 1e12),
                "wall_time")
        limit = self.max_processes
        _expect(isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0, "max_processes")


def _copied(value: Any) -> Any:
    return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value


def _expect(ok: bool, name: str) -> None:
    if not ok:
        raise WrapperError(f"Job Wrapper error: invalid {name} in the job description")


def check_relative(name: str, what: str) -> None:
    """Raise :class:`WrapperError` unless ``name`` is a relative path without ``..``,
    empty components or NUL (a file inside the work dir)."""
    parts = name.split("/")
    if not name or name.startswith("/") or "\0" in name or any(p in ("", ".", "..") for p in parts):
        raise WrapperError(f"Job Wrapper error: the {what} {name!r} is not a file name inside the job directory")


def utc_now() -> str:
    """Current time as UTC ISO 8601 with a ``Z`` suffix."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1_000_000):06d}Z"


# --- environment -----------------------------------------------------------------


def build_environment(spec: JobSpec, work_dir: str, notes: list[str]) -> dict[str, str]:
    """The complete environment of the job's children, built from nothing.

    ``work_dir`` must be absolute. Dropped ``LD_PRELOAD`` entries are appended to
    ``notes``. See the module docstring for the order.
    """
    env = {"PATH": BASE_PATH, "LANG": "C.UTF-8", "HOME": work_dir, "TMPDIR": os.path.join(work_dir, TMP_DIR)}
    user = _user_name()
    if user:
        env["USER"] = env["LOGNAME"] = user
    env.update((key, value) for key, value in os.environ.items() if key.startswith(BATCH_PREFIXES))
    for key, value in spec.base_environment.items():
        if key in _FORBIDDEN_OUTSIDE or key.startswith("PYTHON"):
            notes.append(f"{key} of the worker's base environment ignored")
            continue
        env[key] = value
    env.update(spec.environment)
    return finish_environment(env, spec, work_dir, notes)


def finish_environment(env: dict[str, str], spec: JobSpec, work_dir: str, notes: list[str]) -> dict[str, str]:
    """``env`` with the JDL's ``LD_PRELOAD`` cut to the entries that exist, and
    ``GLITE_WMS_JOBID`` and ``X509_USER_PROXY`` set (they cannot be overridden): the last step
    of :func:`build_environment`, again after the shell evaluated ``shell_environment``."""
    if "LD_PRELOAD" in env:
        kept = _usable_preload(env["LD_PRELOAD"], work_dir, notes)
        if kept:
            env["LD_PRELOAD"] = kept
        else:
            del env["LD_PRELOAD"]
    env["GLITE_WMS_JOBID"] = spec.job_id
    if spec.proxy is not None:
        env["X509_USER_PROXY"] = os.path.join(work_dir, spec.proxy)
    else:
        env.pop("X509_USER_PROXY", None)
    return env


#: ``(uid, its user name or None)`` as :func:`prepare_fork` looked it up in the zygote before the
#: batch that forked this wrapper; empty in a wrapper started on its own.
_USER_NAME: list[tuple[int, str | None]] = []


def _user_name() -> str | None:
    """The name of the wrapper's uid in the password database (None: it has none): the one the
    zygote looked up before forking this wrapper (:func:`prepare_fork`), else looked up now
    (the C library reads the database again at each lookup: with ``files``, an open and a read
    of ``/etc/passwd``, and in a freshly forked wrapper the page faults of its buffers)."""
    uid = os.getuid()
    if _USER_NAME and _USER_NAME[0][0] == uid:
        return _USER_NAME[0][1]
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _usable_preload(value: str, work_dir: str, notes: list[str]) -> str:
    kept = []
    for entry in value.replace(":", " ").split():
        if "/" in entry and not os.path.isfile(os.path.join(work_dir, entry)):
            notes.append(f"LD_PRELOAD entry {entry} does not exist: dropped")
            continue
        kept.append(entry)
    return " ".join(kept)


# --- files -----------------------------------------------------------------------


def _open_dir_chain(root_fd: int, parts: list[str]) -> int:
    """Open the directory ``parts`` below ``root_fd`` without following symlinks."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_confined(work_fd: int, name: str, write: bool, what: str) -> int:
    """Open ``name`` below the work dir, following no symlink on the way.

    For writing, any existing entry of that name (file or symlink) is removed and the
    file is created fresh (``O_EXCL``, mode 0666 minus the umask).

    Raises:
        WrapperError: the name escapes the work dir or cannot be opened.
    """
    check_relative(name, what)
    *dirs, last = name.split("/")
    try:
        dir_fd = _open_dir_chain(work_fd, dirs)
        try:
            if not write:
                fd = os.open(last, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    os.close(fd)
                    raise WrapperError(f"Job Wrapper error: the {what} {name} is not a regular file")
                return fd
            try:
                os.unlink(last, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(last, flags, 0o666, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise WrapperError(f"Job Wrapper error: cannot open the {what} {name}: {exc.strerror}") from None


def _write_atomic(state_fd: int, name: str, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``name`` in the state dir: temporary file, fsync,
    rename over ``name``, fsync of the directory."""
    tmp = f".{name}.{os.getpid()}.tmp"
    try:
        os.unlink(tmp, dir_fd=state_fd)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=state_fd)
    try:
        os.write(fd, dumps(data).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, name, src_dir_fd=state_fd, dst_dir_fd=state_fd)
    os.fsync(state_fd)


def _write_new(state_fd: int, name: str, data: dict[str, Any]) -> int | None:
    """Create ``name`` in the state dir (``O_EXCL``), fsync it while it is still empty, then
    write ``data`` into it as JSON, for ``started.json``: no temporary file, so one inode and no
    rename (each new inode cost about 1 ms of CPU on this host's file system). Returns its
    descriptor, kept open for the final status (:func:`_finish_started`). An entry already
    there (the job planted one) is replaced (:func:`_write_atomic`): then None.

    Only its name matters, and the file's fsync makes the name of a file it created durable on
    Linux: ext4 without a journal (as here) writes the new file's directory in that fsync
    (``ext4_sync_parent``), while a journalled ext4, XFS or btrfs commit the creation with it.
    The directory's own fsync (the wrapper's fourth, about 0.1 ms) is not needed. Without a
    journal it would not even suffice alone: it writes the directory entry, not the new inode.

    The content is written after the fsync and never synced (stop 52): a file synced with data
    has a block allocated on disk, and on a file system that discards freed blocks at once
    (ext4 without a journal mounted with ``discard``, as here) the worker's unlink of the job's
    ``status.json`` at the release then waited for that block's discard (about 4-5 ms of the
    worker's single loop per job). Written into the page cache only, the content is removed
    with the file before the kernel allocates it a block (a job shorter than the writeback's
    30 s). A reader after a host crash may find the file empty or partial, which its readers
    take for present (``LocalExecutionBackend.started``), as it is: the payload was started
    before; what it holds decides nothing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o644, dir_fd=state_fd)
    except FileExistsError:
        _write_atomic(state_fd, name, data)
        return None
    try:
        os.fsync(fd)
        os.write(fd, dumps(data).encode() + b"\n")
    except OSError:
        os.close(fd)
        raise
    return fd


def _finish_started(state_fd: int, fd: int, data: dict[str, Any]) -> None:
    """Write the final status ``data`` into ``started.json`` (open as ``fd``, closed here) and
    rename it to ``status.json``: the status needs no inode of its own (a temporary file
    was one more new inode per job, about 1 ms of CPU on this host's file system).

    Neither the content nor the rename is synced (issue 14: the two fsyncs were about a fifth of
    a trivial job's wall time through the local backend). The worker reads the status after the
    wrapper has exited, through the same page cache (or, on a shared file system, through its
    coherence: NFS flushes at close), so it always finds the final status. Only a crash of the
    host (or of a batch node before its file system wrote the status back) before the worker
    has durably recorded the end can lose it, and what it can leave is a deep
    failure, as a wrapper that died after starting the payload: ``started.json`` (the rename
    lost; its name was synced when it was created: the payload is never taken for not
    started), or a ``status.json`` that does not parse as a status (its content lost or torn,
    or ``started.json``'s, which lacks the status's required fields). A status that parses is
    the whole final one."""
    try:
        raw = dumps(data).encode() + b"\n"
        written = os.pwrite(fd, raw, 0)
        while written < len(raw):
            written += os.pwrite(fd, raw[written:], written)
        os.ftruncate(fd, len(raw))
    finally:
        os.close(fd)
    os.rename(STARTED_NAME, STATUS_NAME, src_dir_fd=state_fd, dst_dir_fd=state_fd)


# --- JSON output without the json module ----------------------------------------------

_JSON_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_JSON_CONSTANTS = {None: "null", True: "true", False: "false"}


def dumps(value: object) -> str:
    """``json.dumps(value, indent=1, sort_keys=True)``, character for character, for the
    values the wrapper writes: dicts with str keys, lists and tuples, str, int, float,
    bool and None (``ensure_ascii``: everything outside printable ASCII as ``\\uXXXX``,
    surrogate pairs beyond the BMP; ``NaN``/``Infinity`` as ``json`` writes them).

    Raises:
        TypeError: a value or key of another type (``json`` converts non-str keys; this
            refuses them).
        ValueError: a container that contains itself.
    """
    parts: list[str] = []
    _encode(value, parts, "\n", set())
    return "".join(parts)


def _encode(value: object, parts: list[str], newline: str, active: set[int]) -> None:
    if value is None or value is True or value is False:
        parts.append(_JSON_CONSTANTS[value])
    elif isinstance(value, str):
        parts.append(_json_string(value))
    elif isinstance(value, int):
        parts.append(int.__repr__(value))
    elif isinstance(value, float):
        parts.append(_json_float(value))
    elif isinstance(value, (dict, list, tuple)):
        if not value:
            parts.append("{}" if isinstance(value, dict) else "[]")
            return
        if id(value) in active:
            raise ValueError("Circular reference detected")
        active.add(id(value))
        inner = newline + " "
        if isinstance(value, dict):
            parts.append("{")
            for index, key in enumerate(sorted(value)):
                if not isinstance(key, str):
                    raise TypeError(f"keys must be str, not {key.__class__.__name__}")
                parts.append(("," if index else "") + inner + _json_string(key) + ": ")
                _encode(value[key], parts, inner, active)
            parts.append(newline + "}")
        else:
            parts.append("[")
            for index, item in enumerate(value):
                parts.append(("," if index else "") + inner)
                _encode(item, parts, inner, active)
            parts.append(newline + "]")
        active.discard(id(value))
    else:
        raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def _json_string(text: str) -> str:
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return '"' + text + '"'
    out = []
    for char in text:
        if char in _JSON_ESCAPES:
            out.append(_JSON_ESCAPES[char])
        elif " " <= char <= "~":
            out.append(char)
        else:
            code = ord(char)
            if code > 0xFFFF:
                code -= 0x10000
                out.append(f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}")
            else:
                out.append(f"\\u{code:04x}")
    return '"' + "".join(out) + '"'


def _json_float(number: float) -> str:
    if number != number:
        return "NaN"
    if number in (float("inf"), float("-inf")):
        return "Infinity" if number > 0 else "-Infinity"
    return float.__repr__(number)


def _resolve_program(name: str, work_dir: str, work_fd: int, path: str, what: str) -> str:
    """Absolute path of a JDL ``Executable``/``Prologue``/``Epilogue``.

    A name relative to the work dir that is a regular file of ours inside it is made
    executable by its owner (through an ``O_NOFOLLOW`` descriptor, never a symlink).

    Raises:
        WrapperError: not found (127) or not executable (126).
    """
    if "\0" in name:
        raise WrapperError(f"Job Wrapper error: invalid {what} name", EXIT_WRAPPER_ERROR)
    while name.startswith("./"):
        name = name[2:]
    if os.path.isabs(name):
        candidate = name
    elif os.path.lexists(os.path.join(work_dir, name)):
        check_relative(name, what)
        candidate = os.path.join(work_dir, name)
        _make_executable(candidate, work_dir, work_fd, name)
    elif "/" not in name:
        import shutil  # only here: a bare program name is rare in a JDL

        found = shutil.which(name, path=path)
        if found is None:
            raise WrapperError(f"Job Wrapper error: the {what} {name} was not found", EXIT_NOT_FOUND)
        candidate = found
    else:
        raise WrapperError(f"Job Wrapper error: the {what} {name} was not found", EXIT_NOT_FOUND)
    if not os.path.exists(candidate):
        raise WrapperError(f"Job Wrapper error: the {what} {name} was not found", EXIT_NOT_FOUND)
    if not os.path.isfile(candidate) or not os.access(candidate, os.X_OK):
        raise WrapperError(f"Job Wrapper error: the {what} {name} is not executable", EXIT_NOT_EXECUTABLE)
    return candidate


def _make_executable(candidate: str, work_dir: str, work_fd: int, name: str) -> None:
    real_work = os.path.realpath(work_dir)
    if not os.path.realpath(candidate).startswith(real_work + os.sep):
        return
    *dirs, last = name.split("/")
    try:
        dir_fd = _open_dir_chain(work_fd, dirs)
        try:
            fd = os.open(last, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        return  # a symlink or unreadable: run it as it is
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & stat.S_IXUSR:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) | stat.S_IXUSR)
    finally:
        os.close(fd)


# --- the shell's part (JDL Environment and Arguments) ------------------------------

SHELL = "/bin/sh"
"""The shell that evaluates the JDL ``Environment`` and ``Arguments`` of a spec whose worker
found something for a shell to do in them (:attr:`JobSpec.shell_environment`,
:attr:`JobSpec.shell_arguments`), as the original job wrapper's ``eval`` did. POSIX ``sh``:
bash-only syntax (brace expansion, ``$'...'``, arrays) is not evaluated, where gLite's wrapper, a
``#!/bin/sh`` script needing bash, had bash's (docs/execution.md, "Which shell"). JDL
``PrologueArguments``/``EpilogueArguments`` never come here (gLite did not ``eval`` them either)."""
#: Programs that print the environment NUL-separated (``env -0``), the first one found is used.
ENV_PROGRAMS = ("/usr/bin/env", "/bin/env")
#: Set by the last step of :data:`_EVALUATE_ENVIRONMENT` only: its absence from the output says
#: the evaluation did not get to its end (an entry ran ``exit``, a signal...).
_EVALUATED = "WMPROXY_ENVIRONMENT_EVALUATED"
#: ``sh -c`` script (``ENV``: the ``env`` program, quoted): each operand is a JDL ``Environment``
#: entry, evaluated in order by ``eval export <entry>`` (``command``: a syntax error ends the loop,
#: not the shell, so the entry is named); what the entries print goes to the standard error, the
#: output being the environment. The loop uses the positional parameters only, which no entry's
#: ``export`` can change.
_EVALUATE_ENVIRONMENT = ('while [ "$#" -gt 0 ]; do command eval "export $1" >&2 || { printf %s "$1"; exit 1; }; '
                         f'shift; done; exec ENV -0 {_EVALUATED}=1')
#: Variables a shell may export of itself (dash ``PWD``; bash as ``sh`` also ``SHLVL``, ``_``,
#: ``OLDPWD``): not the job's unless the environment given to it or an entry has them.
_SHELL_OWN = ("PWD", "OLDPWD", "SHLVL", "_")
#: Bytes of the evaluated environment (or of the shell's messages) read at most.
_MAX_EVALUATED_BYTES = 16 << 20


def payload_argv(program: str, spec: JobSpec) -> list[str]:
    """The payload's command line: ``program`` with the split ``arguments``, or, for
    ``shell_arguments``, :data:`SHELL` executing ``program`` with the arguments as the shell
    reads them (``sh -c "exec '<program>' <shell_arguments>" sh``: one process, the shell
    replaced by the payload; a syntax error is the shell's exit code 2 and its message in
    ``StdError``)."""
    if spec.shell_arguments is None:
        return [program, *spec.arguments]
    return [SHELL, "-c", f"exec {_sh_quoted(program)} {spec.shell_arguments}", "sh"]


def _sh_quoted(text: str) -> str:
    """``text`` as one word of ``sh``: single-quoted (``shlex.quote``, which the wrapper does not import)."""
    return "'" + text.replace("'", "'\\''") + "'"


def _scratch_file(work_fd: int) -> int:
    """A file without a name for a child's output (read back once it exited): a ``memfd``, else
    a file in the job's ``TMPDIR`` removed at once. Never a pipe: a process of the job left
    holding it would block the wrapper's read."""
    if hasattr(os, "memfd_create"):
        try:
            return os.memfd_create("wmproxy-environment", os.MFD_CLOEXEC)
        except OSError:
            pass
    name = f"{TMP_DIR}/.environment.{os.getpid()}.{time.monotonic_ns()}"
    fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=work_fd)
    os.unlink(name, dir_fd=work_fd)
    return fd


def _read_back(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    parts = []
    size = 0
    while size <= _MAX_EVALUATED_BYTES:
        part = os.read(fd, 1 << 20)
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _shell_message(errors: bytes) -> str:
    """The shell's last message line (at most 300 characters), or a placeholder."""
    lines = [line.strip() for line in errors.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"


def evaluated_environment(output: bytes, given: dict[str, str], entries: list[str]) -> dict[str, str] | None:
    """The environment ``env -0`` printed at the end of :data:`_EVALUATE_ENVIRONMENT`, None when
    the output lacks its end mark (the evaluation did not finish). What the shell exports of
    itself (:data:`_SHELL_OWN`) is left out unless ``given`` or an entry has it."""
    env: dict[str, str] = {}
    for record in output.split(b"\0"):
        key, sep, value = record.partition(b"=")
        if sep:
            env[os.fsdecode(key)] = os.fsdecode(value)
    if env.pop(_EVALUATED, None) != "1":
        return None
    for name in _SHELL_OWN:
        if name not in given and not any(entry.startswith(name + "=") for entry in entries):
            env.pop(name, None)
    return env


# --- running children ------------------------------------------------------------


def _outcome(returncode: int) -> dict[str, Any]:
    if returncode < 0:
        return {"exit_code": None, "signal": -returncode, "failure": None}
    return {"exit_code": returncode, "signal": None, "failure": None}


def _shell_code(outcome: dict[str, Any]) -> int:
    if outcome["signal"] is not None:
        return 128 + int(outcome["signal"])
    return int(outcome["exit_code"])


DEVNULL = -3
"""A child's standard stream from or to ``/dev/null`` (the value of ``subprocess.DEVNULL``)."""


#: Whether the wrapper adopts the orphans of its job (:func:`_adopt_orphans`): then it reaps
#: them while it waits for a child (:meth:`_Child.wait`) and kills what its job left among its
#: descendants (:func:`_kill_descendants_once`), not its session's members over all of ``/proc``.
_ADOPTING: list[bool] = []
#: The pids of the children the wrapper started itself (payload, prologue, epilogue, the
#: Environment's shell, the inspection agent): never reaped as an adopted orphan.
_OWN: set[int] = set()
#: Wait statuses of the wrapper's own children reaped while it waited for another (pid -> status).
_REAPED: dict[int, int] = {}


class _Child:
    """A child started by :func:`_spawn`: its pid (also its process group id)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        _OWN.add(pid)

    def wait(self) -> int:
        """Wait for the child; its return code (``-N`` when signal N killed it). A wrapper that
        adopts its job's orphans (:func:`_adopt_orphans`) reaps those that end meanwhile, so that
        none stays a zombie (counted against the account's process limit) for the job's life."""
        while self.pid not in _REAPED:
            pid = self.pid
            if _ADOPTING:  # whichever child ended first (retried after a signal handler ran: PEP 475)
                ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
                if ended is not None:
                    pid = ended.si_pid
            try:
                got, status = os.waitpid(pid, 0)
            except ChildProcessError:
                if pid == self.pid:
                    raise
                continue
            if got in _OWN:
                _REAPED[got] = status
        status = _REAPED.pop(self.pid)
        _OWN.discard(self.pid)
        if os.WIFSIGNALED(status):
            return -os.WTERMSIG(status)
        return os.WEXITSTATUS(status)


def _spawn(argv: list[str], env: dict[str, str], cwd: str, stdin: int, stdout: int,
           stderr: int) -> _Child | subprocess.Popen[bytes]:
    """Start ``argv[0]`` (an absolute path) in a new process group, in ``cwd``, with
    exactly ``env`` and the given standard streams (descriptors or :data:`DEVNULL`).

    ``os.posix_spawn`` (Python 3.8+; ``vfork`` and ``exec`` in the C library, no Python
    code in the child) with SIGPIPE and SIGXFSZ back to their defaults, as ``subprocess``
    restores them; the child inherits only its three standard streams (every descriptor
    the wrapper opens is non-inheritable, and those it inherited are made so by
    :func:`_no_inherited_descriptors`). Older Pythons use ``subprocess``.

    Raises:
        OSError: the program cannot be executed (``FileNotFoundError``,
            ``PermissionError``...).
    """
    if not hasattr(os, "posix_spawn"):
        import subprocess

        return subprocess.Popen(  # noqa: S603 - running the user's payload is the point
            argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr, close_fds=True,
            preexec_fn=os.setpgrp,  # noqa: PLW1509 - the wrapper has no threads
        )
    actions: list[tuple[Any, ...]] = []
    for target, source in ((0, stdin), (1, stdout), (2, stderr)):
        if source == DEVNULL:
            actions.append((os.POSIX_SPAWN_OPEN, target, os.devnull, os.O_RDWR, 0))
        else:
            actions.append((os.POSIX_SPAWN_DUP2, source, target))
    if os.getcwd() != cwd:
        os.chdir(cwd)
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions, setpgroup=0,
                         setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    return _Child(pid)


def _no_inherited_descriptors() -> None:
    """Make every descriptor above 2 the wrapper inherited (from a batch system's step
    daemon, say) non-inheritable, so that no child gets it (``subprocess``'s
    ``close_fds``)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in names:
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own descriptor, closed meanwhile


class _Supervisor:
    """Starts children in their own process groups, forwards SIGTERM/SIGINT and stops them at the
    job's wall time (:meth:`limit`)."""

    def __init__(self, grace: float = DEFAULT_KILL_GRACE) -> None:
        self.grace = grace
        self.current: _Child | subprocess.Popen[bytes] | None = None
        self.cancelled_by: int | None = None
        #: ``time.monotonic()`` when the job's wall time ends, None: no limit (:meth:`limit`).
        self.deadline: float | None = None
        #: Whether the wall time was exceeded: the running child was told to stop.
        self.timed_out = False
        self._killing = False  # the SIGALRM armed is the kill grace's (else the wall time's)
        #: ``(monotonic deadline, start)``: ``start()`` is called once a child is still running
        #: at the deadline (:meth:`defer`).
        self.deferred: tuple[float, Callable[[], None]] | None = None
        signal.signal(signal.SIGTERM, self._on_cancel)
        signal.signal(signal.SIGINT, self._on_cancel)
        signal.signal(signal.SIGALRM, self._on_alarm)

    def _on_cancel(self, signum: int, _frame: object) -> None:
        if self.cancelled_by is not None:
            return
        self.cancelled_by = signum
        self._forward()

    def _forward(self) -> None:
        if self.current is not None:
            _killpg(self.current.pid, signal.SIGTERM)
            self._killing = True
            signal.setitimer(signal.ITIMER_REAL, max(self.grace, 0.001))

    def _on_alarm(self, _signum: int, _frame: object) -> None:
        if self.current is None:
            return
        if self._killing:
            _killpg(self.current.pid, signal.SIGKILL)
        elif self.deadline is not None and time.monotonic() >= self.deadline:
            self._expire()
        else:  # early (a clock step): armed again for the time left
            self._arm()

    def _expire(self) -> None:
        """The wall time has passed: SIGTERM to the running child's group, the grace, SIGKILL."""
        self.timed_out = True
        if self.cancelled_by is None:
            self._forward()

    def limit(self, seconds: float) -> None:
        """End the job's wall time ``seconds`` from now: a child still running then is stopped
        (SIGTERM to its group, ``grace`` seconds later SIGKILL) and :attr:`timed_out` is set."""
        self.deadline = time.monotonic() + seconds

    def _arm(self) -> None:
        """Arm SIGALRM for the wall time left (for the child just started), if there is a limit."""
        if self.deadline is None or self._killing:
            return
        left = self.deadline - time.monotonic()
        if left <= 0:
            self._expire()
        else:
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))

    def run(
        self, argv: list[str], env: dict[str, str], cwd: str, stdin: int, stdout: int, stderr: int
    ) -> _Child | subprocess.Popen[bytes]:
        """Start ``argv`` in a new process group (:func:`_spawn`); OSError if it cannot be executed."""
        process = _spawn(argv, env, cwd, stdin, stdout, stderr)
        self.current = process
        self._killing = False
        if self.cancelled_by is not None:
            self._forward()  # the signal came while the child was being started
        else:
            self._arm()
        return process

    def defer(self, delay: float, start: Callable[[], None]) -> None:
        """Call ``start()`` (once) if, ``delay`` seconds from now, a child :meth:`wait` waits
        for is still running and the wrapper was not cancelled; the inspection agent's start."""
        self.deferred = (time.monotonic() + delay, start)

    def wait(self, process: _Child | subprocess.Popen[bytes]) -> dict[str, Any]:
        """Wait for ``process``, kill what it left in its group, return its outcome."""
        if self.deferred is not None:
            deadline, start = self.deferred
            if _running_at(process, deadline) and self.cancelled_by is None:
                self.deferred = None
                start()
        returncode = process.wait()
        signal.setitimer(signal.ITIMER_REAL, 0)
        self.current = None
        self._killing = False
        _killpg(process.pid, signal.SIGKILL)
        return _outcome(returncode)


def _running_at(process: _Child | subprocess.Popen[bytes], deadline: float) -> bool:
    """Wait until ``process`` exits or the ``time.monotonic()`` ``deadline`` passes, whichever
    comes first; True when it still runs then. The child is not reaped. Through a pidfd
    (``os.pidfd_open``, Python 3.9+ on Linux 5.3+) and ``select.poll``, which PEP 475 resumes
    after a signal handler (SIGTERM forwarding, the kill grace's SIGALRM) with the time left.
    Without a pidfd it answers True at once (the deferred start then happens at once)."""
    if not hasattr(os, "pidfd_open") or not isinstance(process, _Child):
        return True
    import select  # the zygote loads it before it forks (zygote._serve); a C module elsewhere

    try:
        fd = os.pidfd_open(process.pid)
    except OSError:  # a kernel without pidfd (before 5.3)
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if poller.poll(int(min(left, 3600.0) * 1000) + 1):
                return False
    finally:
        os.close(fd)


def _limit_processes(limit: int, notes: list[str]) -> None:
    """Set ``RLIMIT_NPROC`` (soft and hard) to ``limit``, never above the hard limit the wrapper
    has, for the wrapper and every child it starts (a fork beyond it fails with EAGAIN); a
    failure is noted, the job runs."""
    import resource  # a C module; the zygote loads it once for all its wrappers

    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
        value = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_NPROC, (value, value))
    except (OSError, ValueError) as exc:
        notes.append(f"cannot limit the job's processes to {limit}: {exc}")


def under_batch_system() -> bool:
    """Whether a batch system runs the wrapper (one of :data:`BATCH_JOB_VARIABLES` in its
    environment): it enforces the job's wall time itself (Slurm's ``--time``, which the Slurm
    backend sets from the same limit, and whose TIMEOUT it reports), so the wrapper does not."""
    return any(name in os.environ for name in BATCH_JOB_VARIABLES)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_session_rest() -> bool:
    """SIGKILL what the job left when it ends, if the wrapper leads its session (the local
    backend's wrappers do; one a batch system runs may not, and leaves that to it): every
    descendant of the wrapper when it adopts the job's orphans (:func:`_adopt_orphans`,
    :func:`_kill_descendants_once`), in its session or not, else every other process of its
    session (:func:`_kill_session_once`).

    Each child runs in its own process group, killed when the child ends, but the job can move
    a process to another group of the session (``setpgid``: ``set -m; cmd &`` in bash) or out of
    the session (``setsid``, a daemon's double fork); an orphan of either has the adopting
    wrapper as its parent, so while the wrapper lives every process of the job descends from it.
    One born or re-parented while a pass reads is found by the next pass, until a pass finds none
    alive (zombies do not count) and, when the wrapper adopts, its own children are the same
    after the pass as before it: a process that forks and exits while the pass runs is a zombie
    when its turn comes, and its child, adopted by the wrapper after the pass read the wrapper's
    children, would not be seen (the wrapper reaps nothing meanwhile, so its children only grow,
    and a process's orphans are adopted before it shows as a zombie). False when some were still
    there after :data:`SESSION_KILL_PASSES` passes (stuck in uninterruptible sleep, say)."""
    me = os.getpid()
    try:
        if os.getsid(0) != me:
            return True
    except OSError:
        return True
    for attempt in range(SESSION_KILL_PASSES):
        if attempt:
            time.sleep(0.01)
        if not _ADOPTING:
            if not _kill_session_once(me):
                return True
            continue
        before = _children(me, me)  # the pass starts from this list: one read of it fewer
        if not _kill_descendants_once(me, children=before) and _children(me, me) == before:
            return True
    return False


def _adopt_orphans() -> None:
    """Make the wrapper, when it leads its session, the "child subreaper" of its job
    (``prctl(PR_SET_CHILD_SUBREAPER)``, :func:`_prctl`): a process of the job whose parent ends
    is re-parented to the wrapper (or to a subreaper of the job's own below it), not to init, in
    the wrapper's session or not. Every process of the job is then one of its descendants, which
    the kernel lists in ``/proc/<pid>/task/<tid>/children``, so the leftovers' kill reads those
    lists (:func:`_kill_descendants_once`: one read for a job that left nothing) instead of
    ``getsid`` of every process of the host (``/proc`` listed: about 0.6 µs a process of the host
    and, in a freshly forked wrapper, the page faults of a string per process; docs/performance.md,
    stop 51), and also finds the processes that left the session. Left as it was (the session's
    members, from all of ``/proc``) when any of it is missing (``_ctypes`` included: :func:`_prctl`)."""
    me = os.getpid()
    if _ADOPTING or not hasattr(os, "posix_spawn") or not hasattr(os, "waitid"):
        return
    try:
        if os.getsid(0) != me or not os.path.exists(f"/proc/{me}/task/{me}/children"):
            return
    except OSError:
        return
    if _prctl(PR_SET_CHILD_SUBREAPER, 1):
        _ADOPTING.append(True)


def _children(pid: int, me: int) -> list[int]:
    """The children of ``pid``, from the kernel's lists of each of its threads' children (a
    child's parent is the thread that forked it; the wrapper, ``me``, has one thread); [] once it
    is gone (a dead process's children have been re-parented)."""
    try:
        threads = [str(me)] if pid == me else os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in threads:
        try:
            found.extend(map(int, _read_proc(f"/proc/{pid}/task/{tid}/children").split()))
        except (OSError, ValueError):
            continue
    return found


def _read_proc(path: str) -> bytes:
    """The whole of a ``/proc`` file, read through a bare descriptor: no buffered file object
    (``open()`` adds an ``fstat``, an ``ioctl``, two ``lseek``s and the objects' allocations, which
    in a freshly forked wrapper also cost page faults), read until its end (a list longer than a
    page comes in several reads)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts = []
        while part := os.read(fd, 65536):
            parts.append(part)
    finally:
        os.close(fd)
    return b"".join(parts)


def _open_pidfd(pid: int) -> int | None:
    """A pidfd of ``pid`` (close-on-exec), None without one (Python before 3.9, Linux before 5.3,
    no descriptor left: :func:`_send` then signals by pid). ProcessLookupError if it is gone."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise
    except OSError:  # ENOSYS, EMFILE
        return None


def _send(pid: int, pidfd: int | None, sig: int) -> None:
    """Send ``sig`` (0: only check it is there, reaped or not) to the process of ``pidfd``, else
    to ``pid``. ProcessLookupError once it has been reaped."""
    if pidfd is None:
        os.kill(pid, sig)
    else:
        signal.pidfd_send_signal(pidfd, sig)


#: :func:`_kill_descendant`'s answers besides a list of children: the process is gone (reaped),
#: or it could not be checked now (looked at again by the next pass).
_GONE = 0
_UNCHECKED = 1


def _kill_descendants_once(me: int, uid: int | None = None, *, children: list[int] | None = None) -> bool:
    """SIGKILL the live descendants of the wrapper (``me``, which adopts its job's orphans:
    :func:`_adopt_orphans`), whatever their session, top down, each once its children have been
    read (a killed process's children move to the wrapper, read again by the next pass); whether
    there was any (or one that could not be checked). Depth first: only the pidfds of the path
    from the wrapper are open (:func:`_kill_descendant`). ``uid``: only those whose real uid it
    is (the worker's kill of a wrapper's descendants, :func:`wmproxy.execution.backends.local._kill_wrapper_last`,
    whose ``CAP_KILL`` reaches any process); their children are visited all the same.
    ``children``: the wrapper's children as the caller has just read them (:func:`_children`),
    else read here; the caller reads them again after the pass, so a child adopted after its
    read is found then."""
    found = False
    first = list(children) if children is not None else _children(me, me)
    path: list[tuple[int, int | None, list[int]]] = [(me, None, first)]  # (pid, pidfd, children left)
    try:
        while path:
            parent, parent_fd, todo = path[-1]
            if not todo:
                path.pop()
                if parent_fd is not None:
                    os.close(parent_fd)
                continue
            pid = todo.pop()
            try:
                pidfd = _open_pidfd(pid)
            except ProcessLookupError:  # reaped meanwhile
                continue
            answer = _kill_descendant(me, pid, pidfd, parent, parent_fd, uid)
            if isinstance(answer, int):
                found = found or answer == _UNCHECKED
                if pidfd is not None:
                    os.close(pidfd)
                continue
            killed, children = answer
            found = found or killed
            path.append((pid, pidfd, children))
    finally:
        for _pid, fd, _todo in path:
            if fd is not None:
                os.close(fd)
    return found


def _kill_descendant(me: int, pid: int, pidfd: int | None, parent: int,
                     parent_fd: int | None, uid: int | None = None) -> tuple[bool, list[int]] | int:
    """Check that ``pid`` (opened as ``pidfd``), listed among the children of ``parent`` (a
    descendant of the wrapper ``me``, or ``me``), is still a descendant, read its children and
    SIGKILL it unless it is a zombie: ``(whether it was killed, its children)``, or
    :data:`_GONE`, or :data:`_UNCHECKED`.

    Nothing but a descendant is signalled, even when the job reaps its own children and forks
    through the pids meanwhile: the parent read from the ``stat`` of ``pid`` must be ``parent``
    (or ``me``, if it was re-parented meanwhile), and ``parent`` must still be there, reaped or
    not, after the read (so the pid read was still its); the kill goes through the pidfd, so it
    reaches the process checked or nothing. Without pidfds (Python before 3.9) the same checks,
    and the kill by pid. ``uid``: a process whose real uid is another is not killed (read after
    the pidfd was opened: a kill through it that succeeds proves the read was that process's)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        fields = raw[raw.rfind(b")") + 2:].split()
        state, ppid = fields[0], int(fields[1])
    except (OSError, ValueError, IndexError):
        return _GONE
    try:
        if ppid == parent != me:
            _send(parent, parent_fd, 0)
        elif ppid != me:  # re-parented to a subreaper of the job's own, or a reused pid
            return _UNCHECKED
    except OSError:  # the parent was reaped: it may have been another's pid
        return _UNCHECKED
    children = _children(pid, me)
    if state in (b"Z", b"X") and not _threads_left(pid):
        return False, children
    if uid is not None and _real_uid(pid) != uid:
        return False, children
    try:
        _send(pid, pidfd, signal.SIGKILL)
    except ProcessLookupError:
        return _GONE
    except OSError:  # not the job's to kill (a set-user-ID program's): its children may be
        return False, children
    return True, children


def _kill_session_once(sid: int) -> bool:
    """SIGKILL the live processes of session ``sid`` but ``sid`` itself, found by ``getsid`` over
    ``/proc`` (a wrapper that does not adopt its job's orphans); whether there was any."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return False
    found = False
    for name in names:
        if not name.isdigit() or int(name) == sid:
            continue
        pid = int(name)
        try:
            if os.getsid(pid) != sid:
                continue
            with open(f"/proc/{pid}/stat", "rb") as f:
                raw = f.read()
            if raw[raw.rfind(b")") + 2:][:1] in (b"Z", b"X", b"") and not _threads_left(pid):
                continue
            os.kill(pid, signal.SIGKILL)
        except OSError:  # gone meanwhile, or not the job's to kill
            continue
        found = True
    return found


def _threads_left(pid: int) -> bool:
    """Whether a process whose state reads ``Z`` still runs threads: its main thread ended
    alone (``SYS_exit``) while others go on (``Threads:`` above 1 in its status)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            return any(line.startswith(b"Threads:") and int(line.split()[1]) > 1 for line in f)
    except (OSError, ValueError, IndexError):
        return False


def _real_uid(pid: int) -> int | None:
    """The real uid of ``pid`` (``Uid:`` in its status), None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            return next((int(line.split()[1]) for line in f if line.startswith(b"Uid:")), None)
    except (OSError, ValueError, IndexError):
        return None


def _exec_failure(exc: OSError, name: str, what: str) -> WrapperError:
    if isinstance(exc, FileNotFoundError):
        return WrapperError(f"Job Wrapper error: the {what} {name} was not found", EXIT_NOT_FOUND)
    if isinstance(exc, PermissionError):
        return WrapperError(f"Job Wrapper error: the {what} {name} is not executable", EXIT_NOT_EXECUTABLE)
    reason = exc.strerror or str(exc)
    return WrapperError(f"Job Wrapper error: cannot execute the {what} {name}: {reason}", EXIT_NOT_EXECUTABLE)


# --- the wrapper -----------------------------------------------------------------


class _Run:
    """One execution of the wrapper in ``work_dir``."""

    def __init__(self, work_dir: str, inherited_checked: bool = False, spec: bytes | None = None) -> None:
        self.work_dir = os.path.abspath(work_dir)
        self.inherited_checked = inherited_checked
        self.spec = spec  # the spec's bytes handed over by the zygote, else read from job.marshal
        self.started_fd: int | None = None  # started.json, open until the status is written into it
        self.status: dict[str, Any] = {
            "version": SPEC_VERSION,
            "job_id": None,
            "wrapper_pid": os.getpid(),
            "hostname": os.uname().nodename,  # gethostname() without importing socket
            "started_at": utc_now(),
            "ended_at": None,
            "payload_started": False,
            "payload_started_at": None,
            "exit_code": None,
            "signal": None,
            "cancelled_by": None,
            "prologue": None,
            "epilogue": None,
            "failure": None,
            "notes": [],
        }
        self.begun = time.monotonic()  # where the job's wall time starts
        self.spec_file: str | None = None  # the name of the spec file read, if one was
        self.agent: int | None = None  # the pid of the inspection agent

    def execute(self) -> int:
        supervisor = _Supervisor()  # first, so that a SIGTERM from now on is handled
        if not self.inherited_checked:
            _no_inherited_descriptors()
        _adopt_orphans()  # before the job's first process
        try:
            work_fd = os.open(self.work_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            state_fd = os.open(STATE_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=work_fd)
        except OSError as exc:
            _log(f"cannot open the job's state directory: {exc}")
            return EXIT_NO_STATUS
        for stale in (STATUS_NAME, STARTED_NAME):
            try:
                os.unlink(stale, dir_fd=state_fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                _log(f"cannot remove a stale {stale}: {exc}")
                return EXIT_NO_STATUS
        try:
            code = self._phases(supervisor, work_fd, state_fd)
        except WrapperError as exc:
            self.status["failure"] = str(exc)
            code = exc.exit_code
        _stop_inspection_agent(self.agent)
        if not _kill_session_rest():
            self.status["notes"].append("processes of the job's session outlived SIGKILL")
        self.status["cancelled_by"] = supervisor.cancelled_by
        self.status["ended_at"] = utc_now()
        for line in self.status["notes"]:
            _log(line)
        if self.status["failure"]:
            _log(self.status["failure"])
        try:
            if self.started_fd is None:  # the payload never ran: no started.json to finish
                _write_atomic(state_fd, STATUS_NAME, self.status)
            else:
                try:
                    _finish_started(state_fd, self.started_fd, self.status)
                except OSError:  # the job removed started.json (or it could not be rewritten)
                    _write_atomic(state_fd, STATUS_NAME, self.status)
        except OSError as exc:
            _log(f"cannot write the status file: {exc}")
            return EXIT_NO_STATUS
        return code

    def _phases(self, supervisor: _Supervisor, work_fd: int, state_fd: int) -> int:
        spec = self._load_spec(state_fd)
        supervisor.grace = float(spec.kill_grace)
        exceeded = ""
        if spec.wall_time is not None and not under_batch_system():
            supervisor.limit(spec.wall_time - (time.monotonic() - self.begun))
            exceeded = f"{WALL_TIME_EXCEEDED} of {spec.wall_time:g} s"
        if spec.max_processes and not under_batch_system():
            _limit_processes(spec.max_processes, self.status["notes"])
        os.umask(spec.umask)
        os.chdir(self.work_dir)
        env = build_environment(spec, self.work_dir, self.status["notes"])
        agent_env, delay = _inspection_environment(env)
        if spec.base_environment.get(INSPECTION_VARIABLES[1]) and not self._guard_secret(state_fd):
            agent_env = None
        if agent_env is not None:
            if delay > 0:  # most jobs end sooner, and nobody could inspect them then anyway
                supervisor.defer(delay, lambda: self._start_agent(agent_env))
            else:
                self._start_agent(agent_env)
        self._make_tmpdir(work_fd)
        if spec.shell_environment:  # after the secret is guarded: the shell runs the job's own code
            env = self._evaluate_environment(supervisor, spec, env, work_fd)
            if supervisor.cancelled_by is not None:
                raise WrapperError("Job Wrapper error: cancelled while the JDL Environment was evaluated")
            if supervisor.timed_out:
                raise WrapperError(f"Job Wrapper error: {exceeded} while the JDL Environment was evaluated")
        if spec.prologue is not None:
            outcome = self._side_program(supervisor, spec.prologue, spec.prologue_arguments, env, work_fd, "prologue")
            if supervisor.cancelled_by is not None:
                raise WrapperError("Job Wrapper error: cancelled during the prologue")
            if supervisor.timed_out:
                raise WrapperError(f"Job Wrapper error: {exceeded} during the prologue")
            if outcome["failure"] is not None or outcome["exit_code"] != 0:
                raise WrapperError(f"Job Wrapper error: the prologue failed ({_describe(outcome)})")
        payload = self._payload(supervisor, spec, env, work_fd, state_fd)
        if supervisor.timed_out and supervisor.cancelled_by is None:
            self.status["failure"] = f"{exceeded}: the job wrapper stopped the payload ({_describe(payload)})"
            return _shell_code(payload)
        if spec.epilogue is not None and supervisor.cancelled_by is None:
            epilogue = self._side_program(supervisor, spec.epilogue, spec.epilogue_arguments, env, work_fd, "epilogue")
            if supervisor.timed_out:
                self.status["failure"] = f"{exceeded}: the job wrapper stopped the epilogue"
            if _shell_code(payload) == 0 and (epilogue["failure"] is not None or epilogue["exit_code"] != 0):
                return EXIT_WRAPPER_ERROR
        return _shell_code(payload)

    def _load_spec(self, state_fd: int) -> JobSpec:
        legacy = False
        if self.spec is not None:
            raw = self.spec
        else:
            raw, legacy = self._read_spec(state_fd)
            self.spec_file = LEGACY_SPEC_NAME if legacy else SPEC_NAME
        if len(raw) > _MAX_SPEC_BYTES:
            raise WrapperError("Job Wrapper error: the job description is too large")
        spec = JobSpec.from_json(raw.decode("utf-8", "replace")) if legacy else JobSpec.from_bytes(raw)
        self.status["job_id"] = spec.job_id
        return spec

    @staticmethod
    def _read_spec(state_fd: int) -> tuple[bytes, bool]:
        """The bytes of ``job.marshal`` (or of the legacy ``job.json``: then True)."""
        legacy = False
        try:
            try:
                fd = os.open(SPEC_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=state_fd)
            except FileNotFoundError:  # a work dir an older worker prepared
                fd = os.open(LEGACY_SPEC_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=state_fd)
                legacy = True
            with os.fdopen(fd, "rb") as f:
                raw = f.read(_MAX_SPEC_BYTES + 1)
        except OSError as exc:
            raise WrapperError(f"Job Wrapper error: cannot read the job description: {exc.strerror}") from None
        return raw, legacy

    def _guard_secret(self, state_fd: int) -> bool:
        """Before any child of the job starts, put the job's inspection secret out of its reach:
        make the wrapper non-dumpable (its ``/proc/<pid>/environ`` and ``mem`` then belong to
        root, ``ptrace`` is refused; the agent, forked without ``exec``, inherits that) and
        remove the spec file it was read from (the job's account can read it). False, logged,
        when either fails: the agent is then not started."""
        if not _make_non_dumpable():
            _log("inspection agent not started: the wrapper cannot make itself non-dumpable")
            return False
        if self.spec_file is not None:
            try:
                os.unlink(self.spec_file, dir_fd=state_fd)
            except OSError as exc:
                _log(f"inspection agent not started: cannot remove {self.spec_file}: {exc.strerror}")
                return False
        return True

    def _start_agent(self, agent_env: dict[str, str]) -> None:
        self.agent = _start_inspection_agent(agent_env, self.work_dir)

    @staticmethod
    def _make_tmpdir(work_fd: int) -> None:
        try:
            os.mkdir(TMP_DIR, 0o700, dir_fd=work_fd)
        except FileExistsError:
            st = os.stat(TMP_DIR, dir_fd=work_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                raise WrapperError("Job Wrapper error: the job's tmp entry is not a directory of the job") from None
        except OSError as exc:
            raise WrapperError(f"Job Wrapper error: cannot create the job's TMPDIR: {exc.strerror}") from None

    def _evaluate_environment(
        self, supervisor: _Supervisor, spec: JobSpec, env: dict[str, str], work_fd: int
    ) -> dict[str, str]:
        """The job's environment once :data:`SHELL` evaluated ``spec.shell_environment`` against
        ``env`` (:data:`_EVALUATE_ENVIRONMENT`: one ``sh`` replaced by ``env -0``), in the work
        dir, as a child of the job (cancel and wall time apply). The JDL cannot override
        ``GLITE_WMS_JOBID`` and ``X509_USER_PROXY`` nor set the inspection agent's variables.

        Raises:
            WrapperError: no ``env`` program, the shell cannot start, or an entry the shell
                refuses (a syntax error, ``${X?}``...): named, with the shell's message; the
                payload does not run (unless cancelled or timed out: the caller says so).
        """
        program = next((p for p in ENV_PROGRAMS if os.access(p, os.X_OK)), None)
        if program is None:
            raise WrapperError(f"Job Wrapper error: no {ENV_PROGRAMS[0]} to read the JDL Environment evaluated")
        entries = spec.shell_environment
        out = _scratch_file(work_fd)
        try:
            err = _scratch_file(work_fd)
            try:
                try:
                    script = _EVALUATE_ENVIRONMENT.replace("exec ENV ", f"exec {_sh_quoted(program)} ")
                    process = supervisor.run([SHELL, "-c", script, "sh", *entries], env, self.work_dir, DEVNULL,
                                             out, err)
                except OSError as exc:
                    raise WrapperError(f"Job Wrapper error: cannot run {SHELL} to evaluate the JDL Environment:"
                                       f" {exc.strerror or exc}") from None
                outcome = supervisor.wait(process)
                output, errors = _read_back(out), _read_back(err)
            finally:
                os.close(err)
        finally:
            os.close(out)
        if supervisor.cancelled_by is not None or supervisor.timed_out:
            return env
        evaluated = None
        if outcome["exit_code"] == 0 and len(output) <= _MAX_EVALUATED_BYTES:
            evaluated = evaluated_environment(output, env, entries)
        if evaluated is None:
            failed = output.decode("utf-8", "replace") if outcome["exit_code"] == 1 else ""
            if failed in entries:
                raise WrapperError(f"Job Wrapper error: the JDL Environment entry {failed!r} could not be"
                                   f" evaluated by {SHELL}: {_shell_message(errors)}")
            raise WrapperError(f"Job Wrapper error: the evaluation of the JDL Environment by {SHELL} did not"
                               f" finish ({_describe(outcome)}): {_shell_message(errors)}")
        if errors.strip():
            _log(f"the JDL Environment's evaluation wrote: {errors[:2000].decode('utf-8', 'replace').strip()}")
        for key in INSPECTION_VARIABLES:
            evaluated.pop(key, None)
        return finish_environment(evaluated, spec, self.work_dir, self.status["notes"])

    def _side_program(
        self, supervisor: _Supervisor, name: str, arguments: list[str], env: dict[str, str], work_fd: int, what: str
    ) -> dict[str, Any]:
        try:
            program = _resolve_program(name, self.work_dir, work_fd, env.get("PATH", BASE_PATH), what)
            out, err = _inherited(1), _inherited(2)
            process = supervisor.run([program, *arguments], env, self.work_dir, DEVNULL, out, err)
        except WrapperError as exc:
            outcome: dict[str, Any] = {"exit_code": None, "signal": None, "failure": str(exc)}
        except OSError as exc:
            outcome = {"exit_code": None, "signal": None, "failure": str(_exec_failure(exc, name, what))}
        else:
            outcome = supervisor.wait(process)
        self.status[what] = outcome
        return outcome

    def _payload(
        self, supervisor: _Supervisor, spec: JobSpec, env: dict[str, str], work_fd: int, state_fd: int
    ) -> dict[str, Any]:
        program = _resolve_program(spec.executable, self.work_dir, work_fd, env.get("PATH", BASE_PATH), "executable")
        fds: list[int] = []
        try:
            stdin = self._std(work_fd, spec.stdin, False, "StdInput", fds)
            stdout = self._std(work_fd, spec.stdout, True, "StdOutput", fds)
            if spec.stderr is not None and spec.stderr == spec.stdout:
                stderr = stdout
            else:
                stderr = self._std(work_fd, spec.stderr, True, "StdError", fds)
            if supervisor.cancelled_by is not None:
                raise WrapperError("Job Wrapper error: cancelled before the payload started")
            try:
                process = supervisor.run(payload_argv(program, spec), env, self.work_dir, stdin, stdout, stderr)
            except OSError as exc:
                if spec.shell_arguments is not None:
                    raise WrapperError(f"Job Wrapper error: cannot run {SHELL} for the JDL Arguments:"
                                       f" {exc.strerror or exc}", EXIT_NOT_EXECUTABLE) from None
                raise _exec_failure(exc, spec.executable, "executable") from None
        finally:
            for fd in fds:
                os.close(fd)
        self.status["payload_started"] = True
        self.status["payload_started_at"] = utc_now()
        started = {
            "version": SPEC_VERSION,
            "job_id": spec.job_id,
            "wrapper_pid": os.getpid(),
            "payload_pid": process.pid,
            "payload_started_at": self.status["payload_started_at"],
        }
        try:
            self.started_fd = _write_new(state_fd, STARTED_NAME, started)
        except OSError as exc:
            self.status["notes"].append(f"cannot write {STARTED_NAME}: {exc.strerror}")
        outcome = supervisor.wait(process)
        self.status["exit_code"] = outcome["exit_code"]
        self.status["signal"] = outcome["signal"]
        return outcome

    @staticmethod
    def _std(work_fd: int, name: str | None, write: bool, what: str, fds: list[int]) -> int:
        if name is None:
            return DEVNULL
        fd = open_confined(work_fd, name, write, what)
        fds.append(fd)
        return fd


# --- the inspection agent (docs/inspection.md) -------------------------------------

INSPECTION_VARIABLES = ("WMPROXY_INSPECTION_URL", "WMPROXY_INSPECTION_TOKEN", "WMPROXY_INSPECTION_CA_DIR",
                        "WMPROXY_INSPECTION_DELAY")
INSPECTION_AGENT = "inspection_agent.py"


def _inspection_environment(env: dict[str, str]) -> tuple[dict[str, str] | None, float]:
    """Take the agent's variables out of ``env`` (the job's own processes never see the job's
    secret); return the agent's environment, None when the spec's environment holds no agent
    URL or the job has no proxy, and the seconds the job must still run before the agent
    starts (``WMPROXY_INSPECTION_DELAY``; 0, at once, when missing, as older workers meant, or
    not a positive number; ``inf``: never)."""
    agent_env = dict(env)
    for key in INSPECTION_VARIABLES:
        env.pop(key, None)
    text = agent_env.pop(INSPECTION_VARIABLES[3], "")
    if not agent_env.get(INSPECTION_VARIABLES[0]) or not agent_env.get("X509_USER_PROXY"):
        return None, 0.0
    try:
        delay = float(text)
    except ValueError:
        delay = 0.0
    return agent_env, delay if delay > 0 else 0.0  # NaN too


#: ``prctl`` options: read and set the process's "dumpable" attribute.
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
#: ``prctl`` option: the process adopts its descendants' orphans (Linux 3.4).
PR_SET_CHILD_SUBREAPER = 36


#: The C library's ``prctl`` as ``_ctypes`` calls it: ``(call_function, address)``, looked up
#: once (by the zygote before it forks: :func:`prepare_fork`).
_PRCTL: list[tuple[Any, int]] = []


def _prctl(option: int, value: int) -> bool | None:
    """``prctl(option, value, 0, 0, 0) == 0``, called through ``_ctypes``, the C module under
    ``ctypes`` (``dlopen``, ``dlsym``, ``call_function``), as the zygote calls it
    (:func:`wmproxy.execution.zygote._seal`); None when ``_ctypes`` cannot call it. The zygote
    has loaded ``_ctypes`` and looked ``prctl`` up, so a wrapper it forks calls it for a few
    microseconds, where importing the ``ctypes`` package cost every wrapper of a job with a
    proxy about 1.5 ms of CPU and 200 page faults (docs/performance.md, stop 51)."""
    try:
        if not _PRCTL:
            import _ctypes

            libc = _ctypes.dlopen(None, os.RTLD_NOW)  # type: ignore[arg-type]  # None: the program and its libraries
            _PRCTL.append((_ctypes.call_function, _ctypes.dlsym(libc, "prctl")))
        call, address = _PRCTL[0]
        return int(call(address, (option, value, 0, 0, 0))) == 0
    except (ImportError, OSError, AttributeError, TypeError, ValueError):
        return None


def _make_non_dumpable() -> bool:
    """``prctl(PR_SET_DUMPABLE, 0)`` (only for jobs with an inspection agent); whether it
    succeeded. A non-dumpable process's ``/proc/<pid>`` files (``environ``, ``mem``, ``fd``)
    belong to root and ``ptrace`` of it is refused, even to its own uid; its forked children
    inherit that until they ``exec``. Through :func:`_prctl`; the ``ctypes`` package only if
    that cannot call it."""
    done = _prctl(PR_SET_DUMPABLE, 0)
    if done is not None:
        return done
    try:
        import ctypes

        return int(ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (ImportError, OSError, AttributeError):
        return False


def _start_inspection_agent(agent_env: dict[str, str], work_dir: str) -> int | None:
    """Fork the inspection agent (``inspection_agent.py`` beside this file, loaded in the child)
    with ``agent_env`` (:func:`_inspection_environment`) in ``work_dir``; its pid, None if it
    cannot be started (logged). Forked without ``exec``, from a wrapper made non-dumpable
    (:meth:`_Run._guard_secret`), the agent is non-dumpable from its first instruction: the job
    never sees its secret, which is in the agent's memory only (never in an environment, an
    argv or a file). Its command line reads ``<python> -I inspection_agent.py <work dir>``."""
    out = _inherited(2)
    try:
        ready, told = os.pipe()
    except OSError as exc:
        _log(f"cannot start the inspection agent: {exc}")
        return None
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(ready)
        os.close(told)
        _log(f"cannot start the inspection agent: {exc}")
        return None
    if pid:  # returns once the agent shows its command line, as an exec'd one would have
        _OWN.add(pid)
        os.close(told)
        try:
            os.read(ready, 1)
        finally:
            os.close(ready)
        return pid
    code = 2
    try:
        os.close(ready)
        try:
            set_title(b"\0".join(word.encode() for word in (sys.executable, "-I", INSPECTION_AGENT, work_dir)),
                      title_area())
        except ImportError:  # the title stays the wrapper's
            pass
        os.close(told)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
            signal.signal(signum, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, 0)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.closerange(3, 1 << 16)
        code = _run_agent(agent_env, work_dir)
    except BaseException:  # noqa: BLE001 - the child must never return into the wrapper
        code = 2
    finally:
        exit_child(code)
    return None  # not reached: exit_child ends the child (annotated None: the wrapper loads no typing)


def _run_agent(agent_env: dict[str, str], work_dir: str) -> int:
    """In the forked agent: load and run the agent."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), INSPECTION_AGENT)
    found = importlib.util.spec_from_file_location("inspection_agent", path)
    if found is None or found.loader is None:
        return 2
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return int(module.serve(work_dir, agent_env))


def title_area() -> tuple[int, int] | None:
    """``(start, end)`` of this process's command line in its memory (fields 48 and 49 of
    ``/proc/self/stat``), None if unreadable; a forked child has the same."""
    try:
        with open("/proc/self/stat", "rb") as f:
            raw = f.read()
        fields = raw[raw.rfind(b")") + 2:].split()
        return int(fields[45]), int(fields[46])
    except (OSError, ValueError, IndexError):
        return None


def set_title(title: bytes, area: tuple[int, int] | None) -> None:
    """Overwrite this process's command line in place (``/proc/<pid>/cmdline``; ``title``'s
    words separated by NUL bytes), as ``setproctitle`` does, when it fits in ``area``
    (:func:`title_area`), the room the kernel reserved for it; left as it is otherwise. Written
    through ``/proc/self/mem`` when the process is dumpable, else (a non-dumpable process, whose
    ``/proc/self/mem`` is root's: the inspection agent, forked by a non-dumpable wrapper) with
    ``ctypes``. The zygote's children write theirs with its own ``memmove``
    (:mod:`wmproxy.execution.zygote`, they are non-dumpable too).

    Raises:
        ImportError: ``ctypes`` was needed and cannot be loaded.
    """
    if area is None or len(title) + 1 > area[1] - area[0]:
        return
    start, end = area
    padded = title + b"\0" * (end - start - len(title))
    try:
        fd = os.open("/proc/self/mem", os.O_WRONLY | os.O_CLOEXEC)
        try:
            if os.pwrite(fd, padded, start) == len(padded):
                return
        finally:
            os.close(fd)
    except OSError:
        pass
    import ctypes

    ctypes.memmove(start, padded, len(padded))


def exit_child(code: object) -> None:  # never returns (no typing.NoReturn: the wrapper loads no typing)
    """End a forked child (a wrapper the zygote forked, the inspection agent) without ever
    returning into its parent's code: flush standard output and error, then ``os._exit`` with
    ``code``, or 2 when it is not an exit code."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code if isinstance(code, int) else 2)


def _stop_inspection_agent(agent: int | None) -> None:
    """SIGTERM the agent, SIGKILL it if it has not ended within 5 seconds; reap it."""
    if agent is None:
        return
    if _REAPED.pop(agent, None) is not None:  # it ended while the wrapper waited for another child
        return
    try:
        os.kill(agent, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + 5.0
    while True:
        try:
            pid, _status = os.waitpid(agent, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            return
        if time.monotonic() >= deadline:
            try:
                os.kill(agent, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.waitpid(agent, 0)
            except ChildProcessError:
                pass
            return
        time.sleep(0.02)


def _inherited(fd: int) -> int:
    """``fd`` if the wrapper has it open, else ``/dev/null`` (the deferred log created first)."""
    _open_log()
    try:
        os.fstat(fd)
    except OSError:
        return DEVNULL
    return fd


def _describe(outcome: dict[str, Any]) -> str:
    if outcome["failure"] is not None:
        return str(outcome["failure"])
    if outcome["signal"] is not None:
        return f"killed by signal {outcome['signal']}"
    return f"exit code {outcome['exit_code']}"


#: The directory descriptor of a log not created yet (:func:`run`'s ``log_dir``), at most one.
_DEFERRED_LOG: list[int] = []


def _open_log() -> None:
    """Create the deferred ``wrapper.log`` (:func:`run`'s ``log_dir``; an entry of that name is
    replaced, never followed) and make it the standard output and error, once; they stay
    ``/dev/null`` if the file cannot be created."""
    if not _DEFERRED_LOG:
        return
    dir_fd = _DEFERRED_LOG.pop()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(LOG_NAME, flags, 0o600, dir_fd=dir_fd)
        except FileExistsError:  # the job made one meanwhile (it runs as the account): replaced
            os.unlink(LOG_NAME, dir_fd=dir_fd)
            fd = os.open(LOG_NAME, flags, 0o600, dir_fd=dir_fd)
    except OSError:
        return
    try:
        os.fchmod(fd, 0o600)  # whatever the job's umask
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    except OSError:
        pass  # the streams stay /dev/null
    finally:
        os.close(fd)


def _log(message: str) -> None:
    _open_log()
    stream: IO[str] = sys.stderr
    try:
        stream.write(f"{utc_now()} jobwrapper[{os.getpid()}]: {message}\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def run(work_dir: str, log_dir: int | None = None, spec: bytes | None = None) -> int:
    """Run the job described in ``<work_dir>/.wmproxy/job.marshal``; return the wrapper's
    exit status (see the module docstring). Writes the status file unless that is
    impossible (then :data:`EXIT_NO_STATUS`).

    ``log_dir``: given by the zygote (:mod:`wmproxy.execution.zygote`), whose child has
    ``/dev/null`` as its standard streams and no other inheritable descriptor: the descriptor
    of the ``.wmproxy`` directory, where the wrapper creates :data:`LOG_NAME` fresh (0600, no
    link followed) and makes it its standard output and error before it first writes a line
    or starts a prologue, epilogue or inspection agent (:func:`_open_log`); a wrapper with
    nothing to say leaves no log. None: the standard streams are used as they are.

    ``spec``: the bytes of the job's spec (:meth:`JobSpec.to_bytes`) as the worker handed them
    to the zygote, which then has no ``job.marshal`` to read (one file fewer per job); None:
    read from the work dir."""
    if log_dir is not None:
        _DEFERRED_LOG.append(log_dir)
    return _Run(work_dir, inherited_checked=log_dir is not None, spec=spec).execute()


def prepare_fork() -> None:
    """Set up, in a process that forks wrappers (the zygote, before each batch), what every
    wrapper would otherwise set up itself: the user name of its uid (:func:`build_environment`'s
    ``USER``, looked up again before every batch, so a renamed account is seen at the next one),
    the C library's time zone data (:func:`utc_now`) and its ``prctl`` (:func:`_prctl`). Never
    raises."""
    uid = os.getuid()
    try:
        name: str | None = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = None
    _USER_NAME[:] = [(uid, name)]
    utc_now()
    if not _PRCTL:
        _prctl(PR_GET_DUMPABLE, 0)  # looks prctl up, changes nothing


def main(argv: list[str] | None = None) -> int:
    """Command line entry: ``jobwrapper.py <work_dir>``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        _log("usage: jobwrapper.py <work_dir>")
        return EXIT_NO_STATUS
    return run(args[0])


if __name__ == "__main__":
    sys.exit(main())
