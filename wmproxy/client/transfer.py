"""HTTPS sandbox transfers: PUT input files, GET output files, streaming, with progress.

The sandbox URIs come from getSandboxDestURI / getOutputFileList (``https://`` only;
``wmproxy-behaviour.md`` §4.3, §4.5). The same authenticated session as the SOAP calls
is used.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote, unquote, urlsplit

import requests

from wmproxy.client.faults import WMProxyClientError, redirect_error, translated_errors

#: called with the number of bytes just transferred
Progress = Callable[[int], None]

CHUNK = 64 * 1024


class _ProgressReader:
    """File wrapper that reports each read; ``__len__`` makes requests send Content-Length."""

    def __init__(self, fh: BinaryIO, size: int, progress: Progress | None) -> None:
        self._fh = fh
        self._size = size
        self._progress = progress

    def __len__(self) -> int:
        return self._size

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        if data and self._progress is not None:
            self._progress(len(data))
        return data


def upload_file(
    session: requests.Session,
    dest_uri: str,
    path: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    timeout: float | None = None,
) -> str:
    """PUT a local file to ``<dest_uri>/<basename>``.

    Args:
        session: an authenticated session (:func:`wmproxy.client.session.grid_session`).
        dest_uri: an https input sandbox directory URI from getSandboxDestURI.
        path: the local file.
        progress: called with byte counts as the body is sent.
        timeout: seconds to wait for the server between bytes.

    Returns:
        The URI written.

    Raises:
        WMProxyClientError: ``TransferError`` for an unreadable file or a non-2xx
            status, ``ConnectionError`` for network/TLS failures.
    """
    path = Path(path)
    target = f"{dest_uri.rstrip('/')}/{quote(path.name, safe='', errors='surrogateescape')}"
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise WMProxyClientError("TransferError", f"cannot read {path}: {exc.strerror}", None, "upload") from None
    with fh, translated_errors("upload"):
        size = os.fstat(fh.fileno()).st_size
        response = session.put(
            target,
            data=_ProgressReader(fh, size, progress),
            headers={"Content-Type": "application/octet-stream"},
            timeout=timeout,
            allow_redirects=False,
        )
        _check(response, "upload", target)
    return target


def local_path(directory: str | os.PathLike[str], name: str, uri: str | None = None) -> Path:
    """``directory/name`` for a ``name`` the server gave (the decoded last segment of a file
    URI, a node name from a JDL), refused unless it stays inside ``directory``.

    A name is refused when it is empty, ``.`` or ``..``, or holds ``/``, ``\\`` or NUL; the
    path is refused when its resolved form (links followed) is not directly in the resolved
    ``directory``, e.g. an existing link of that name pointing elsewhere.

    Args:
        directory: the directory the user chose (need not exist yet).
        name: the name to put in it.
        uri: where the name came from, for the error.

    Raises:
        WMProxyClientError: ``TransferError`` naming the refused name.
    """
    where = f" of {uri}" if uri else ""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        shown = "an empty name" if not name else f"the name {name!r}"
        raise WMProxyClientError(
            "TransferError", f"refused {shown}{where}: not a plain file name", None, "download")
    base = Path(os.path.realpath(directory))
    path = Path(directory) / name
    if Path(os.path.realpath(path)).parent != base:
        raise WMProxyClientError(
            "TransferError", f"refused the name {name!r}{where}: {path} leads outside {directory}", None, "download")
    return path


class Directory(os.PathLike[str]):
    """A local directory that files are written into through one descriptor: opened on first use
    (:meth:`fileno`) and kept until :meth:`close`, so that once it is open, a path component
    swapped for a symbolic link (in a directory others can write, such as ``/tmp/shared``) cannot
    redirect the files written through it. The directory itself is opened with ``O_NOFOLLOW``;
    a top directory that is a link is followed only when the link is the user's own or root's (as
    the kernel's ``fs.protected_symlinks`` does in sticky directories: ``--dir ~/results`` linking
    to a scratch disk works), and one another user made is refused. A path (``os.fspath``) for
    the messages and the files' names.

    A top directory (``Directory(path)``) is created with its missing parents first (by path: a
    component swapped before it is opened is the path the user named); a child
    (:meth:`child`) is created and opened through its parent's descriptor.
    """

    def __init__(self, path: str | os.PathLike[str], *, fd: int | None = None,
                 parent: Directory | None = None, name: str = "") -> None:
        self.path = os.fspath(path)
        self._fd = fd
        self._error: OSError | None = None
        self._parent = parent
        self._name = name
        self._children: list[Directory] = []

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def child(self, name: str) -> Directory:
        """The directory ``name`` (a plain name) in this one, made (umask-mode 0777) and opened
        through this one's descriptor on first use."""
        child = Directory(os.path.join(self.path, name), parent=self, name=name)
        self._children.append(child)
        return child

    def fileno(self) -> int:
        """The descriptor, the directory opened (and made) now if it was not yet.

        Raises:
            OSError: it cannot be made or opened (the same error each time until
                :meth:`close`): a link gives ``ELOOP`` ("is a symbolic link, not followed"; a
                top directory that is a link of another user's "is a symbolic link of another
                user, not followed"), something else than a directory ``ENOTDIR``.
        """
        if self._fd is None:
            if self._error is not None:
                raise self._error
            try:
                self._fd = self._open()
            except OSError as exc:
                self._error = exc
                raise
        return self._fd

    def _open(self) -> int:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        if self._parent is None:
            os.makedirs(self.path, exist_ok=True)
            where: int | None = None
            name = self.path
        else:
            where, name = self._parent.fileno(), self._name
            if not name or name in (".", "..") or "/" in name:
                raise OSError(errno.EINVAL, f"{name!r} is not a plain directory name")
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=where)
        try:
            return os.open(name, flags, dir_fd=where)
        except OSError:
            link: os.stat_result | None = None
            with contextlib.suppress(OSError):
                found = os.lstat(name, dir_fd=where)
                link = found if stat.S_ISLNK(found.st_mode) else None
            if link is None:
                raise
            if self._parent is not None:  # a child: never followed, whoever made it
                raise OSError(errno.ELOOP, f"{self.path} is a symbolic link, not followed") from None
            if link.st_uid in (os.geteuid(), 0):
                return os.open(name, flags & ~os.O_NOFOLLOW)
            raise OSError(errno.ELOOP, f"{self.path} is a symbolic link of another user, not followed") from None

    def exists(self, name: str) -> bool:
        """Whether ``name`` is known to be in the directory (a link, even a dangling one, is).

        False when that cannot be told: the directory cannot be opened, or ``name`` cannot be
        looked up in it (``EACCES`` in a directory without search permission). Writing there
        then fails with its own error (``Permission denied``), never replaces a file (a download
        without ``replace`` publishes with a hard link), and the message does not claim a file
        that may not exist.
        """
        try:
            os.lstat(name, dir_fd=self.fileno())
        except OSError:
            return False
        return True

    def close(self) -> None:
        """Close the descriptor (and the children's) and forget an error of opening it: a later
        use opens (or makes) the directory again."""
        for child in self._children:
            child.close()
        self._children.clear()
        self._error = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def download_file(
    session: requests.Session,
    uri: str,
    directory: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    timeout: float | None = None,
    size: int | None = None,
    limit: int | None = None,
    replace: bool = True,
) -> Path:
    """GET ``uri`` into ``<directory>/<last path segment>``, atomically (temp file + rename).

    The percent-decoded last segment must be a plain file name (:func:`local_path`); the
    temporary ``.wmproxy-<random>.part`` beside it is created under a new name, never through a
    link, and only it is removed (never a file of the directory it did not create); everything
    is written through one descriptor of the directory (a :class:`Directory`, or one opened
    here): a path component swapped for a link meanwhile does not redirect it. With ``size``,
    the body is read up to that many bytes: a server sending (or announcing) more is refused and
    nothing is stored; ``limit`` bounds it the same way when the service listed no size.

    Args:
        session: an authenticated session.
        uri: an https output sandbox file URI from getOutputFileList.
        directory: created if missing; a :class:`Directory` is used as it is (opened if not yet).
        progress: called with byte counts as the body arrives.
        timeout: seconds to wait for the server between bytes.
        size: the size the service listed for the file (getOutputFileList); None: unbounded.
        limit: the most bytes to store (:class:`TransferLimitError` beyond); None: unbounded.
        replace: whether a file of that name in the directory is replaced; without, it is kept
            (the file is published with a hard link, which never replaces one).

    Returns:
        The local file written.

    Raises:
        WMProxyClientError: ``TransferError`` for a non-2xx status, a URI without a plain
            file name (nothing is fetched), a body that broke off or is larger than ``size``
            or ``limit`` (:class:`TransferLimitError`), a file already there (without
            ``replace``), or a local write error; ``ConnectionError`` for network/TLS failures
            before the body and for a redirect (never followed).
    """
    name = unquote(urlsplit(uri).path.rsplit("/", 1)[-1])
    folder = directory if isinstance(directory, Directory) else Directory(directory)
    try:
        target = local_path(folder, name, uri)
        with translated_errors("download"), \
                session.get(uri, stream=True, timeout=timeout, allow_redirects=False) as response:
            _check(response, "download", uri)
            _receive(response, uri, folder, name, target, progress, size, limit, replace)
    finally:
        if folder is not directory:
            folder.close()
    return target


def _receive(response: requests.Response, uri: str, folder: Directory, name: str, target: Path,
             progress: Progress | None, size: int | None, limit: int | None, replace: bool) -> None:
    """:func:`download_file` once the server answered: the body into a temporary file of ``folder``
    created under a new random name (:func:`_create_partial`), then published as ``name``. Only
    that temporary file is ever removed: never a name this call did not create (a file stored
    before, the user's own)."""
    declared = response.headers.get("Content-Length", "")
    if size is not None and declared.isdigit() and int(declared) > size:
        raise _larger(uri, size, f"announced {declared} bytes")
    if limit is not None and declared.isdigit() and int(declared) > limit:
        raise _over_limit(uri, limit, f"announced {declared} bytes")
    partial: str | None = None
    where: int | None = None
    try:
        where = folder.fileno()
        fd, partial = _create_partial(where)
        with os.fdopen(fd, "wb") as out:
            received = 0
            for chunk in response.iter_content(CHUNK):
                received += len(chunk)
                if size is not None and received > size:
                    raise _larger(uri, size, "sent more")
                if limit is not None and received > limit:
                    raise _over_limit(uri, limit, "sent more")
                out.write(chunk)
                if progress is not None:
                    progress(len(chunk))
        _publish(where, partial, name, target, uri, replace)
    except WMProxyClientError:
        _discard(where, partial)
        raise
    except requests.RequestException as exc:  # an OSError too: the body broke off
        _discard(where, partial)
        raise WMProxyClientError(
            "TransferError", f"the download of {uri} broke off: {_broken_reason(exc)}", None, "download"
        ) from None
    except OSError as exc:
        _discard(where, partial)
        raise WMProxyClientError(
            "TransferError", f"cannot write {target}: {exc.strerror}", None, "download"
        ) from None


#: how many random names :func:`_create_partial` tries before giving up
PARTIAL_ATTEMPTS = 100


def _create_partial(where: int) -> tuple[int, str]:
    """A new empty file ``.wmproxy-<random>.part`` in the directory ``where``, opened for writing:
    ``O_EXCL`` (never an existing name, nor through a link), another random name on ``EEXIST``.
    The name does not hold the file's own (a name near the length limit still fits).

    Returns:
        The descriptor and the name.

    Raises:
        OSError: the file cannot be created (``EEXIST`` after :data:`PARTIAL_ATTEMPTS` names).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(PARTIAL_ATTEMPTS):
        partial = f".wmproxy-{secrets.token_hex(8)}.part"
        try:
            return os.open(partial, flags, 0o666, dir_fd=where), partial
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free name for a temporary file")


def _publish(where: int, partial: str, name: str, target: Path, uri: str, replace: bool) -> None:
    """Rename ``partial`` to ``name`` in the directory ``where``; without ``replace``, link it
    there (which fails on a name taken, even by a link), falling back to a checked rename on a
    file system without hard links."""
    if replace:
        os.replace(partial, name, src_dir_fd=where, dst_dir_fd=where)
        return
    try:
        os.link(partial, name, src_dir_fd=where, dst_dir_fd=where, follow_symlinks=False)
    except FileExistsError:
        raise _taken(target, uri) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS):
            raise
        if _exists(where, name):
            raise _taken(target, uri) from None
        os.replace(partial, name, src_dir_fd=where, dst_dir_fd=where)
        return
    with contextlib.suppress(OSError):  # the file is stored under its name: the temporary one goes
        os.unlink(partial, dir_fd=where)


def _taken(target: Path, uri: str) -> WMProxyClientError:
    """The refusal of a download whose name is taken in its directory (without ``replace``)."""
    return WMProxyClientError("TransferError", f"{target} already exists: it is kept and {uri} is not stored",
                              None, "download")


def _exists(where: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=where)
    except FileNotFoundError:
        return False
    return True


def _discard(where: int | None, partial: str | None) -> None:
    """Remove the temporary file this call created (None: none was, e.g. the directory is what
    failed)."""
    if where is not None and partial is not None:
        with contextlib.suppress(OSError):
            os.unlink(partial, dir_fd=where)


class TransferLimitError(WMProxyClientError):
    """A download refused for being larger than the ``limit`` it was given."""


def _over_limit(uri: str, limit: int, how: str) -> TransferLimitError:
    return TransferLimitError(
        "TransferError", f"refused {uri}: larger than the {limit} bytes allowed, it {how}; nothing stored", None,
        "download")


def _broken_reason(exc: requests.RequestException) -> str:
    """The one-line reason of a body that broke off (requests wraps urllib3's error, whose first
    argument is the sentence: ``Connection broken: IncompleteRead(...)``)."""
    cause = exc.args[0] if exc.args else exc
    if isinstance(cause, BaseException) and cause.args and isinstance(cause.args[0], str):
        cause = cause.args[0]
    return " ".join(str(cause).split()) or type(exc).__name__


def _larger(uri: str, size: int, how: str) -> WMProxyClientError:
    return WMProxyClientError(
        "TransferError", f"refused {uri}: the service listed it with {size} bytes and {how}; nothing stored", None,
        "download")


def _check(response: requests.Response, method: str, uri: str) -> None:
    location = response.headers.get("Location")
    if 300 <= response.status_code < 400 and location is not None:  # a session other than grid_session's
        raise redirect_error(urlsplit(uri).netloc or uri, response.status_code, location, method)
    if not 200 <= response.status_code < 300:
        status = " ".join(f"HTTP {response.status_code} {response.reason or ''}".split())
        raise WMProxyClientError("TransferError", f"{status} for {uri}", None, method)
