"""A fork server for job wrappers ("zygote"): one small long-lived process per account that
forks a ready job wrapper per job instead of the worker starting a Python interpreter for each.

The worker (:class:`Zygote`, used by the local backend) starts ``python3 -I -S zygote.py``
once per account, as that account and without any capability (``setpriv --reuid --regid
--clear-groups`` dropping the inheritable and ambient sets, ``no_new_privs``: the same switch
as :func:`wmproxy.execution.identity.spawn_wrapper`), with a socket as descriptor 3. The
zygote imports the job wrapper (:mod:`wmproxy.execution.jobwrapper`, standard library only)
and nothing else of wmproxy: its memory, which every wrapper it forks inherits, holds no
secret of the worker (the store key, the database, other accounts' proxies).

Protocol (one line each way per job, UTF-8)::

    worker -> zygote   <absolute work dir>\\n     the wrapper reads .wmproxy/job.marshal
                       <absolute work dir>\\0<spec>\\n
                                                  <spec>: the job's spec (JobSpec.to_bytes) in
                                                  hexadecimal, handed to the wrapper in memory:
                                                  the worker writes no job.marshal
                       +<absolute work dir>...\\n as above, but the wrapper is held: it waits
                                                  for the worker's word before it runs anything
                                                  of the job (the worker puts it in the job's
                                                  cgroup meanwhile, wmproxy.execution.cgroups)
    zygote -> worker   <pid> <start time>\\n      the wrapper runs, or is held (start time: field
                                                  22 of /proc/<pid>/stat, clock ticks since boot)
                       E <message>\\n             this job's wrapper could not be set up
    worker -> zygote   G<pid>\\n                  a held wrapper may run its job (no answer)
                       D<pid>\\n                  a held wrapper exits at once, running nothing
                                                  (no answer)

A held wrapper waits on a pipe whose other end only the zygote holds: no other process of the
account can let it go, and it exits without running anything when the zygote ends first.

For each request the zygote forks a child that leads a new session, closes every descriptor
but its standard ones, which it points to ``/dev/null``, sets umask 0o077, enters the work
dir (never following a link), removes a ``.wmproxy/wrapper.log`` left by an earlier run,
shows ``<python> -I -S <wrapper path> <work dir>`` as its command line (so that it is
recognised like a wrapper the worker started itself; written with ``memmove`` through
``_ctypes``, see below) and runs :func:`jobwrapper.run` with the ``.wmproxy``
directory as its ``log_dir``: the wrapper creates a fresh ``wrapper.log`` as its standard
output and error when it first has something to write there (a trivial job's wrapper
creates none: on a file system without a journal each new inode cost about 1 ms of CPU
here). The zygote answers once the child has done all that but running the job. The
requests that arrive together (one :meth:`Zygote.request`) are forked all at once before
the first answer is awaited, so the children set themselves up side by side rather than one
after the other; the answers are still sent in the order of the requests. Before a batch
the zygote calls :func:`jobwrapper.prepare_fork`, so that its children find the C
library's password database and time zone set up. The zygote reaps its children
and exits at end of file on its socket (the worker stopped or died): the wrappers, each
leading its own session, keep running and are adopted as before.

The zygote is not dumpable (:func:`_seal`, before it reads anything of the worker): it holds,
in memory it has freed, the specs (inspection secrets included) it handed to its wrappers, and
a process of the account allowed to ``ptrace`` it or to open its ``/proc/<pid>/mem`` could read
them, make it fork or stop it. For an account, :func:`wmproxy.execution.identity.zygote_command`
starts it with a spare real gid, so the kernel makes it non-dumpable at its ``exec`` already (a
real gid that is not the effective one; ``fs.suid_dumpable`` 0 or 2, the defaults: no window in
which another process of the account could attach before it seals itself; with
``fs.suid_dumpable = 1`` it stays dumpable, but its real gid is not the account's, which refuses
the account's processes all the same); the zygote then calls ``prctl(PR_SET_DUMPABLE, 0)`` and
only then sets its real gid back to the account's (never dumpable with the account's
credentials), tries ``memmove`` once, and exits (status 3) if any of it fails, or if a tracer
attached meanwhile: the worker then starts its account's wrappers itself. It reaches
``prctl`` and ``memmove`` through ``_ctypes``, the C module under ``ctypes``, without the
``ctypes`` package (about 50 KiB of private memory rather than 150). Its children, forked,
are non-dumpable too (their ``/proc/<pid>`` files are root's, ``/proc/self/mem`` included), so
each writes its command line with ``memmove``.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from types import ModuleType  # loaded by the interpreter's start already

# The zygote process imports this module and the job wrapper only, and every module it holds is
# memory each forked wrapper maps, copies on write as it touches it and unmaps at its exit:
# socket (with selectors, enum, functools, collections), typing (with re) and contextlib were
# half of the zygote's private memory. The worker's side imports socket and subprocess lazily.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    import socket
    import subprocess
    from collections.abc import Callable
else:
    try:  # the C module under signal: signal.py imports enum (with functools, collections)
        import _signal as signal
    except ImportError:  # not CPython
        import signal

STATE_DIR = ".wmproxy"
LOG_NAME = "wrapper.log"
#: Bytes reserved in the zygote's command line for its children's (work dir paths included).
TITLE_ROOM = 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: ``prctl`` option: set the process's "dumpable" attribute (``<linux/prctl.h>``).
PR_SET_DUMPABLE = 4
#: Exit status of a zygote that cannot make itself non-dumpable (:func:`_seal`).
EXIT_UNSEALED = 3
#: Exit status of a zygote that finds itself running as root or holding a capability
#: (:func:`_privileged`): it serves nothing, whatever started it.
EXIT_PRIVILEGED = 4
#: What the worker logs beside a zygote's exit status (:meth:`Zygote.request`).
EXIT_MEANINGS = {
    EXIT_UNSEALED: " (it could not make itself non-dumpable: see its message on the worker's standard error)",
    EXIT_PRIVILEGED: " (it runs as root or holds a capability, and no job may: it serves nothing)",
    126: " (its interpreter cannot be run)",
    127: " (its interpreter did not start: missing, or it needs a library found only through"
         " LD_LIBRARY_PATH, which the zygote's secure mode ignores; docs/execution.md)",
}
#: Seconds the worker gives a zygote for one :meth:`Zygote.request`, the requests sent and every
#: answer read (one deadline for the whole exchange, not per receive), before it takes the zygote
#: for broken (and kills it: :meth:`Zygote.close`). The worker's single loop waits that long, during
#: which no job of any user starts, ends or is cancelled, and the zygote runs as the account, so a
#: job of it can stop it (SIGSTOP): the wait must stay short. A zygote answers a batch (at most a
#: cycle's jobs, 8) in milliseconds; 5 s leaves a margin of three orders of magnitude for a loaded
#: host, after which the account's wrappers are started by the worker itself for a while.
REPLY_TIMEOUT = 5.0
#: Bytes one answer of a zygote may hold (its newline included); a longer one breaks the zygote.
MAX_REPLY = 8192


class ZygoteError(Exception):
    """The zygote is unusable (it could not start, died, or gave no or a malformed answer):
    the caller starts its wrappers another way for a while."""


class ZygoteRefusedError(Exception):
    """The zygote is fine but could not set up this job's wrapper (the message says why)."""


class Zygote:
    """The worker's end of one zygote process.

    Args:
        command: the command that starts ``zygote.py`` as the account
            (:func:`wmproxy.execution.identity.zygote_command`).
        wrapper: the job wrapper script the children run (also their command line).
        python: the interpreter shown in the children's command line.

    Raises:
        ZygoteError: the process cannot be started.
    """

    def __init__(self, command: list[str], wrapper: str, python: str) -> None:
        import socket
        import subprocess

        ours, theirs = socket.socketpair()
        try:
            self.process: subprocess.Popen[bytes] = subprocess.Popen(  # noqa: S603 - fixed argv
                [*command, str(theirs.fileno()), python, wrapper, "x" * TITLE_ROOM],
                env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
                stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), close_fds=True, cwd="/", umask=0o077,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            ours.close()
            raise ZygoteError(f"cannot start the wrapper fork server: {exc}") from None
        finally:
            theirs.close()
        self._sock: socket.socket = ours

    def request(self, work_dirs: list[str], specs: list[bytes | None] | None = None, *, hold: bool = False
                ) -> list[tuple[int, int | None] | ZygoteRefusedError]:
        """Start a wrapper in each of ``work_dirs`` (absolute paths): its ``(pid, start time)``
        or why it was refused, in order. All requests are sent before the first answer is
        read, so the zygote forks while the worker waits once. ``specs``: for each work dir,
        the job's spec (:meth:`JobSpec.to_bytes
        <wmproxy.execution.jobwrapper.JobSpec.to_bytes>`) handed to its wrapper, or None
        (the wrapper reads ``.wmproxy/job.marshal``). ``hold``: each wrapper waits for
        :meth:`release` before it runs anything of its job.

        Raises:
            ZygoteError: the zygote is stopped (``T``/``t`` in ``/proc/<pid>/stat``: nothing is
                sent), died, answered nothing usable, an answer longer than :data:`MAX_REPLY`
                bytes, or did not answer everything within :data:`REPLY_TIMEOUT` seconds of the
                call; whether some wrappers of this call were started is then unknown. The
                caller closes it (:meth:`close` kills it: a stopped zygote is never reused).
        """
        if _stopped(self.process.pid):  # a job of the account stopped it: no wait for an answer
            raise ZygoteError("the wrapper fork server is stopped (SIGSTOP, or traced)")
        given = specs if specs is not None else [None] * len(work_dirs)
        mark = b"+" if hold else b""
        payload = b"".join(mark + d.encode() + (b"" if spec is None else b"\0" + spec.hex().encode()) + b"\n"
                           for d, spec in zip(work_dirs, given, strict=True))
        deadline = time.monotonic() + REPLY_TIMEOUT
        try:
            self._sock.settimeout(REPLY_TIMEOUT)  # bounds the whole send (Python >= 3.5), not each part
            self._sock.sendall(payload)
            answers = self._answers(len(work_dirs), deadline)
        except TimeoutError:
            raise ZygoteError(f"the wrapper fork server did not answer within {REPLY_TIMEOUT:g} s") from None
        except OSError as exc:
            raise ZygoteError(f"the wrapper fork server does not answer: {exc}{self._exit_status()}") from None
        results: list[tuple[int, int | None] | ZygoteRefusedError] = []
        for answer in answers:
            text = answer.decode(errors="replace")
            if text.startswith("E "):
                results.append(ZygoteRefusedError(text[2:]))
                continue
            pid, _, started = text.partition(" ")
            if not pid.isdigit() or not (started.isdigit() or started == "-"):
                raise ZygoteError(f"the wrapper fork server gave a malformed answer {text[:80]!r}")
            results.append((int(pid), int(started) if started.isdigit() else None))
        return results

    def _exit_status(self) -> str:
        """Why the zygote closed its socket, when it has exited (within a second: its socket is
        closed before its exit status is set): ``"; it exited with status 127 (...)"``, else ``""``."""
        import subprocess

        try:
            status = self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return ""
        return f"; it exited with status {status}{EXIT_MEANINGS.get(status, '')}"

    def release(self, go: list[int], drop: list[int]) -> None:
        """Let the held wrappers ``go`` run their jobs, and those of ``drop`` exit running
        nothing (:meth:`request` with ``hold``). The zygote answers nothing.

        Raises:
            ZygoteError: the zygote does not take the message (then its held wrappers exit
                when it ends, running nothing).
        """
        payload = "".join([*(f"G{pid}\n" for pid in go), *(f"D{pid}\n" for pid in drop)]).encode()
        if not payload:
            return
        try:
            self._sock.settimeout(REPLY_TIMEOUT)
            self._sock.sendall(payload)
        except OSError as exc:
            raise ZygoteError(f"the wrapper fork server does not take its message: {exc}") from None

    def _answers(self, count: int, deadline: float) -> list[bytes]:
        """Read ``count`` answer lines (without their newlines) by ``deadline`` (monotonic).

        The zygote runs as the account, so a job of it can stop it (SIGSTOP) or, where it may
        take its socket, trickle bytes: each receive waits only for the time left, so a byte now
        and then never extends the wait, and an answer is read into a buffer of at most
        :data:`MAX_REPLY` bytes, never a line of any length.

        Raises:
            TimeoutError: the deadline passed.
            OSError, ZygoteError: the zygote closed its socket, or answered too much.
        """
        answers: list[bytes] = []
        buffer = b""
        while len(answers) < count:
            end = buffer.find(b"\n", 0, MAX_REPLY)
            if end >= 0:
                answers.append(buffer[:end])
                buffer = buffer[end + 1:]
                continue
            if len(buffer) >= MAX_REPLY:
                raise ZygoteError(f"the wrapper fork server gave an answer longer than {MAX_REPLY} bytes")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._sock.settimeout(left)
            chunk = self._sock.recv(MAX_REPLY)
            if not chunk:
                raise ZygoteError(f"the wrapper fork server closed its socket before it answered{self._exit_status()}")
            buffer += chunk
        if buffer:
            raise ZygoteError("the wrapper fork server answered more than it was asked")
        return answers

    def close(self) -> None:
        """Close the socket, end the process (SIGKILL) and reap it.

        The zygote would exit at end of file on its socket (as it does when the worker dies),
        but it runs as the account: a job of it may have stopped it (SIGSTOP), and a wait for
        it to exit would stall the worker. It holds nothing to save, and its wrappers, each
        leading its own session, keep running."""
        self._sock.close()
        try:  # noqa: SIM105 - no contextlib in the zygote (see the imports)
            self.process.kill()
        except OSError:  # not allowed (no CAP_KILL): it exits at end of file unless stopped
            pass
        self.process.wait()


def _stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped by a signal or a tracer (state ``T`` or ``t`` in
    ``/proc/<pid>/stat``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2:][:1] in (b"T", b"t")


def start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (clock ticks after boot), None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        return int(raw[raw.rfind(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


# --- the zygote process (standard library only) ----------------------------------


class _Titles:
    """The C library's ``memmove`` (through ``_ctypes``, loaded by :func:`_seal`), with which a
    forked child, non-dumpable like the zygote (its ``/proc/self/mem`` is root's), writes its
    command line into the room the kernel gave the zygote's (``area``: :func:`jobwrapper.title_area`)."""

    def __init__(self, call: Callable[[int, tuple[object, ...]], int], memmove: int, pointer: type,
                 area: tuple[int, int] | None) -> None:
        self.call = call
        self.memmove = memmove
        self.pointer = pointer
        self.area = area

    def write(self, title: bytes) -> None:
        """Show ``title`` (words separated by NUL bytes) as this process's command line when it
        fits; left as it is otherwise."""
        if self.area is None or len(title) + 1 > self.area[1] - self.area[0]:
            return
        start, end = self.area
        padded = title + b"\0" * (end - start - len(title))
        self.call(self.memmove, (self.pointer(start), padded, len(padded)))

    def trial(self) -> None:
        """Write the command line area's own bytes back onto it (nothing changes): ``memmove``
        works, or this raises what the children's :meth:`write` would."""
        if self.area is not None:
            start, end = self.area
            with open("/proc/self/cmdline", "rb") as f:
                now = f.read()[:end - start]
            self.call(self.memmove, (self.pointer(start), now, len(now)))


def _seal(area: tuple[int, int] | None) -> _Titles:
    """Make the zygote non-dumpable, before it reads anything of the worker:
    ``prctl(PR_SET_DUMPABLE, 0)`` first, then its real gid set back to its effective one (the
    account's: :func:`wmproxy.execution.identity.zygote_command` starts it with a spare real gid,
    so that the kernel makes it non-dumpable at its ``exec``; changing the real gid alone does not
    make it dumpable again, while the other order would leave it dumpable, with the account's
    credentials, in between where ``fs.suid_dumpable = 1`` left it dumpable at its ``exec``: a
    process of the account could open its ``/proc/<pid>/mem`` then and read it afterwards); check
    that no process traces it (one that attached before, where the ``exec`` left it dumpable,
    would stay attached); and try ``memmove`` once (the zygote's own command line written back
    onto itself), so that a zygote whose children could not write their titles serves nothing.
    ``prctl`` and ``memmove`` are reached through ``_ctypes`` (the C module under ``ctypes``:
    ``dlopen``, ``dlsym`` and ``call_function``), without the ``ctypes`` package, which every
    wrapper would map too.

    Returns:
        the command line writer of the zygote's children (``area``: the zygote's own command
        line's room, :func:`jobwrapper.title_area`).

    Raises:
        OSError: a step failed, or the zygote is traced.
        ImportError, AttributeError: no ``_ctypes`` with those functions (not CPython).
    """
    import _ctypes

    libc = _ctypes.dlopen(None, os.RTLD_NOW)  # type: ignore[arg-type]  # None: the program and its libraries
    if _ctypes.call_function(_ctypes.dlsym(libc, "prctl"), (PR_SET_DUMPABLE, 0, 0, 0, 0)) != 0:
        raise OSError("prctl(PR_SET_DUMPABLE, 0) failed")
    gid = os.getegid()
    if os.getgid() != gid:
        os.setresgid(gid, gid, gid)  # the real gid only: the effective one stays the account's
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"TracerPid:") and line.split()[1:] != [b"0"]:
                raise OSError(f"traced by process {line.split()[1].decode()}")

    class Pointer(_ctypes._SimpleCData):  # type: ignore[type-arg]  # ctypes.c_void_p, without the package
        _type_ = "P"

    titles = _Titles(_ctypes.call_function, _ctypes.dlsym(libc, "memmove"), Pointer, area)
    titles.trial()
    return titles


def _privileged() -> str | None:
    """Why the zygote must serve nothing (None: it may): a uid of it (real, effective or saved)
    is 0, or it holds a capability (permitted, effective or ambient set). Every wrapper it forks
    would run its job so; :func:`wmproxy.execution.identity.zygote_command` never starts one so
    (:func:`wmproxy.execution.identity.check_account`): this is the last line of defence."""
    if 0 in os.getresuid():
        return "as root"
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith((b"CapPrm:", b"CapEff:", b"CapAmb:")) and int(line.split()[1], 16):
                return f"holding capabilities ({line.decode().strip()})"
    return None


def _reap(_signum: int = 0, _frame: object = None) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _drain(fd: int) -> None:
    """Read a non-blocking pipe until it is empty."""
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _child(work_dir: str, title: bytes, titles: _Titles | None, report: int, module: ModuleType,
           spec: bytes | None = None, hold: int = -1) -> None:
    """In the forked child: set the wrapper up, tell the zygote, run the job; never returns.

    Standard input, output and error are ``/dev/null``; the wrapper creates a fresh
    ``.wmproxy/wrapper.log`` and makes it its standard output and error when it first has
    something to write there (:func:`jobwrapper.run`'s ``log_dir``), so a job whose wrapper
    logs nothing creates no file for it. A ``wrapper.log`` left by an earlier run is removed.
    ``hold``: a pipe to read ``g`` from before the job is run (anything else: exit at once).
    """
    code = 2
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)  # the zygote's pipe: closed below, and its number reused
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.umask(0o077)
        low = 3
        for keep in sorted(fd for fd in (report, hold) if fd >= 0):
            os.closerange(low, keep)
            low = keep + 1
        os.closerange(low, 1 << 16)
        null = os.open(os.devnull, os.O_RDWR)  # before the directories: 0, 1 and 2 are taken
        for fd in (0, 1, 2):
            if fd != null:
                os.dup2(null, fd)
        if null > 2:
            os.close(null)
        try:
            work_fd = os.open(work_dir, _DIR_FLAGS)
            os.fchdir(work_fd)
            state_fd = os.open(STATE_DIR, _DIR_FLAGS, dir_fd=work_fd)
            os.close(work_fd)
            try:  # noqa: SIM105 - no contextlib in the zygote (see the imports)
                os.unlink(LOG_NAME, dir_fd=state_fd)
            except FileNotFoundError:
                pass
        except OSError as exc:
            os.write(report, f"E Cannot start the job wrapper in {work_dir}: {exc.strerror}".encode())
            os._exit(code)
        if titles is not None:
            try:  # noqa: SIM105 - no contextlib in the zygote (see the imports)
                titles.write(title)
            except Exception:  # noqa: BLE001, S110 - a job never fails for its title (memmove was tried: _seal)
                pass
        os.write(report, b"ok")
        os.close(report)
        if hold >= 0:
            word = os.read(hold, 1)
            os.close(hold)
            if word != b"g":
                os._exit(code)
        code = module.run(work_dir, log_dir=state_fd, spec=spec)
    except BaseException:  # noqa: BLE001 - the child must never return into the zygote's loop
        code = 2
    finally:
        module.exit_child(code)


def _serve(fd: int, python: str, wrapper: str) -> int:
    sys.path.append(os.path.dirname(wrapper))  # after the standard library: only jobwrapper is wanted
    import resource  # noqa: F401 - every wrapper's, for the job's process limit: loaded once here
    import select  # also every wrapper's, for its wait for its inspection agent delay: loaded once here

    import jobwrapper  # type: ignore[import-not-found,unused-ignore]

    try:
        titles = _seal(jobwrapper.title_area())
    except (OSError, ImportError, AttributeError, ValueError, TypeError) as exc:
        sys.stderr.write(f"wmproxy zygote: cannot make itself non-dumpable, it serves nothing: {exc}\n")
        return EXIT_UNSEALED
    if (privileged := _privileged()) is not None:  # before it reads anything of the worker
        sys.stderr.write(f"wmproxy zygote: refusing to fork job wrappers {privileged}\n")
        return EXIT_PRIVILEGED
    while (spare := os.open(os.devnull, os.O_RDWR)) <= 2:  # 0, 1 and 2 open: never a child's report pipe
        pass
    os.close(spare)
    # A SIGCHLD that arrives after the interpreter last looked for signals and before the wait
    # for the next request blocks would be handled only when that request comes: the wrappers
    # ended meanwhile would stay zombies. The signal's C handler also writes a byte to this pipe,
    # which the wait watches beside the socket, so the zygote wakes and reaps them at once.
    wake, wake_write = os.pipe()
    for end in (wake, wake_write):
        os.set_blocking(end, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, _reap)
    waiting = select.poll()
    waiting.register(fd, select.POLLIN)
    waiting.register(wake, select.POLLIN)
    # Every object the zygote holds now (the wrapper's modules) goes to the collector's permanent
    # generation: a wrapper's collections never write to their headers, so the pages holding them
    # stay shared with the zygote (about 28 of a trivial job's 525 minor faults fewer).
    gc.collect()
    gc.freeze()
    held: dict[int, int] = {}  # pid of a held wrapper -> the pipe it waits on
    pending = b""
    while True:
        ready = {ready_fd for ready_fd, _events in waiting.poll()}
        if wake in ready:
            _drain(wake)
            _reap()
        if fd not in ready:
            continue
        data = os.read(fd, 65536)  # every request the worker sent at once, usually
        if not data:
            return 0
        lines = (pending + data).split(b"\n")
        pending = lines.pop()  # an incomplete last line waits for the next read
        requests = [line for line in lines if not _release(line, held)]
        if requests:
            jobwrapper.prepare_fork()
            replies = _fork_all(requests, python, wrapper, jobwrapper, titles, held)
            os.write(fd, "".join(reply + "\n" for reply in replies).encode())


def _release(line: bytes, held: dict[int, int]) -> bool:
    """Handle ``G<pid>`` (the held wrapper runs its job) or ``D<pid>`` (it exits); False for
    any other line (a request)."""
    if line[:1] not in (b"G", b"D"):
        return False
    pipe = held.pop(int(line[1:]), -1) if line[1:].isdigit() else -1
    if pipe >= 0:
        try:
            if line[:1] == b"G":
                os.write(pipe, b"g")
        except OSError:  # it has died meanwhile
            pass
        os.close(pipe)
    return True


def _fork_all(lines: list[bytes], python: str, wrapper: str, module: ModuleType,
              titles: _Titles | None = None, held: dict[int, int] | None = None) -> list[str]:
    """Fork a child for each requested work dir (all of them first, so that they set
    themselves up side by side), then collect their answers, in order. A request marked
    ``+`` is held: the pipe it waits on is recorded in ``held`` by its pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})  # not reaped before their start times are read
    try:
        started: list[tuple[int, int, int] | str] = []
        for line in lines:
            hold = line[:1] == b"+" and held is not None
            path, _, spec = line[1 if hold else 0:].partition(b"\0")
            title = b"\0".join([python.encode(), b"-I", b"-S", wrapper.encode(), path])
            started.append(_fork(path.decode(errors="replace"), title, titles, module, spec or None, hold=hold))
        replies = []
        for child in started:
            reply = _answer(child)
            if not isinstance(child, str) and child[2] >= 0:
                if held is not None and not reply.startswith("E "):
                    held[child[0]] = child[2]
                else:
                    os.close(child[2])  # it has exited: nothing to hold
            replies.append(reply)
        return replies
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


def _fork(work_dir: str, title: bytes, titles: _Titles | None, module: ModuleType,
          spec: bytes | None = None, *, hold: bool = False) -> tuple[int, int, int] | str:
    """``(pid, read end of its report pipe, write end of its hold pipe or -1)``, or the refusal
    to answer. ``spec``: the job's spec in hexadecimal (the protocol's), None to have the
    wrapper read ``job.marshal``. ``hold``: the child waits for a word on a pipe before it
    runs the job."""
    if not os.path.isabs(work_dir) or "\n" in work_dir:
        return "E the work dir must be an absolute path"
    try:
        raw = None if spec is None else bytes.fromhex(spec.decode("ascii"))
    except ValueError:
        return "E the job's spec is not hexadecimal"
    read_end, write_end = os.pipe()
    wait_end, let_go = os.pipe() if hold else (-1, -1)
    try:
        pid = os.fork()
    except OSError as exc:
        for end in (read_end, write_end, wait_end, let_go):
            if end >= 0:
                os.close(end)
        return f"E Cannot start the job wrapper: {exc.strerror}"
    if pid == 0:
        os.close(read_end)
        if let_go >= 0:
            os.close(let_go)
        _child(work_dir, title, titles, write_end, module, raw, wait_end)
    os.close(write_end)
    if wait_end >= 0:
        os.close(wait_end)
    return pid, read_end, let_go


def _answer(child: tuple[int, int, int] | str) -> str:
    """Wait for a forked child's report: its ``<pid> <start time>`` line, or the refusal."""
    if isinstance(child, str):
        return child
    pid, read_end, _hold = child
    chunks = []
    while chunk := os.read(read_end, 4096):
        chunks.append(chunk)
    os.close(read_end)
    answer = b"".join(chunks).decode(errors="replace")
    if answer != "ok":
        return answer.replace("\n", " ") if answer.startswith("E ") else "E the job wrapper died at its start"
    started = start_time(pid)
    return f"{pid} {started if started is not None else '-'}"


if __name__ == "__main__":
    # argv: zygote.py <socket fd> <python> <wrapper path> <room for the children's command lines>
    sys.exit(_serve(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
