"""gunicorn configuration of the wmproxy service: HTTPS with grid client authentication.

Shipped in the package: ``wmproxy-server`` (:mod:`wmproxy.serve`) runs gunicorn with it,
as does ``gunicorn -c python:wmproxy.gunicorn_conf wmproxy.soap.app:application``, with
``WMPROXY_CONFIG`` naming the service configuration (see deploy/wmproxy.conf.example),
as the unprivileged service user (deploy/wmproxy.service). ``deploy/gunicorn.conf.py`` in
the source tree is the same configuration, for ``gunicorn -c deploy/gunicorn.conf.py``.

TLS: client certificates are required and verified against the grid CA directory
(``<hash>.0`` CAs, ``<hash>.r0`` CRLs) with RFC 3820 proxies allowed and CRLs checked
along the whole chain (a revoked user's proxy is refused). X509_STRICT stays off:
proxies made by grid-proxy-init carry no Authority Key Identifier. The handshake runs in
each worker's event loop with a deadline (``wmproxy.soap.tls_worker``), so a request thread
only ever serves a client that has completed it. The context is first built in the master's
``on_starting`` hook, before it listens: a host certificate, key or CA directory the service user
cannot load stops the start with the file named (the workers start with the master's context
and rebuild it every minute, keeping the previous one when that fails).

Start: reading this module loads the settings (a configuration error exits 2); ``on_starting``
runs the start checks once, in the master that will listen (after its ``PYTHONMALLOC`` re-exec),
and a refusal exits with the status of :mod:`wmproxy.services.startup` (3; 1 for a database not
reachable yet), one line, no traceback. A worker that fails to boot tells the master why, which
exits with that line and status 3 (:func:`on_exit`) rather than be restarted in a loop.

Reload (SIGHUP, ``systemctl reload wmproxy``): the master reads and checks the file again first
(:func:`_check_reloads`); a bad file is logged in one line and changes nothing, a good one is
applied whole (``[service] bind`` aside: a restart), and the workers take the master's settings.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import ssl
import sys
import threading
import time
from typing import Any, NoReturn

from wmproxy.allocator import exec_with_system_malloc, tune_allocator
from wmproxy.config import ConfigError, SecuritySettings, Settings, load_settings
from wmproxy.monitoring.health import host_pair_problem, load_host_pair
from wmproxy.services.load import fd_limit_problem, raise_open_files_limit
from wmproxy.services.startup import EXIT_FAILED, EXIT_REFUSED, exit_status
from wmproxy.soap.app import check_start
from wmproxy.soap.memory import BIG_REQUEST_BYTES, release_memory

# A configuration error (an unknown section, key or variable, a bad value) stops the start here,
# as gunicorn reads this module, before it listens: one line, status 2, never a traceback. The
# start checks (file modes, schema, store key, writable directories) and the TLS context come in
# on_starting (below), once, after the master's re-exec.
try:
    _settings = load_settings()
except ConfigError as _exc:
    print(f"wmproxy: refusing to start: {_exc}", file=sys.stderr)
    sys.exit(exit_status(_exc))

# The master's open-files limit up to the hard one (inherited by the workers, kept across the
# re-exec of on_starting; post_fork raises it again): [load] free_fds counts the worker's headroom.
raise_open_files_limit()

bind = [_settings.service.bind]
workers = _settings.service.workers
# gthread with the TLS handshake in the worker's event loop, not on a request thread, and a
# deadline ([load] handshake_timeout): slow or stalled handshakes cannot hold the threads; on a
# thread each read and write must progress within [load] io_timeout, so a client that stops
# sending its body or reading its response cannot either (docs/load.md).
worker_class = "wmproxy.soap.tls_worker.HandshakeWorker"
threads = _settings.service.threads
timeout = 120
# The heartbeat file each worker touches on every loop turn: on tmpfs, not the disk (issue 14).
# gunicorn makes it with mkstemp and unlinks it at once.
_SHM = "/dev/shm"  # noqa: S108
worker_tmp_dir = _SHM if os.path.isdir(_SHM) else None
graceful_timeout = _settings.service.graceful_timeout
keepalive = 5
certfile = _settings.security.host_cert
keyfile = _settings.security.host_key
cert_reqs = ssl.CERT_REQUIRED
# No gunicorn access line: every request the application answers writes its wmproxy.access line
# (SOAP, sandbox, monitor, agent, WSDL, 404...), which names the caller; gunicorn's repeated half of
# it (~150 bytes a request). A request gunicorn refuses itself (malformed HTTP) still gets its
# "Invalid request" WARNING. `wmproxy-server --access-logfile -` brings gunicorn's line back
# (docs/monitoring.md; gunicorn writes its line whenever logconfig_dict is set: this logger does not).
accesslog = None
logger_class = "wmproxy.monitoring.gunicorn_log.Logger"
loglevel = "info"
# The application's own loggers (wmproxy.*: one line per fault, worker events) go to
# stderr next to gunicorn's; nothing the service logs contains key material.
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
}
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(L)ss'
proc_name = "wmproxy"
# No control socket (gunicornc, gunicorn 25.1+): nothing here uses it, and its default path,
# $XDG_RUNTIME_DIR/gunicorn.ctl or $HOME/.gunicorn/gunicorn.ctl, is one per user: a second
# service of the same user that stopped removed the running one's.
control_socket_disable = True

#: Seconds a built SSL context is reused; CRL and CA updates are seen after this.
_CONTEXT_TTL = 60
#: Seconds between two tries to rebuild it while rebuilding fails (the previous one is served).
_REBUILD_RETRY = 5
#: The context served, when it was built, when a rebuild last failed (monotonic seconds) and
#: the failure last logged (logged again only when it changes).
_cache: dict[str, Any] = {"context": None, "built": 0.0, "failed": None, "error": None}
_log = logging.getLogger(__name__)


def _build_context(sec: SecuritySettings | None = None) -> ssl.SSLContext:
    """The TLS context of ``sec`` (default: the settings served)."""
    sec = sec or _settings.security
    if not os.path.isdir(sec.ca_dir):
        raise FileNotFoundError(errno.ENOENT, "the CA directory ([security] ca_dir) is not a directory", sec.ca_dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    load_host_pair(ctx, sec.host_cert, sec.host_key)
    ctx.load_verify_locations(capath=sec.ca_dir)
    ctx.verify_mode = ssl.CERT_REQUIRED
    strict_off = ctx.verify_flags & ~ssl.VERIFY_X509_STRICT
    ctx.verify_flags = strict_off | ssl.VERIFY_ALLOW_PROXY_CERTS | ssl.VERIFY_CRL_CHECK_CHAIN
    # No session resumption: a resumed session has no verified client chain (OpenSSL keeps
    # none), so the caller could not be named; browsers resume (the web monitor's downloads).
    ctx.options |= ssl.OP_NO_TICKET
    ctx.num_tickets = 0
    return ctx


def _why_not_built(exc: Exception, sec: SecuritySettings | None = None) -> str:
    """Why :func:`_build_context` failed, the file named: the host pair's problem as this
    process's user meets it (:func:`wmproxy.monitoring.health.host_pair_problem`), else the
    error with the three paths."""
    sec = sec or _settings.security
    if isinstance(exc, OSError) and exc.filename == sec.ca_dir:
        return f"cannot read the CA directory {sec.ca_dir} ([security] ca_dir): {exc.strerror or exc}"
    problem = host_pair_problem(sec.host_cert, sec.host_key)
    if problem is not None:
        return problem
    return (f"the TLS context cannot be built (host_cert {sec.host_cert}, host_key {sec.host_key}, "
            f"ca_dir {sec.ca_dir}): {exc}")


def _refuse(reason: str, status: int, server: Any = None) -> NoReturn:
    """Stop the master's start: ``wmproxy: refusing to start: <reason>`` in one line on stderr
    and exit ``status`` (:mod:`wmproxy.services.startup`: 2 configuration, 3 refused, 1 the
    database not reachable yet); gunicorn's pidfile, made before on_starting, is removed."""
    print(f"wmproxy: refusing to start: {reason}", file=sys.stderr)
    pidfile = getattr(server, "pidfile", None)
    if pidfile is not None:
        with contextlib.suppress(OSError):
            pidfile.unlink()
    sys.exit(status)


def _first_context(server: Any = None) -> None:
    """Build the TLS context in the master before it listens (the workers it forks start with
    it): one that cannot be built stops the start, the file named in one line, with
    :data:`~wmproxy.services.startup.EXIT_REFUSED`. Without this, the service listened and each
    worker closed every connection without a word.

    Raises:
        SystemExit: the context cannot be built.
    """
    try:
        _cache.update(context=_build_context(), built=time.monotonic())
    except (OSError, ValueError) as exc:  # ssl.SSLError included; ValueError: an encrypted key
        _refuse(_why_not_built(exc), EXIT_REFUSED, server)


def start_checks(server: Any = None) -> None:
    """The master's start checks, once per start: the service's (:func:`wmproxy.soap.app.check_start`:
    file modes, schema, store key, the sandbox root writable, the WARNING of unmapped jobs), the
    open-files limit against ``[load] free_fds`` (a WARNING) and the TLS context
    (:func:`_first_context`). A failure stops the start with one line and the status of
    :func:`wmproxy.services.startup.exit_status`.

    Raises:
        SystemExit: a check failed.
    """
    try:
        check_start(_settings)
    except ConfigError as exc:
        _refuse(str(exc), exit_status(exc), server)
    if (fd_problem := fd_limit_problem(_settings.load)) is not None:
        sys.stderr.write(f"wmproxy: WARNING: {fd_problem}\n")
    _first_context(server)


def ssl_context(config: Any, default_ssl_context_factory: Any) -> ssl.SSLContext:  # gunicorn hook signature
    """gunicorn calls this for every accepted connection (sync/gthread workers).

    The context is built again once it is :data:`_CONTEXT_TTL` seconds old. When that fails
    (the host certificate renewed in two steps, cert and key mismatched for a moment; a file
    unreadable), the previous context is kept and the rebuild tried again at most every
    :data:`_REBUILD_RETRY` seconds; the failure is logged in one line (ERROR) once, and again
    only when it changes; the rebuild that succeeds after it is logged (INFO). With no previous
    context (none is built at start: :func:`_first_context`), the error is raised (the
    connection is closed).
    """
    now = time.monotonic()
    context: ssl.SSLContext | None = _cache["context"]
    failed: float | None = _cache["failed"]
    if context is None or (now - _cache["built"] > _CONTEXT_TTL and (failed is None or now - failed >= _REBUILD_RETRY)):
        try:
            built = _build_context()
        except (OSError, ValueError) as exc:  # ssl.SSLError included
            if context is None:
                raise
            _cache["failed"] = now
            why = _why_not_built(exc)
            if why != _cache["error"]:
                _cache["error"] = why
                _log.error("TLS context not rebuilt: %s; the previous one (built %.0f s ago) is kept and the rebuild "
                           "tried every %d s (logged again when the error changes)", why, now - _cache["built"],
                           _REBUILD_RETRY)
            return context
        if failed is not None:
            _log.info("TLS context rebuilt after the failure logged before")
        _cache.update(context=built, built=now, failed=None, error=None)
        return built
    return context


def _checked_reload(log: Any) -> tuple[Settings, ssl.SSLContext] | str:
    """The configuration read again for a reload (SIGHUP) and checked as a start checks it: the
    settings (:func:`wmproxy.config.load_settings`), the start checks
    (:func:`wmproxy.soap.app.check_start`: file modes, schema, store key, directories; a database
    not reachable is a WARNING, the workers build the application once it is) and the TLS context
    built from them; or why they failed, in one line."""
    try:
        new = load_settings()
    except ConfigError as exc:
        return str(exc)
    try:
        check_start(new)
    except ConfigError as exc:
        if exit_status(exc) != EXIT_FAILED:
            return str(exc)
        log.warning("wmproxy: reloading the configuration although %s", " ".join(str(exc).split()))
    except Exception as exc:  # noqa: BLE001 - whatever failed, the master keeps serving
        return f"{type(exc).__name__}: {exc}"
    try:
        return new, _build_context(new.security)
    except (OSError, ValueError) as exc:  # ssl.SSLError included
        return _why_not_built(exc, new.security)


def _apply(new: Settings, context: ssl.SSLContext, log: Any) -> None:
    """Serve ``new`` from now on: this module's gunicorn settings (gunicorn reads them again as it
    reloads: the module is cached, its names are read anew), the settings the new workers start
    with (:func:`post_fork`) and the TLS context they inherit. ``[service] bind`` is the exception:
    the master keeps its sockets, a change is logged as needing a restart."""
    global _settings, workers, threads, graceful_timeout, certfile, keyfile  # noqa: PLW0603 - gunicorn reads them
    service = new.service
    workers, threads, graceful_timeout = service.workers, service.threads, service.graceful_timeout
    certfile, keyfile = new.security.host_cert, new.security.host_key
    _settings = new
    _cache.update(context=context, built=time.monotonic(), failed=None, error=None)
    if [service.bind] != bind:
        log.warning("wmproxy: [service] bind changed to %s: only a restart applies it (systemctl restart wmproxy); "
                    "the service keeps listening on %s", service.bind, ", ".join(bind))
    log.info("wmproxy: configuration reloaded from %s: workers %d, threads %d, graceful_timeout %d s",
             os.environ.get("WMPROXY_CONFIG") or "the environment", workers, threads, graceful_timeout)


def _check_reloads(server: Any) -> None:
    """Make the master's reload (SIGHUP, ``systemctl reload wmproxy``) check the configuration
    first. gunicorn reads this module once (``importlib``: cached) and reloads by starting new
    workers, which read the file themselves: a typo made them fail to boot and the master exit
    (status 2, not restarted), and a valid change was half applied (the workers' count, threads,
    timeouts and TLS files stayed the old ones). Now the file is read and checked in the master
    (:func:`_checked_reload`): when it fails, one line (ERROR) says why and nothing changes (the old
    workers keep serving with the old settings); when it passes, it is applied whole
    (:func:`_apply`) and gunicorn reloads (new workers, the old ones stopped gracefully)."""
    reload = server.reload

    def checked_reload() -> None:
        checked = _checked_reload(server.log)
        if isinstance(checked, str):
            server.log.error("wmproxy: configuration not reloaded, the workers keep serving with the previous "
                             "settings: %s", " ".join(checked.split()))
            return
        _apply(*checked, server.log)
        reload()

    server.reload = checked_reload


def on_starting(server: Any) -> None:  # gunicorn hook signature
    """gunicorn calls this in the master before it listens or forks. The master first starts
    again with ``PYTHONMALLOC=malloc`` (unless the variable is set: ``wmproxy-server`` has done
    it before gunicorn), so that its workers give the memory of a big request back (issue 14;
    :func:`wmproxy.allocator.exec_with_system_malloc`); then, in the process that will listen,
    it runs the start checks once (:func:`start_checks`), makes its reloads check the
    configuration first (:func:`_check_reloads`) and opens the pipe on which a worker that fails
    to boot says why (:func:`on_exit`)."""
    exec_with_system_malloc()
    start_checks(server)
    _check_reloads(server)
    read_end, write_end = os.pipe()  # not inherited by an exec (a binary upgrade), by every fork
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)  # a full pipe loses a report, never blocks a worker
    _boot_reports.update(read=read_end, write=write_end)


#: The pipe on which a worker that fails to boot writes its status and reason (one line each).
_boot_reports: dict[str, int | None] = {"read": None, "write": None}
#: The longest report a worker writes: a pipe's write of at most PIPE_BUF bytes is never interleaved.
_REPORT_BYTES = 512
#: The exit status of a worker that failed to boot and reported why. Not gunicorn's own 3
#: (WORKER_BOOT_ERROR): gunicorn halts on that from its reaping, also while it halts already,
#: so a second worker failing to boot ended the master with a HaltServer traceback and status 1.
_BOOT_REPORTED = 5
#: The status and reason of the halt :func:`child_exit` started, for :func:`on_exit`.
_halting: dict[str, Any] = {"status": None, "reason": None}


def _report_boot_failure(exc: BaseException) -> bool:
    """In a worker that failed to boot: its status and one-line reason to the master
    (:func:`child_exit`): the status of :func:`wmproxy.services.startup.exit_status` for a
    configuration, store or database error, else :data:`~wmproxy.services.startup.EXIT_REFUSED`
    (the application or the worker cannot start: a restart would fail the same way). False when
    it could not be written."""
    fd = _boot_reports["write"]
    if fd is None:
        return False
    status = exit_status(exc) if isinstance(exc, ConfigError) else EXIT_REFUSED
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    line = f"{status} a gunicorn worker (pid {os.getpid()}) failed to boot: {reason}"
    try:
        os.write(fd, line.encode(errors="replace")[:_REPORT_BYTES - 1] + b"\n")
    except OSError:
        return False
    return True


def _boot_failed(worker: Any, exc: Exception) -> NoReturn:
    """A worker's boot raised ``exc``: logged with its traceback (as gunicorn does), reported to
    the master, and the worker exits with :data:`_BOOT_REPORTED`; re-raised (gunicorn's own
    handling) when it could not be reported."""
    log = getattr(worker, "log", None)
    if log is not None:
        log.error("Exception in worker process", exc_info=exc)
    if not _report_boot_failure(exc):
        raise exc
    sys.exit(_BOOT_REPORTED)


def post_fork(server: Any, worker: Any) -> None:  # gunicorn hook signature
    """gunicorn calls this in each new worker before it serves: glibc's mmap and trim thresholds
    are fixed there, so the blocks of a big request go back to the kernel (issue 14); its
    open-files limit is raised to the hard one (``[load] free_fds``,
    :func:`wmproxy.services.load.raise_open_files_limit`). A failure of the worker's boot
    from here on (this hook, the worker's set-up, the application's import) is reported to the
    master in one line (:func:`child_exit`). The worker takes the master's settings
    (``worker.wmproxy_settings``, checked at start and at each reload) rather than read the file
    again: a file edited since, with a typo, made each worker started to replace one fail to boot."""
    try:
        tune_allocator()
        raise_open_files_limit()
    except Exception as exc:  # noqa: BLE001 - reported, then the worker exits
        _boot_failed(worker, exc)
    boot = getattr(worker, "init_process", None)
    if boot is None:  # not a gunicorn worker
        return
    worker.wmproxy_settings = _settings

    def init_process() -> None:
        try:
            boot()
        except Exception as exc:
            if getattr(worker, "booted", False):
                raise
            _boot_failed(worker, exc)

    worker.init_process = init_process


def _first_report() -> tuple[int, str] | None:
    """The first boot failure a worker reported, if any (the master's end of the pipe)."""
    fd = _boot_reports["read"]
    if fd is None:
        return None
    try:
        reports = os.read(fd, 64 * _REPORT_BYTES).decode(errors="replace")
    except OSError:  # BlockingIOError: none
        return None
    status, _, reason = (reports.splitlines() or [""])[0].partition(" ")
    return (int(status), reason) if status.isdigit() and reason else None


def child_exit(server: Any, worker: Any) -> None:  # gunicorn hook signature
    """gunicorn calls this in the master for each worker it reaps: after one that failed to boot
    and said why (:func:`post_fork`), the master halts (as gunicorn does for a worker that fails
    to boot) with that worker's status, once: 3 (refused: the units do not restart it, a restart
    would fail the same way), 2 for a configuration error, 1 for a database not reachable yet
    (:mod:`wmproxy.services.startup`); :func:`on_exit` prints the reason in one line.

    Raises:
        gunicorn.errors.HaltServer: a worker failed to boot.
    """
    if _halting["status"] is not None or (report := _first_report()) is None:
        return
    from gunicorn.errors import HaltServer  # type: ignore[import-untyped]

    _halting.update(status=report[0], reason=report[1])
    raise HaltServer(report[1], report[0])


def on_exit(server: Any) -> None:  # gunicorn hook signature
    """gunicorn calls this in the master as it exits: after a worker that failed to boot
    (:func:`child_exit`), its reason in one line, ``wmproxy: refusing to start: a gunicorn
    worker (pid N) failed to boot: <error>`` (``wmproxy: ...; the start is tried again`` for a
    database not reachable yet); gunicorn then exits with its status."""
    status, reason = _halting["status"], _halting["reason"]
    if status is None:
        return
    if status == EXIT_FAILED:
        print(f"wmproxy: {reason}; the start is tried again", file=sys.stderr)
    else:
        print(f"wmproxy: refusing to start: {reason}", file=sys.stderr)


#: Seconds after a big request has ended before its memory is released once more.
_RELEASE_DELAY = 0.5
#: Held while a delayed release is scheduled: one covers every big request that ends before it runs.
_release_scheduled = threading.Lock()


def _delayed_release() -> None:
    try:
        release_memory()
    finally:
        _release_scheduled.release()


def post_request(worker: Any, req: Any, environ: dict[str, Any], resp: Any) -> None:  # gunicorn hook signature
    """gunicorn calls this after each request, while its environ, response and response body
    are still referenced: the release at the response's close (:mod:`wmproxy.soap.memory`) cannot
    free them. After a POST of ``BIG_REQUEST_BYTES`` or more (a big SOAP request, an agent's
    result), the memory is released once more :data:`_RELEASE_DELAY` s later on a thread of its
    own, when the request thread has let them go; at most one such release is scheduled at a
    time. A sandbox upload (PUT) streams to disk and builds nothing to release: before, each one
    of a MiB or more started a thread and a full collection."""
    if environ.get("REQUEST_METHOD") != "POST":
        return
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if length >= BIG_REQUEST_BYTES and _release_scheduled.acquire(blocking=False):
        timer = threading.Timer(_RELEASE_DELAY, _delayed_release)
        timer.daemon = True
        timer.start()
