"""The HTTPS edge of the job sandboxes: what GridSite ``htcp``/``htls``/``htll`` speak.

Requests (``peers.md`` §7) on ``/<dir_name>/<2ch>/<job dir>/{input,output}/...``:

=========  ==================================================================
GET        file: its bytes, with ``Content-Length`` and ``Last-Modified``;
           directory: a small HTML page of ``<a href="name">`` links (``htls``)
HEAD       the same headers without a body (``htll`` reads them case-sensitively)
PUT        upload into ``input/``; a path ending in ``/`` creates a directory
DELETE     a file or an empty directory below ``input/``
MOVE       rename inside the same job's ``input/`` (``Destination`` header)
=========  ==================================================================

``output/`` is read-only over HTTP: the execution worker fills it. What the service keeps in a
job's work dir (the job's proxy ``user.proxy``, ``.wmproxy/``), which a job ended before its
collection and perusal refused it may have left in ``output/`` or ``peek/``, is neither listed nor
served there (:func:`~wmproxy.sandbox.storage.withheld`: 403), for the owner as for the readers the
job's ACL admits. Statuses: 400 for a
file name the service refuses (control characters such as newline, CR or ESC, DEL, the name
of an upload in progress; such a name, which a job collected before collection and perusal
refused it may have left, is not listed: :func:`~wmproxy.sandbox.storage.served_name`), or that a
PUT or a MOVE would create longer than ``[limits] max_sandbox_name_bytes`` (a file stored under a
longer name before the site lowered its limit is still listed and served), a path whose
path on the server would reach PATH_MAX, and an upload body cut off or malformed (a bad chunk);
403 for a caller the site does not admit (checked before the path is parsed; the connection is
then closed, its body not read), a path outside a sandbox, a refused caller (a limited proxy may
only read), an upload over
``[limits] max_input_sandbox_files`` (a directory counts as a file), a path with more than
:data:`~wmproxy.sandbox.storage.MAX_PATH_DEPTH` (16) components below ``input/`` or
``output/``, or a MOVE of a directory; 404 for unknown jobs or files (also a file another
request removed while this one waited); 409 for a missing parent directory, a change of the
input sandbox after jobStart (also an upload that was under way when the job was started: it is
refused when it commits), or a write into the area of a node of a compound job (its input
sandbox is its compound job's ``input/``, which the refusal names); 413 when the upload would
exceed the input sandbox size limit or the owner's hard quota; 405 for other methods. Error
bodies are one line of plain text, never a traceback.

Every answer carries :data:`SANDBOX_HEADERS` and a Content-Security-Policy (:data:`FILE_CSP`,
a listing :data:`LISTING_CSP`): the job monitor is on the same origin, so a job's output must
never be sniffed, framed, run or loaded by another site. A file is sent as an attachment
(``Content-Disposition``, RFC 6266; htcp and the project's client name the file after the URL).

Every change of the bytes of an input area goes through ``record_bytes`` (:data:`RecordBytes`),
which reads the sizes it changes, and checks the limits, with the owner's usage counter locked.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import html
import logging
import os
import stat
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.http import http_date
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import wrap_file

from wmproxy.errors import (
    AuthenticationError,
    AuthorizationError,
    DelegationError,
    InvalidArgumentError,
    JobNotFoundError,
    OperationNotAllowedError,
    ProxyError,
    QuotaExceededError,
    SandboxError,
    SandboxFileCountError,
    SandboxNameError,
    SandboxPathError,
    WMProxyError,
)
from wmproxy.sandbox.storage import (
    CHUNK_SIZE,
    NAME_MAX,
    AreaTally,
    FilesystemSandboxStorage,
    UnknownJobAreaError,
    check_file_name,
    served_name,
    withheld,
)
from wmproxy.services.authz import NotAdmittedError
from wmproxy.soap.tls_worker import close_connection
from wmproxy.text import log_text
from wmproxy.web.headers import BROWSER_HEADERS

log = logging.getLogger(__name__)

Authorize = Callable[[dict[str, Any], str, str], None]
"""``authorize(environ, job_rel_dir, method)``: return if the caller may do ``method``
on the job area ``job_rel_dir`` (``SandboxDir/Ab/<job dir>``), else raise a WMProxyError
(AuthenticationError/AuthorizationError → 403, JobNotFoundError → 404)."""

Admit = Callable[[dict[str, Any], str], object]
"""``admit(environ, method)``: return if the caller is authenticated and admitted by the site
(``[security] authorized_users``), else raise (AuthenticationError, NotAdmittedError → 403, and the
connection is closed without reading the rest of the request). Called first, before the path is
parsed: a refusal of the path must not read the body of a caller the site does not admit."""

InputLimit = Callable[[str], int]
"""``input_limit(job_rel_dir)``: bytes the job's ``input/`` may still take."""

NewFileCheck = Callable[[str], None]
"""``check_new_file(job_rel_dir)``: return if the job's ``input/`` may take one more file,
else raise (SandboxFileCountError → 403)."""

RecordBytes = Callable[[str, Callable[[], AreaTally], Callable[[], None]], None]
"""``record_bytes(job_rel_dir, change, apply)``: inside the transaction that holds the owner's
usage counter locked, call ``change()``, which reads from the disk what ``apply()`` (the rename
or unlink) will add to the job's input area (bytes and files, negative for fewer), add its bytes
to the counter, then call ``apply()``; raise (QuotaExceededError → 413, SandboxFileCountError →
403) to refuse. ``change()`` may raise too (the file has gone meanwhile: 404). Reading the sizes
under the lock keeps concurrent changes of one file from counting the same bytes twice."""


def _apply_only(job_rel_dir: str, change: Callable[[], AreaTally], apply: Callable[[], None]) -> None:
    change()
    apply()


ALLOWED_METHODS = ("GET", "HEAD", "PUT", "DELETE", "MOVE")

#: Headers of every answer (the monitor's pages are on the same origin): never sniffed into
#: another type, framed or loaded by another site.
SANDBOX_HEADERS = BROWSER_HEADERS
#: Content-Security-Policy of a file and of every other answer but a listing: nothing loads,
#: and were it ever shown as a page it would be an origin of its own (``sandbox``).
FILE_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
#: Content-Security-Policy of a directory listing: links only (no style, script or form); its
#: ``<base href>`` is its own directory.
LISTING_CSP = "default-src 'none'; frame-ancestors 'none'; form-action 'none'; base-uri 'self'"

_BODY_READ = "wmproxy.sandbox.body_read"
#: environ key of the bytes an upload stored (set once its file is in place; the metrics count
#: these, not the request's Content-Length).
STORED_BYTES = "wmproxy.sandbox.stored_bytes"
"""Environ key set once a PUT has read its whole body (its refusal then drains nothing)."""

# Order matters: first match along this list wins (subclasses before bases).
_STATUS_OF: tuple[tuple[type[WMProxyError], int], ...] = (
    (UnknownJobAreaError, 404),
    (JobNotFoundError, 404),
    (SandboxPathError, 403),
    (SandboxFileCountError, 403),
    (AuthenticationError, 403),
    (AuthorizationError, 403),
    (ProxyError, 403),
    (DelegationError, 403),
    (OperationNotAllowedError, 409),
    (QuotaExceededError, 413),
    (InvalidArgumentError, 400),
)


class _HttpError(Exception):
    """An HTTP-level refusal raised inside this module."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class SandboxApp:
    """WSGI application serving the job sandboxes of ``storage``.

    Args:
        storage: the sandbox storage; URL paths are ``/<storage.dir_name>/...``.
        authorize: called as ``authorize(environ, job_rel_dir, method)`` before any
            file of the job is looked at; raises a WMProxyError to refuse.
        admit: ``admit(environ, method)`` before anything else (:data:`Admit`); default none.
        input_limit: ``input_limit(job_rel_dir)`` → bytes the job's input sandbox may
            still take (e.g. MaxInputSandboxSize − current input size). When a PUT
            replaces a file, that file's current size is added back.
        check_new_file: ``check_new_file(job_rel_dir)`` before a PUT creates a file in the
            job's input sandbox: raises to refuse (the file-count limit); default no check.
        record_bytes: ``record_bytes(job_rel_dir, change, apply)`` around each change of the
            bytes or files an area holds (upload, delete, move; see :data:`RecordBytes`);
            default: ``change()``, then ``apply()``.
        max_name_bytes: longest file name (bytes of UTF-8) a path component may have.
    """

    def __init__(
        self,
        storage: FilesystemSandboxStorage,
        *,
        authorize: Authorize,
        input_limit: InputLimit,
        admit: Admit | None = None,
        check_new_file: NewFileCheck | None = None,
        max_name_bytes: int = NAME_MAX,
        record_bytes: RecordBytes | None = None,
    ) -> None:
        self.storage = storage
        self.authorize = authorize
        self.admit = admit
        self.input_limit = input_limit
        self.check_new_file = check_new_file or (lambda rel_dir: None)
        self.max_name_bytes = max_name_bytes
        self.record_bytes = record_bytes or _apply_only

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        refused_caller = False
        try:
            response = self._dispatch(request)
        except _HttpError as exc:
            response = _text(exc.status, exc.message, exc.headers)
        except WMProxyError as exc:
            response = _text(_status_of(exc), exc.message)
            refused_caller = isinstance(exc, (AuthenticationError, NotAdmittedError))
        except HTTPException as exc:  # e.g. werkzeug's ClientDisconnected while reading
            response = _text(exc.code or 400, exc.name)
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            log.exception("sandbox request %s %s failed (error id %s)", log_text(request.method),
                          log_text(request.path), error_id)  # a path may hold %0A: one line whatever it holds
            response = _text(500, f"Internal server error (error id {error_id})")
        response.headers.extend(SANDBOX_HEADERS)
        response.headers.setdefault("Content-Security-Policy", FILE_CSP)
        if refused_caller:  # whatever the method: its body is not read at its pace, answered and closed
            close_connection(environ)
        elif response.status_code >= 400 and request.method in ("PUT", "MOVE") and not request.environ.get(_BODY_READ):
            _drain(request)  # an admitted client still sending reads its answer (MAX_DRAIN)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        """Handle one request; raises WMProxyError subclasses for refusals."""
        method = request.method
        if self.admit is not None:  # before the path: its refusal drains the body of an admitted caller only
            self.admit(request.environ, method)
        if method not in ALLOWED_METHODS:
            raise _HttpError(405, f"Method {method} not allowed", {"Allow": ", ".join(ALLOWED_METHODS)})
        rel_path = request.path[1:]  # werkzeug collapses leading slashes to one
        job_rel_dir, area, rest = self.storage.split_path(rel_path)
        self._check_names(rest, self.max_name_bytes if method == "PUT" else NAME_MAX)
        self.authorize(request.environ, job_rel_dir, method)
        if method in ("GET", "HEAD") and (why := withheld(area, rest)) is not None:
            raise SandboxPathError(f"{'/'.join(rest)} is not served: {why}")  # left by a job ended before
        resolved = self.storage.resolve(rel_path)
        path = resolved.path
        if method in ("GET", "HEAD"):
            if not resolved.area_exists:  # not written to yet: an empty directory
                if rest:
                    raise _HttpError(404, f"No such file: {'/'.join(rest)}")
                return self._listing(request, None, area, rest)
            return self._get(request, path, area, rest)
        if area != "input":
            raise AuthorizationError("The output sandbox is read-only")
        if not rest:
            raise SandboxPathError(f"{method} of the input sandbox directory itself is not allowed")
        if method == "PUT":
            # The first upload into a job's input/ creates it (never the job directory: a
            # purged job's area is not brought back); deeper paths need their parent first.
            create_input = (
                (lambda: self.storage.create_area(job_rel_dir, area))
                if not resolved.area_exists and len(rest) == 1 else None
            )
            if request.path.endswith("/"):
                return _mkdir(path, create_input, lambda: self.check_new_file(job_rel_dir),
                              functools.partial(self.record_bytes, job_rel_dir))
            return self._put(request, job_rel_dir, path, create_input)
        if method == "DELETE":
            return self._delete(job_rel_dir, path)
        return self._move(request, job_rel_dir, path)

    @staticmethod
    def _check_names(names: tuple[str, ...], max_bytes: int) -> None:
        """Refuse a path whose components the edge never serves (:func:`check_file_name`).
        ``max_bytes``: ``max_name_bytes`` for a name a request creates (PUT, a MOVE's
        destination), NAME_MAX for one it reads, moves or deletes: a site that lowers its limit
        still serves, lists and lets be fetched the files stored under the longer names before
        (``wmproxy output`` purges a job only when every listed file came)."""
        for name in names:
            check_file_name(name, max_bytes)

    # --- handlers ---

    def _get(self, request: Request, path: Path, area: str, rest: tuple[str, ...]) -> Response:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise _HttpError(404, f"No such file: {'/'.join(rest) or '.'}") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SandboxPathError("Symbolic links are not allowed in sandbox paths") from None
            raise
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                os.close(fd)
                return self._listing(request, path, area, rest)
            if not stat.S_ISREG(st.st_mode):
                raise SandboxPathError("Only regular files and directories are served")
        except BaseException:
            _close_quietly(fd)
            raise
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(st.st_size),
            "Last-Modified": http_date(st.st_mtime),
            # a browser saves it, never shows it; htcp and the CLI name the file after the URL
            "Content-Disposition": "attachment; filename*=UTF-8''" + quote(path.name, safe=""),
        }
        if request.method == "HEAD":
            os.close(fd)
            response = Response(b"", status=200, headers=headers)
            response.headers["Content-Length"] = str(st.st_size)  # Response(b"") set it to 0
            return response
        f = os.fdopen(fd, "rb")
        # 1 MiB blocks: the server's file wrapper reads 8 kB at a time by default (no sendfile over TLS).
        body = wrap_file(request.environ, f, buffer_size=CHUNK_SIZE)
        return Response(body, status=200, headers=headers, direct_passthrough=True)

    def _listing(self, request: Request, path: Path | None, area: str, rest: tuple[str, ...]) -> Response:
        """The directory page of ``path`` (None: an area not created yet, listed empty), the
        directory ``rest`` below ``area``; what is never served (:func:`withheld`, a name the edge
        refuses, :func:`served_name`: control characters, bytes that are not UTF-8, left by a
        job collected before collection refused such names) is left out: every name listed can
        be fetched (a name longer than a lowered ``max_name_bytes`` is, :meth:`_check_names`)."""
        rows = []
        entries: list[os.DirEntry[str]] = []
        if path is not None:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if not served_name(entry.name) or withheld(area, (*rest, entry.name)) is not None:
                continue
            name = entry.name + ("/" if entry.is_dir(follow_symlinks=False) else "")
            rows.append(f'<li><a href="{html.escape(quote(name))}">{html.escape(name)}</a></li>')
        base = request.script_root + request.path.rstrip("/") + "/"
        title = html.escape(request.path)
        body = (
            f'<!DOCTYPE html>\n<html><head><title>{title}</title><base href="{html.escape(quote(base))}"></head>\n'
            f"<body><h1>{title}</h1>\n<ul>\n" + "\n".join(rows) + "\n</ul></body></html>\n"
        ).encode()
        headers = {"Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(body)),
                   "Content-Security-Policy": LISTING_CSP}
        if request.method == "HEAD":
            response = Response(b"", status=200, headers=headers)
            response.headers["Content-Length"] = str(len(body))
            return response
        return Response(body, status=200, headers=headers)

    def _put(self, request: Request, job_rel_dir: str, path: Path,
             create_input: Callable[[], object] | None) -> Response:
        """Upload into ``path``; ``create_input`` (when given) makes the missing ``input/`` first."""
        if create_input is None and not path.parent.is_dir():
            raise _HttpError(409, "The parent directory does not exist; create it first (PUT to '<dir>/')")
        existing = 0
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            created = True
        else:
            if not stat.S_ISREG(st.st_mode):
                raise _HttpError(409, "The target exists and is not a regular file")
            created, existing = False, st.st_size
        if created:
            self.check_new_file(job_rel_dir)
        # A first look, to refuse early; what the upload replaces is read again under the lock.
        limit = max(0, self.input_limit(job_rel_dir)) + existing
        length = request.content_length
        # With a Content-Length, stream_into reads exactly that many bytes: read the server's own
        # input stream, not werkzeug's wrapper around it (two more copies of every block).
        stream = request.environ["wsgi.input"] if length is not None else request.stream

        def commit(total: int, replace: Callable[[], None]) -> None:
            # The body has been read: a refusal now (the limits, a jobStart meanwhile) must not
            # drain it again, which read past Content-Length from the server's own input stream.
            request.environ[_BODY_READ] = True

            def change() -> AreaTally:
                nonlocal created
                replaced = _regular_file(path, "The target exists and is not a regular file")
                created = replaced is None
                return AreaTally(total, 1) if replaced is None else AreaTally(total - replaced, 0)

            self.record_bytes(job_rel_dir, change, replace)
            request.environ[STORED_BYTES] = total

        try:
            self.storage.stream_into(path, stream, length, limit, prepare=create_input, commit=commit)
        except SandboxError as exc:
            if not isinstance(exc.__cause__, FileNotFoundError):
                raise
            # removed while the file arrived: the job's area (purged, cancelled), or the directory
            if not (self.storage.root / job_rel_dir / "input").is_dir():
                raise UnknownJobAreaError(f"No such job sandbox: /{job_rel_dir}/input (removed during the upload)") \
                    from None
            raise _HttpError(409, "The parent directory was removed during the upload") from None
        if created:
            return _text(201, "Created")
        return Response(status=204)

    def _delete(self, job_rel_dir: str, path: Path) -> Response:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise _HttpError(404, "No such file") from None
        if stat.S_ISDIR(st.st_mode):
            try:
                os.rmdir(path)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise _HttpError(409, "The directory is not empty") from None
                raise
            return Response(status=204)

        def change() -> AreaTally:  # the size read under the lock: a PUT may have replaced the file
            size = _regular_file(path, "The file was replaced by a directory")
            if size is None:
                raise _HttpError(404, "No such file")
            return AreaTally(-size, -1)

        self.record_bytes(job_rel_dir, change, lambda: os.unlink(path))
        return Response(status=204)

    def _move(self, request: Request, job_rel_dir: str, path: Path) -> Response:
        destination = request.headers.get("Destination")
        if not destination:
            raise _HttpError(400, "MOVE needs a Destination header")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in destination):  # urlsplit would drop some silently
            raise SandboxNameError("Sandbox paths may not contain control characters (newline, CR, ESC...)")
        try:
            dest_path = unquote(urlsplit(destination).path)
        except ValueError:  # an unclosed or non-address "[...]" host
            raise SandboxPathError("Bad MOVE destination") from None
        prefix = request.script_root
        if prefix and dest_path.startswith(prefix + "/"):
            dest_path = dest_path[len(prefix) :]
        if dest_path.startswith("//") or not dest_path.startswith("/"):
            raise SandboxPathError("Bad MOVE destination")
        dest_job, dest_area, dest_rest = self.storage.split_path(dest_path[1:])
        self._check_names(dest_rest, self.max_name_bytes)
        if dest_job != job_rel_dir or dest_area != "input" or not dest_rest:
            raise SandboxPathError("MOVE is allowed only inside the same job's input sandbox")
        target = self.storage.resolve(dest_path[1:]).path
        if not os.path.lexists(path):
            raise _HttpError(404, "No such file")
        if stat.S_ISDIR(os.lstat(path).st_mode):
            # A moved directory takes its depth below the destination: moves chained past
            # MAX_PATH_DEPTH, which a PUT of the same path is refused.
            raise SandboxPathError("MOVE moves files only, not directories")
        if not target.parent.is_dir():
            raise _HttpError(409, "The destination directory does not exist")
        existed = os.path.lexists(target)
        if existed and request.headers.get("Overwrite", "T").upper() == "F":
            raise _HttpError(412, "The destination exists")
        if existed and os.path.isdir(target) and not os.path.islink(target):
            raise _HttpError(409, "The destination is a directory")
        if existed and _same_file(path, target):
            # A rename onto itself (or onto another link to the file) changes nothing: rename(2)
            # leaves both names. Counting the destination as overwritten took its bytes off the
            # counter while they stayed on disk.
            return Response(status=204)

        def change() -> AreaTally:  # read under the lock: a PUT or DELETE may have come meanwhile
            nonlocal existed
            if not os.path.lexists(path):
                raise _HttpError(404, "No such file")
            if stat.S_ISDIR(os.lstat(path).st_mode):  # made a directory since the check above
                raise SandboxPathError("MOVE moves files only, not directories")
            existed = os.path.lexists(target)
            overwritten = _regular_file(target, "The destination is a directory")
            return AreaTally(0, 0) if overwritten is None else AreaTally(-overwritten, -1)

        self.record_bytes(job_rel_dir, change, lambda: os.replace(path, target))
        return Response(status=204) if existed else _text(201, "Created")


def _mkdir(path: Path, create_input: Callable[[], object] | None, check_new: Callable[[], None],
           record: Callable[[Callable[[], AreaTally], Callable[[], None]], None]) -> Response:
    """PUT of a directory; ``create_input`` (when given) makes the missing ``input/`` first. A new
    directory counts as a file of the input sandbox (``check_new``: ``max_input_sandbox_files``),
    so directories cannot fill the file system's inodes either: checked early, and again with
    the owner's counter locked (``record``, the app's ``record_bytes`` for this job), so that
    directory PUTs that each passed the early check cannot go past the limit together."""
    if create_input is None and not path.parent.is_dir():
        raise _HttpError(409, "The parent directory does not exist")
    if not os.path.lexists(path):
        check_new()
    made = False

    def change() -> AreaTally:
        return AreaTally(0, 0 if os.path.lexists(path) else 1)

    def make() -> None:
        nonlocal made
        if create_input is not None:
            create_input()
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
            made = True

    record(change, make)
    if made:
        return _text(201, "Created")
    if stat.S_ISDIR(os.lstat(path).st_mode):
        return _text(200, "Directory exists")
    raise _HttpError(409, "A file with that name exists")


def _regular_file(path: Path, directory_refusal: str) -> int | None:
    """Bytes of the regular file at ``path``; None when nothing is there, and 0 for what is
    neither a file nor a directory (not counted).

    Raises:
        _HttpError: 409 with ``directory_refusal`` for a directory.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        raise _HttpError(409, directory_refusal)
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _same_file(path: Path, other: Path) -> bool:
    """True when ``path`` and ``other`` name the same file (neither followed if a symlink)."""
    try:
        return os.path.samestat(os.lstat(path), os.lstat(other))
    except FileNotFoundError:
        return False


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def _status_of(exc: WMProxyError) -> int:
    for cls, status in _STATUS_OF:
        if isinstance(exc, cls):
            return status
    return 500


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = (message.splitlines()[0] if message else "") + "\n"
    response = Response(body, status=status, content_type="text/plain; charset=utf-8")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


#: Bytes of a refused upload read and discarded so that the client, which may still be
#: sending (gunicorn answers ``Expect: 100-continue`` itself), gets the error response
#: instead of a reset connection, and its kept-alive connection serves its next request.
#: Larger bodies are cut off. Only for callers the site admits: the upload of a caller that
#: is not authenticated or not admitted is not read at its pace (its connection is closed
#: after the answer, ``wmproxy.soap.tls_worker.close_connection``, ``docs/load.md``).
MAX_DRAIN = 64 * 1024 * 1024


def _drain(request: Request) -> None:
    remaining = MAX_DRAIN
    try:
        while remaining > 0:
            chunk = request.stream.read(min(65536, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
    except Exception:  # noqa: BLE001 - a cut connection, a malformed chunk: nothing more to read
        return
