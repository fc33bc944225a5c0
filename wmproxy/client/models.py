"""Plain values returned by :class:`~wmproxy.client.WMProxyClient` (no zeep objects)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from wmproxy.client.faults import WMProxyClientError


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


def job_ids_from(obj: Any, method: str | None = None) -> JobIds:
    """Convert a zeep ``JobIdStructType`` value (object or dict) recursively, each id (the
    nodes' too) checked as a job id (:func:`wmproxy.domain.parse_job_id`, the service's own
    check): the ids are printed, written one a line to ``submit -o`` files and read back from
    them, so an id with a line break in it would forge lines (another job id, a status line).

    Raises:
        WMProxyClientError: ``InvalidResponse`` naming the id that is not a job id (``method``:
            the operation whose reply it is).
    """
    from wmproxy.domain import parse_job_id
    from wmproxy.errors import InvalidArgumentError

    job_id = str(_get(obj, "id") or "")
    try:
        parse_job_id(job_id)
    except InvalidArgumentError:
        raise WMProxyClientError("InvalidResponse", f"the service returned {job_id!r} as a job id, which is not one "
                                 "(https://<host>:<port>/<ID>): the reply is refused", None, method) from None
    return JobIds(
        id=job_id,
        name=_get(obj, "name") or None,
        path=_get(obj, "path") or None,
        children=tuple(job_ids_from(c, method) for c in _list(_get(obj, "childrenJob")) if c is not None),
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


# --- quota, matchmaking, templates, ACLs, proxy info, perusal ---------------------------


class Quota(NamedTuple):
    """getTotalQuota/getFreeQuota: soft and hard limit in bytes (-1 when there is no quota)."""

    soft: int
    hard: int


class CEMatch(NamedTuple):
    """One ``StringAndLongType`` of jobListMatch: a computing element id and its rank."""

    ce_id: str
    rank: int


@dataclass(frozen=True)
class GraphNode:
    """``GraphStructType`` for getDAGTemplate: a node name and the nodes depending on it.

    The root is usually unnamed (``name=None``, sent as ``xsi:nil``); every named node
    becomes a DAG node and every (named parent, child) edge a dependency, e.g.
    ``GraphNode(None, (GraphNode("a", (GraphNode("b"),)),))`` is ``a -> b``.
    """

    name: str | None
    children: tuple[GraphNode, ...] = ()


def _epoch(value: str) -> datetime | None:
    """A decimal UNIX epoch string (as ProxyInfoStructType carries) as an aware UTC datetime."""
    try:
        return datetime.fromtimestamp(int(value.strip()), tz=UTC)
    except (ValueError, OverflowError, OSError, AttributeError):
        return None


class _EpochValidity:
    """``start``/``end`` of a value whose ``start_time``/``end_time`` are epoch strings."""

    start_time: str
    end_time: str

    @property
    def start(self) -> datetime | None:
        """``start_time`` as an aware UTC datetime (None if not an epoch number)."""
        return _epoch(self.start_time)

    @property
    def end(self) -> datetime | None:
        """``end_time`` as an aware UTC datetime (None if not an epoch number)."""
        return _epoch(self.end_time)


@dataclass(frozen=True)
class VOInfo(_EpochValidity):
    """``VOProxyInfoStructType``: one VOMS attribute certificate of a proxy.

    Attributes:
        user, user_ca: holder DN and its CA (slash form).
        server, server_ca: VOMS server DN and its CA.
        vo_name: the VO.
        uri: ``host:port`` of the VOMS server.
        start_time, end_time: AC validity as sent, decimal UNIX epoch seconds.
        attributes: the FQANs, e.g. ``/dteam/Role=NULL/Capability=NULL``.
    """

    user: str
    user_ca: str
    server: str
    server_ca: str
    vo_name: str
    uri: str
    start_time: str
    end_time: str
    attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProxyInfo(_EpochValidity):
    """``ProxyInfoStructType`` of getDelegatedProxyInfo/getJobProxyInfo.

    Attributes:
        subject, issuer: slash-form DNs (``/C=IT/O=INFN/CN=John Doe/CN=proxy``).
        identity: the issuer string in gLite (the user for a one-level proxy).
        type: ``"proxy"`` (or ``"x509"``).
        strength: key size in bits, as sent (``"2048"``).
        start_time, end_time: validity as sent, decimal UNIX epoch seconds.
        vos: one :class:`VOInfo` per VOMS attribute certificate.
    """

    subject: str
    issuer: str
    identity: str
    type: str
    strength: str
    start_time: str
    end_time: str
    vos: tuple[VOInfo, ...] = ()

    @property
    def strength_bits(self) -> int | None:
        try:
            return int(self.strength)
        except ValueError:
            return None


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def quota_from(obj: Any) -> Quota:
    """Convert the two-part (``softLimit``, ``hardLimit``) response of the quota operations."""
    return Quota(int(_get(obj, "softLimit") or 0), int(_get(obj, "hardLimit") or 0))


def ce_matches_from(obj: Any) -> list[CEMatch]:
    """Convert ``CEIdAndRankList`` (a ``StringAndLongList``): name = CE id, size = rank."""
    return [CEMatch(_str(_get(f, "name")), int(_get(f, "size") or 0)) for f in _items(obj, "file")]


def vo_info_from(obj: Any) -> VOInfo:
    return VOInfo(
        user=_str(_get(obj, "User")),
        user_ca=_str(_get(obj, "UserCA")),
        server=_str(_get(obj, "Server")),
        server_ca=_str(_get(obj, "ServerCA")),
        vo_name=_str(_get(obj, "VOName")),
        uri=_str(_get(obj, "URI")),
        start_time=_str(_get(obj, "StartTime")),
        end_time=_str(_get(obj, "EndTime")),
        attributes=tuple(str(a) for a in _list(_get(obj, "Attribute")) if a is not None),
    )


def proxy_info_from(obj: Any) -> ProxyInfo:
    """Convert a ``ProxyInfoStructType`` (with its ``VOsInfo*``)."""
    return ProxyInfo(
        subject=_str(_get(obj, "Subject")),
        issuer=_str(_get(obj, "Issuer")),
        identity=_str(_get(obj, "Identity")),
        type=_str(_get(obj, "Type")),
        strength=_str(_get(obj, "Strength")),
        start_time=_str(_get(obj, "StartTime")),
        end_time=_str(_get(obj, "EndTime")),
        vos=tuple(vo_info_from(v) for v in _list(_get(obj, "VOsInfo")) if v is not None),
    )


@dataclass(frozen=True)
class RenewalInfo:
    """``ProxyRenewalInfoStructType`` of getProxyRenewalInfo (a project extension, issue 4).

    Attributes:
        myproxy_server: ``host:port`` the job's proxy is renewed from; None when not registered.
        registered: whether the job's delegated credential is registered for renewal.
        last_attempt: start of the last MyProxy exchange, aware UTC; None if never tried.
        last_result: ``renewed``, ``not-extended``, ``unreachable``, ``refused``, ``failed`` or
            ``not-allowed`` (the service does not allow the server: no connection was made).
        last_error: the reason of the last failure, if any.
        renewals: how many exchanges extended the proxy.
        proxy_end_time: end of the stored proxy as sent, decimal UNIX epoch seconds.
    """

    myproxy_server: str | None
    registered: bool
    last_attempt: datetime | None = None
    last_result: str | None = None
    last_error: str | None = None
    renewals: int = 0
    proxy_end_time: str = ""

    @property
    def proxy_end(self) -> datetime | None:
        """``proxy_end_time`` as an aware UTC datetime (None if not an epoch number)."""
        return _epoch(self.proxy_end_time)


def _utc(value: Any) -> datetime | None:
    """An xsd:dateTime as zeep gives it (datetime, or text) → aware UTC (naive = UTC)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def renewal_info_from(obj: Any) -> RenewalInfo:
    """Convert a ``ProxyRenewalInfoStructType``."""
    registered = _get(obj, "registered")
    if isinstance(registered, str):
        registered = registered.strip().lower() in ("true", "1")
    try:
        renewals = int(_get(obj, "renewals") or 0)
    except (TypeError, ValueError):
        renewals = 0
    return RenewalInfo(
        myproxy_server=_get(obj, "myProxyServer") or None,
        registered=bool(registered),
        last_attempt=_utc(_get(obj, "lastAttempt")),
        last_result=_get(obj, "lastResult") or None,
        last_error=_get(obj, "lastError") or None,
        renewals=renewals,
        proxy_end_time=_str(_get(obj, "proxyEndTime")),
    )


def string_list_to(items: Iterable[str]) -> dict[str, list[str]]:
    """A ``StringList`` request value."""
    return {"Item": [str(i) for i in items]}


def job_type_list_to(job_types: Iterable[str]) -> dict[str, list[str]]:
    """A ``JobTypeList`` request value (``NORMAL``, ``PARAMETRIC``, ``INTERACTIVE``, ``MPI``...)."""
    return {"jobType": [str(t).upper() for t in job_types]}


def graph_to(node: GraphNode) -> dict[str, Any]:
    """A ``GraphStructType`` request value, recursively."""
    return {"name": node.name, "childrenJob": [graph_to(c) for c in node.children]}
