"""HTTPS sandbox transfers: PUT input files, GET output files, streaming, with progress.

The sandbox URIs come from getSandboxDestURI / getOutputFileList (``https://`` only;
``wmproxy-behaviour.md`` §4.3, §4.5). The same authenticated session as the SOAP calls
is used.
"""

from __future__ import annotations

import contextlib
import os
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


def download_file(
    session: requests.Session,
    uri: str,
    directory: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    timeout: float | None = None,
    size: int | None = None,
) -> Path:
    """GET ``uri`` into ``<directory>/<last path segment>``, atomically (temp file + rename).

    The percent-decoded last segment must be a plain file name (:func:`local_path`); the
    temporary ``.<name>.part`` beside it is created afresh, never through a link. With ``size``,
    the body is read up to that many bytes: a server sending (or announcing) more is refused and
    nothing is stored.

    Args:
        session: an authenticated session.
        uri: an https output sandbox file URI from getOutputFileList.
        directory: created if missing.
        progress: called with byte counts as the body arrives.
        timeout: seconds to wait for the server between bytes.
        size: the size the service listed for the file (getOutputFileList); None: unbounded.

    Returns:
        The local file written.

    Raises:
        WMProxyClientError: ``TransferError`` for a non-2xx status, a URI without a plain
            file name (nothing is fetched), a body that broke off or is larger than ``size``,
            or a local write error; ``ConnectionError`` for network/TLS failures before the body
            and for a redirect (never followed).
    """
    name = unquote(urlsplit(uri).path.rsplit("/", 1)[-1])
    target = local_path(directory, name, uri)
    directory = Path(directory)
    partial = directory / f".{name}.part"
    with translated_errors("download"), \
            session.get(uri, stream=True, timeout=timeout, allow_redirects=False) as response:
        _check(response, "download", uri)
        declared = response.headers.get("Content-Length", "")
        if size is not None and declared.isdigit() and int(declared) > size:
            raise _larger(uri, size, f"announced {declared} bytes")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            partial.unlink(missing_ok=True)
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            with os.fdopen(fd, "wb") as out:
                received = 0
                for chunk in response.iter_content(CHUNK):
                    received += len(chunk)
                    if size is not None and received > size:
                        raise _larger(uri, size, "sent more")
                    out.write(chunk)
                    if progress is not None:
                        progress(len(chunk))
            partial.replace(target)
        except WMProxyClientError:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            raise
        except requests.RequestException as exc:  # an OSError too: the body broke off
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
            raise WMProxyClientError(
                "TransferError", f"the download of {uri} broke off: {_broken_reason(exc)}", None, "download"
            ) from None
        except OSError as exc:
            with contextlib.suppress(OSError):  # the directory may be what failed (a file)
                partial.unlink(missing_ok=True)
            raise WMProxyClientError(
                "TransferError", f"cannot write {target}: {exc.strerror}", None, "download"
            ) from None
    return target


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
