"""Input and output sandbox entries of a JDL (``wmproxy-behaviour.md`` §3.1 step 12, §4).

An ``InputSandbox`` entry is a local path (uploaded by the client into the job's
input area under its file name), a ``file://`` URI (local too) or a remote URI that
the job fetches itself. ``OutputSandbox`` and ``Std*`` names are relative to the
job's work directory. Pure: no I/O.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from urllib.parse import quote, unquote

from wmproxy.domain import service_file, service_file_kind
from wmproxy.errors import InvalidArgumentError, JdlError

URI_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
WILDCARDS = ("*", "?", "[")
_LOCAL_SCHEME = "file"
#: A URI path segment in the form :func:`file_uri` writes a name: unreserved characters and
#: ``%XX`` escapes only.
_ENCODED_SEGMENT = re.compile(r"(?:[A-Za-z0-9_.~-]|%[0-9A-Fa-f]{2})+")


def is_remote_uri(entry: str) -> bool:
    """Whether a sandbox entry names a remote file (``gsiftp://``, ``https://``...).

    ``file://`` names a file on the client's machine, like a plain path: the client
    uploads it (the gLite UI treats ``file://`` as its local protocol).

    Args:
        entry: an ``InputSandbox`` entry as written in the JDL.

    Returns:
        True for ``<scheme>://...`` with a scheme other than ``file``.
    """
    match = URI_SCHEME.match(entry)
    return match is not None and match.group(1).lower() != _LOCAL_SCHEME


def file_name(entry: str) -> str:
    """File name of a sandbox entry: a path, a ``file://`` URI or a remote URI."""
    match = URI_SCHEME.match(entry)
    path = entry[match.end():] if match else entry
    return posixpath.basename(path.rstrip("/"))


def file_uri(area_uri: str, name: str) -> str:
    """``<area_uri>/<name>`` with ``name`` percent-encoded (``#``, ``%``, ``?``, spaces...): the
    sandbox edge serves the request path decoded, so ``res%231.txt`` is the file ``res#1.txt``.

    Args:
        area_uri: a job area's URI (its ``input``, ``output`` or ``peek`` directory).
        name: a file name in it, as stored (bytes not UTF-8 kept as they are).
    """
    return f"{area_uri}/{quote(name, safe='', errors='surrogateescape')}"


def uri_file_name(segment: str) -> str:
    """The file name a URI's last path segment names: the inverse of :func:`file_uri`.

    A segment is decoded only when it is exactly what :func:`file_uri` makes of the decoded
    name, and that name is one a file can have (not empty, ``.`` or ``..``, no ``/`` or NUL).
    Any other segment is the name as it is: a registered JDL stored before its
    ``InputSandbox`` names were encoded (``res#1.txt``, ``a b.txt``, ``a%41.txt``, ``x%00y``),
    or a server that does not encode them. Only an old name that is also the encoding of
    another usable name (``50%25.txt``) is ambiguous, and is decoded.
    """
    if not _ENCODED_SEGMENT.fullmatch(segment):
        return segment
    name = unquote(segment, errors="surrogateescape")
    if (name in ("", ".", "..") or "/" in name or "\x00" in name
            or quote(name, safe="", errors="surrogateescape") != segment):
        return segment
    return name


def local_file_names(entries: Iterable[str]) -> list[str]:
    """The file names the client must upload for ``entries`` (§3.4, §4.1).

    Returns:
        File names of the local (non-remote) entries, in order, each once.
    """
    names: list[str] = []
    for entry in entries:
        if not is_remote_uri(entry):
            name = file_name(entry)
            if name not in names:
                names.append(name)
    return names


def has_wildcards(names: Iterable[str]) -> bool:
    """Whether any ``OutputSandbox`` name has a shell wildcard (``*``, ``?``, ``[``)."""
    return any(w in name for name in names for w in WILDCARDS)


def check_work_dir_name(attribute: str, name: str) -> None:
    """Refuse a ``Std*``/``OutputSandbox`` name that would leave the job's work directory.

    Args:
        attribute: the attribute holding ``name`` (for the message).
        name: a file name relative to the work directory.

    Raises:
        InvalidArgumentError: ``name`` is absolute or has a ``..`` component, or it names
            what the service keeps in the work directory (:func:`~wmproxy.domain.service_file`:
            the job's proxy ``user.proxy``, ``.wmproxy/``), which no output sandbox gives back
            and which a job's standard output or error would write over; the message names the
            attribute.
    """
    if name.startswith("/") or ".." in name.split("/"):
        raise InvalidArgumentError(
            f"Attribute {attribute}: {name!r} must be a path inside the job's work directory "
            "(no absolute path, no '..')"
        )
    if (why := service_file(name)) is not None:
        raise InvalidArgumentError(f"Attribute {attribute}: {name!r} is reserved: {why}")


def check_input_sandbox_name(entry: str) -> None:
    """Refuse an ``InputSandbox`` entry whose file in the job's work directory would be one the
    service keeps there (:func:`~wmproxy.domain.service_file`). An entry is staged into the work
    directory under its file name (:func:`file_name`: ``dir/user.proxy`` is ``user.proxy``), where
    the job's proxy ``user.proxy`` (written after the input sandbox, over it: the payload read the
    owner's credential instead of its file) and the state directory ``.wmproxy`` (the staging
    failed) are.

    An entry whose file name is ``.`` or ``..`` (``dir/.``, ``user.proxy/..``) names no file to
    stage and is refused too (the staging failed on it, "has not been uploaded").

    Raises:
        InvalidArgumentError: the message names the attribute, the entry and its file name.
    """
    name = file_name(entry)
    if name in (".", ".."):
        raise InvalidArgumentError(f"Attribute InputSandbox: {entry!r} names no file: its file name would be {name!r}")
    if (what := service_file_kind(name)) is not None:
        raise InvalidArgumentError(
            f"Attribute InputSandbox: {entry!r} is reserved: it would be staged into the job's work directory "
            f"as {name!r}, which is {what}")


def isb_union(groups: Iterable[Iterable[str]]) -> list[str]:
    """Every ``InputSandbox`` entry of ``groups`` once, in order (for one shared input area).

    Raises:
        JdlError: an empty entry, or two different local entries with the same file
            name (``a/x.txt``, ``b/x.txt``) that one input area cannot hold.
    """
    entries: dict[str, None] = {}  # insertion-ordered set
    by_name: dict[str, str] = {}
    for group in groups:
        for entry in group:
            if entry in entries:
                continue
            if not entry.strip():
                raise JdlError("Attribute InputSandbox contains an empty file name")
            if not is_remote_uri(entry):
                name = file_name(entry)
                if name in by_name:
                    raise JdlError(
                        f"InputSandbox entries {by_name[name]} and {entry} have the same "
                        f"file name {name}; the nodes of a job share one input area"
                    )
                by_name[name] = entry
            entries[entry] = None
    return list(entries)
