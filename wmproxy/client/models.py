"""Plain values returned by :class:`~wmproxy.client.WMProxyClient` (no zeep objects)."""

from __future__ import annotations

import re

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True)
class JobIds:
    """``JobIdStructType``: a job id and, for DAGs/collections/parametric jobs, its nodes.

    Attributes:
        id: the job id, ``https://<lb host>:<port>/<unique>``.
        name: node name; None for the root or a simple job.
        path: relative input sandbox directory (``SandboxDir/<2ch>/<enc>/input``) or None.
        children: one entry per node, in the server's order.
    """

    id: str
    name: str | None = None
    path: str | None = None
    children: tuple[JobIds, ...] = ()

    def walk(self) -> Iterator[JobIds]:
        """This entry, then every descendant depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class JobStatus:
    """``JobStatusStructType``: a job's L&B state name and those of its nodes.

    The service sends ``status`` as the state name followed, for ended jobs, by a
    parenthesised detail (``Done (Exit Code 3)``, ``Aborted (<reason>)``); ``state``,
    ``exit_code`` and ``reason`` are those parts (see :func:`split_status`).
    """

    job_id: str
    status: str
    children: tuple[JobStatus, ...] = ()
    exit_code: int | None = None
    reason: str | None = None

    @property
    def state(self) -> str:
        return self.status.split(" (", 1)[0]

    @property
    def display(self) -> str:
        """The state as glite-wms-job-status shows it: ``Done (Success)``, ``Done (Exit Code !=0)``."""
        if self.state == "Done":
            if self.exit_code is None:
                return self.status
            return "Done (Success)" if self.exit_code == 0 else "Done (Exit Code !=0)"
        return self.state


_EXIT_CODE = re.compile(r"^Exit Code (-?\d+)$")


def split_status(status: str) -> tuple[int | None, str | None]:
    """``(exit code, reason)`` carried by a status string such as ``Done (Exit Code 3)``."""
    state, _, rest = status.partition(" (")
    if not rest.endswith(")"):
        return None, None
    detail = rest[:-1]
    if state == "Done":
        match = _EXIT_CODE.match(detail)
        if match:
            return int(match.group(1)), None
        return (0 if detail == "Success" else None), None
    return None, detail or None


class OutputFile(NamedTuple):
    """One ``StringAndLongType`` of getOutputFileList: file URI and size in bytes."""

    uri: str
    size: int


@dataclass(frozen=True)
class NewProxyRequest:
    """delegation-2 ``NewProxyReq``: a PEM CSR and the delegation id the service chose."""

    proxy_request: str
    delegation_id: str


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _items(obj: Any, name: str) -> list[Any]:
    """The repeated child ``name`` of a one-field wrapper type.

    zeep hands back such wrappers (``StringList``, ``StringAndLongList``...) either
    as an object with the field or already unwrapped as a plain list.
    """
    if isinstance(obj, (list, tuple)):
        return list(obj)
    return _list(_get(obj, name))


def job_ids_from(obj: Any) -> JobIds:
    """Convert a zeep ``JobIdStructType`` value (object or dict) recursively."""
    return JobIds(
        id=_get(obj, "id") or "",
        name=_get(obj, "name") or None,
        path=_get(obj, "path") or None,
        children=tuple(job_ids_from(c) for c in _list(_get(obj, "childrenJob")) if c is not None),
    )


def job_status_from(obj: Any) -> JobStatus:
    """Convert a zeep ``JobStatusStructType`` value recursively."""
    status = _get(obj, "status") or ""
    exit_code, reason = split_status(status)
    return JobStatus(
        job_id=_get(obj, "jobid") or "",
        status=status,
        children=tuple(job_status_from(c) for c in _list(_get(obj, "childrenJob")) if c is not None),
        exit_code=exit_code,
        reason=reason,
    )


def string_list_from(obj: Any) -> list[str]:
    """Convert a ``StringList`` (``Item*``) to a list of str."""
    return [str(item) for item in _items(obj, "Item") if item is not None]


def dest_uris_from(obj: Any) -> dict[str, list[str]]:
    """Convert ``DestURIsStructType`` to ``{job id: [uri, ...]}``, job first, nodes after."""
    return {
        str(_get(item, "id")): [str(u) for u in _list(_get(item, "Item"))]
        for item in _items(obj, "Item")
    }


def output_files_from(obj: Any) -> list[OutputFile]:
    """Convert ``StringAndLongList`` (``file*``) to a list of :class:`OutputFile`."""
    return [OutputFile(str(_get(f, "name")), int(_get(f, "size") or 0)) for f in _items(obj, "file")]


def new_proxy_request_from(obj: Any) -> NewProxyRequest:
    """Convert a delegation-2 ``NewProxyReq``."""
    return NewProxyRequest(_get(obj, "proxyRequest") or "", _get(obj, "delegationID") or "")
