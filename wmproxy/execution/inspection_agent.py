"""The job's inspection agent (JobMon; ``docs/inspection.md``), started by the job wrapper
next to the payload, as the job's account, in the job's work dir.

Run by the wrapper (:func:`serve`, in a child it forks without ``exec``: a non-dumpable
process from its first instruction, so the job's own processes, of the same uid, can read
neither its memory nor its ``/proc/<pid>/environ``) with the job's environment plus
``WMPROXY_INSPECTION_URL`` (the service's agent URL), ``WMPROXY_INSPECTION_TOKEN`` (the
job's secret) and ``WMPROXY_INSPECTION_CA_DIR`` (grid CA directory to verify the service)
as a mapping in memory; ``X509_USER_PROXY`` is the job's proxy, its TLS client credential,
and ``GLITE_WMS_JOBID`` the job. By hand, ``python3 -I inspection_agent.py <work_dir>`` reads
the secret from the first line of its standard input, after making itself non-dumpable
(never from its environment). Standard library only (a system ``python3``, 3.7 or later),
like the wrapper it is copied with to batch nodes.

Loop: an outgoing HTTPS long-poll ``GET <url>/next`` (worker nodes only make outgoing
connections); for each request, run its argv (no shell) in the work dir with an environment of
its own (:func:`command_environment`: a fixed ``PATH``, nothing of the job's but the few
variables that name the job, never a loader's or an interpreter's), the program looked up in
:data:`TRUSTED_PATH` (never the job's ``PATH``), stdout and stderr merged, in its own
process group, killed (SIGKILL to the group) at the request's time limit, output kept up
to the request's cap (the rest is read and dropped); then ``POST <url>/result``. The agent
ends when the service answers 410 (the job is not running, inspection is off), when its parent
(the wrapper) is gone, or on SIGTERM; a command it is running then is killed. Network errors are
retried with a growing pause (at most :data:`MAX_PAUSE` seconds). Renewal and re-delegation
replace the job's proxy while it runs: the agent loads it again when the file changed
(:meth:`Agent.reload_proxy`, before each request and once more after a 403).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

AGENT_VARIABLES = ("WMPROXY_INSPECTION_URL", "WMPROXY_INSPECTION_TOKEN", "WMPROXY_INSPECTION_CA_DIR")
TOKEN_HEADER = "X-WMProxy-Inspection-Token"  # noqa: S105 - a header name
#: Where a command's program named without ``/`` is looked for (sudo's ``secure_path``): never the
#: job's ``PATH``, which the job sets (``Environment = {"PATH=.:/usr/bin"}`` and its own ``./ps``
#: ran that instead of ``ps``, past the site's allow-list). Also the command's ``PATH``.
TRUSTED_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The variables of the job's environment a command gets (:func:`command_environment`): they name
#: the job (its id, its proxy, which a grid tool run on it reads, the account) and the wrapper sets
#: them; the JDL cannot change the first two.
JOB_VARIABLES = ("GLITE_WMS_JOBID", "X509_USER_PROXY", "USER", "LOGNAME")
#: Prefixes of the batch system's variables a command gets from the agent's own environment (the
#: wrapper's, as the batch system set it: the job's allocation, ``SLURM_JOB_ID``...), never from the
#: job's (where its JDL ``Environment`` could set ``SLURM_CONF``); ``jobwrapper.BATCH_PREFIXES``.
BATCH_PREFIXES = ("SLURM_",)
#: Seconds of one long-poll asked of the service.
POLL_WAIT = 25.0
#: Longest pause after a failure, in seconds.
MAX_PAUSE = 30.0
#: Seconds between two looks at the parent and the running command.
TICK = 0.2
_READ_CHUNK = 64 * 1024


class _StopError(Exception):
    """The agent must end (its job is not running, its wrapper is gone, SIGTERM)."""


def utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1_000_000):06d}Z"


def _log(message: str) -> None:
    try:
        sys.stderr.write(f"{utc_now()} inspection-agent[{os.getpid()}]: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class Agent:
    """One agent for one job; see the module docstring."""

    def __init__(self, work_dir: str, environ: dict[str, str]) -> None:
        self.work_dir = os.path.abspath(work_dir)
        self.url = environ["WMPROXY_INSPECTION_URL"].rstrip("/")
        self.token = environ["WMPROXY_INSPECTION_TOKEN"]
        self.job_id = environ["GLITE_WMS_JOBID"]
        self.env = command_environment(environ, self.work_dir)
        self.parent = os.getppid()
        self.stopping = False
        self.busy = False  # running a command (SIGTERM then waits for it to be killed)
        self.ca_dir = environ.get("WMPROXY_INSPECTION_CA_DIR")
        self.proxy = environ["X509_USER_PROXY"]
        self.proxy_seen = _file_identity(self.proxy)
        self.context = self._new_context()

    def _new_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, capath=self.ca_dir)
        context.load_cert_chain(self.proxy)
        return context

    def reload_proxy(self) -> bool:
        """Present the job's proxy as it is now: renewal and re-delegation replace
        ``X509_USER_PROXY`` while the job runs, and the chain loaded at start expires. Rebuilds
        the TLS context when the file's (inode, mtime, size) changed since it was loaded (a
        ``stat``, cheap before every request); True when it did. A file that cannot be loaded
        (being written in place) keeps the context there was, and is tried again once it
        changes again."""
        try:
            seen = _file_identity(self.proxy)
        except OSError as exc:
            _log(f"cannot look at the job's proxy: {exc}")
            return False
        if seen == self.proxy_seen:
            return False
        self.proxy_seen = seen  # stat first: a change during the load is seen the next time
        try:
            self.context = self._new_context()
        except (OSError, ssl.SSLError, ValueError) as exc:
            _log(f"cannot load the job's renewed proxy (keeping the one loaded before): {exc}")
            return False
        _log("loaded the job's renewed proxy")
        return True

    # --- the service -----------------------------------------------------------------

    def _request(self, method: str, what: str, query: dict[str, str], body: bytes | None, timeout: float
                 ) -> tuple[int, dict[str, str], bytes]:
        """One request, with the job's proxy as it is now (:meth:`reload_proxy`); asked once more
        after a 403 when the proxy changed meanwhile (the service refused the one it replaced)."""
        self.reload_proxy()
        answer = self._send(method, what, query, body, timeout)
        if answer[0] == 403 and self.reload_proxy():
            answer = self._send(method, what, query, body, timeout)
        return answer

    def _send(self, method: str, what: str, query: dict[str, str], body: bytes | None, timeout: float
              ) -> tuple[int, dict[str, str], bytes]:
        query = dict(query, job=self.job_id)
        url = f"{self.url}/{what}?{urllib.parse.urlencode(query)}"
        headers = {TOKEN_HEADER: self.token}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 - https
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.context) as response:  # noqa: S310
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers or {}), exc.read()[:500]

    def next_task(self) -> dict[str, Any] | None:
        status, headers, body = self._request("GET", "next", {"wait": str(POLL_WAIT)}, None, POLL_WAIT + 30)
        if status == 200:
            task: dict[str, Any] = json.loads(body.decode())
            return task
        if status == 204:
            retry = headers.get("Retry-After")
            if retry and retry.isdigit():
                self._pause(float(retry))
            return None
        if status == 410:
            raise _StopError(body.decode("utf-8", "replace").strip() or "the job is not running")
        raise OSError(f"the service answered {status}: {body.decode('utf-8', 'replace').strip()}")

    def post(self, request_id: str, outcome: dict[str, Any]) -> None:
        body = json.dumps(outcome).encode()
        for attempt in range(5):
            try:
                status, _headers, text = self._request("POST", "result", {"request": request_id}, body, 60)
            except OSError as exc:
                _log(f"cannot post the result of {request_id} (attempt {attempt + 1}): {exc}")
                self._pause(2.0 * (attempt + 1))
                continue
            if status != 204:
                _log(f"the service refused the result of {request_id}: {status} {text[:200]!r}")
            return

    # --- running a command -------------------------------------------------------------

    def run(self, task: dict[str, Any]) -> dict[str, Any]:
        """Run one request; the outcome to post."""
        argv = [str(word) for word in task["argv"]]
        limit = float(task["time_limit"])
        cap = int(task["output_cap"])
        started = utc_now()
        program = program_path(argv[0])
        if program is None:
            return {"exit_code": None, "started_at": started, "ended_at": utc_now(), "timed_out": False,
                    "truncated": False, "output": "", "error": f"cannot run {argv[0]}: not found in {TRUSTED_PATH}"}
        try:
            process = subprocess.Popen(  # noqa: S603 - running the asked command is the point
                argv, executable=program, cwd=self.work_dir, env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, close_fds=True, start_new_session=True,
            )
        except OSError as exc:
            return {"exit_code": None, "started_at": started, "ended_at": utc_now(), "timed_out": False,
                    "truncated": False, "output": "", "error": f"cannot run {argv[0]}: {exc.strerror or exc}"}
        output, truncated, timed_out = self._collect(process, limit, cap)
        code = process.returncode
        return {"exit_code": 128 - code if code < 0 else code, "started_at": started, "ended_at": utc_now(),
                "timed_out": timed_out, "truncated": truncated, "output": base64.b64encode(output).decode(),
                "error": None}

    def _collect(self, process: subprocess.Popen[bytes], limit: float, cap: int) -> tuple[bytes, bool, bool]:
        import selectors  # only when a command runs

        deadline = time.monotonic() + limit
        chunks: list[bytes] = []
        kept = 0
        truncated = timed_out = False
        stream = process.stdout
        if stream is None:
            raise OSError("no pipe from the command")
        fd = stream.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            open_ = True
            while open_:
                if time.monotonic() >= deadline:
                    timed_out = True
                    break
                if self.stopping or not self._parent_alive():
                    break
                if not selector.select(min(TICK, max(0.0, deadline - time.monotonic()))):
                    continue
                data = os.read(fd, _READ_CHUNK)
                if not data:
                    open_ = False
                    continue
                room = cap - kept
                if len(data) > room:
                    truncated = True
                chunks.append(data[:max(room, 0)])
                kept += min(len(data), max(room, 0))
        if not timed_out and not self.stopping:
            timed_out = not self._exited(process.pid, deadline)
        _kill_group(process.pid)  # what the command left behind; the leader, exited, still holds the group id
        stream.close()
        process.wait()
        if self.stopping or not self._parent_alive():
            raise _StopError("the job wrapper ended while a command was running")
        return b"".join(chunks), truncated, timed_out

    def _exited(self, pid: int, deadline: float) -> bool:
        """Wait (without reaping it) until ``pid`` has exited; False at ``deadline``."""
        while True:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            if time.monotonic() >= deadline or self.stopping or not self._parent_alive():
                return False
            time.sleep(min(TICK / 4, max(0.0, deadline - time.monotonic())))

    # --- the loop ----------------------------------------------------------------------

    def _parent_alive(self) -> bool:
        return os.getppid() == self.parent

    def _pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.stopping or not self._parent_alive():
                raise _StopError("the job wrapper ended")
            time.sleep(min(TICK, end - time.monotonic()))

    def loop(self) -> int:
        failures = 0
        while True:
            try:
                if self.stopping or not self._parent_alive():
                    return 0
                task = self.next_task()
                failures = 0
                if task is not None:
                    self.busy = True
                    try:
                        outcome = self.run(task)
                    finally:
                        self.busy = False
                    self.post(str(task["request"]), outcome)
            except _StopError as exc:
                _log(f"stopping: {exc}")
                return 0
            except (OSError, ValueError, KeyError, TypeError) as exc:
                failures += 1
                _log(f"service unreachable or bad answer: {exc}")
                try:
                    self._pause(min(MAX_PAUSE, 2.0 ** min(failures, 5)))
                except _StopError:
                    return 0


def _file_identity(path: str) -> tuple[int, int, int]:
    """(inode, mtime in ns, size) of ``path``: a rename over it or a rewrite changes it."""
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns, st.st_size


def command_environment(environ: dict[str, str], work_dir: str) -> dict[str, str]:
    """The environment of every command the agent runs, built from scratch: ``PATH`` =
    :data:`TRUSTED_PATH`, ``LANG=C.UTF-8``, ``HOME`` = the work dir (the job's, as the wrapper sets
    it), the batch system's variables of the agent's own environment (:data:`BATCH_PREFIXES`), and
    :data:`JOB_VARIABLES` from the job's ``environ``.

    Nothing else of the job's environment: the job sets it (JDL ``Environment``), and an allowed
    program would run whatever it names: ``LD_PRELOAD=./evil.so`` (or ``LD_LIBRARY_PATH``,
    ``LD_AUDIT``, ``GCONV_PATH``, ``LOCPATH``, ``GLIBC_TUNABLES``) had the job's code run inside an
    allow-listed ``ps``, and an allowed program that is a script reads ``BASH_ENV``, ``ENV``,
    ``BASH_FUNC_*``, ``IFS``, ``PYTHON*``, ``PERL5*``... A deny-list of those would miss the next one."""
    env = {"PATH": TRUSTED_PATH, "LANG": "C.UTF-8", "HOME": work_dir}
    env.update((key, value) for key, value in os.environ.items() if key.startswith(BATCH_PREFIXES))
    env.update((key, environ[key]) for key in JOB_VARIABLES if key in environ)
    return env


def program_path(name: str) -> str | None:
    """The program ``name`` runs: a name with ``/`` as it is (``[inspection] mode = any``; the
    allow-list has bare names only), else the first executable file of that name in
    :data:`TRUSTED_PATH`; None when there is none."""
    if "/" in name:
        return name
    import shutil  # only when a command runs

    return shutil.which(name, path=TRUSTED_PATH)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def serve(work_dir: str, environ: dict[str, str]) -> int:
    """Run the agent for the job in ``work_dir`` (``environ``: see the module docstring) until
    it must end; the exit status (2: it cannot start)."""
    try:
        agent = Agent(work_dir, environ)
    except (KeyError, OSError, ssl.SSLError) as exc:
        _log(f"cannot start: {exc}")
        return 2

    def stop(_signum: int, _frame: object) -> None:
        agent.stopping = True
        if not agent.busy:  # waiting on the service: leave at once (a running command is killed first)
            raise _StopError("SIGTERM")

    signal.signal(signal.SIGTERM, stop)
    try:
        return agent.loop()
    except _StopError:
        return 0


def main(argv: list[str] | None = None) -> int:
    """Command line entry: ``inspection_agent.py <work_dir>``, the secret on standard input."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        _log("usage: inspection_agent.py <work_dir> < secret")
        return 2
    try:
        import ctypes

        if ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
    except (ImportError, OSError, AttributeError) as exc:
        _log(f"cannot start: cannot make the agent non-dumpable: {exc}")
        return 2
    environ = {k: v for k, v in os.environ.items() if k not in AGENT_VARIABLES[1:2]}
    environ[AGENT_VARIABLES[1]] = sys.stdin.readline().strip()
    return serve(args[0], environ)


if __name__ == "__main__":
    sys.exit(main())
