"""Plain domain values shared by every layer: job states, principals, job ids, and the
values the extension ports carry (job history and listing, inspection results), which the
service builds and the client reads back.

Nothing here touches SOAP, the database or the file system.
"""

from __future__ import annotations

import base64
import datetime
import enum
import hashlib
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from wmproxy.errors import InvalidArgumentError


class JobState(str, enum.Enum):  # noqa: UP042 - StrEnum would change str() of a state
    """Job states, named as the L&B states the reference reports (``wmproxy-behaviour.md`` §10)."""

    SUBMITTED = "Submitted"  # registered, not started
    WAITING = "Waiting"  # started, queued for a worker
    READY = "Ready"  # taken by a worker
    SCHEDULED = "Scheduled"  # input sandbox staged, about to run
    RUNNING = "Running"
    DONE = "Done"  # ended; see exit_code
    ABORTED = "Aborted"  # see reason
    CANCELLED = "Cancelled"
    CLEARED = "Cleared"  # output retrieved and purged

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.DONE, JobState.ABORTED, JobState.CANCELLED, JobState.CLEARED})
ACTIVE_STATES = frozenset({JobState.WAITING, JobState.READY, JobState.SCHEDULED, JobState.RUNNING})


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request.

    Attributes:
        dn: the end-entity certificate's subject in the grid slash form
            (``/C=XX/O=Grid/CN=Jane``), proxy CNs not included.
        chain_pem: the verified client chain as PEM, leaf (proxy) first; empty
            when the caller was authenticated some other way (tests, admin).
        fqans: VOMS FQANs of the caller's credential, first = primary.
    """

    dn: str
    chain_pem: bytes = b""
    fqans: tuple[str, ...] = field(default_factory=tuple)

    @property
    def vo(self) -> str | None:
        """The VO of the primary FQAN (``/atlas/Role=NULL`` → ``atlas``), if any."""
        return fqan_vo(self.fqans[0]) if self.fqans else None


def fqan_vo(fqan: str) -> str | None:
    """The VO of an FQAN, its first component (``/atlas/Role=NULL`` → ``atlas``); None for ``/``."""
    return fqan.lstrip("/").split("/", 1)[0] or None


@dataclass(frozen=True)
class LocalAccount:
    """The local (Unix) account a grid identity is mapped to (``wmproxy-behaviour.md`` §6.3).

    Attributes:
        name: the account's user name (``wmpatl001``).
        uid, gid: its numeric user id and primary group id.
        pool: the pool the account was leased from (``wmpatl``, without the leading
            dot of the mapfile), or None for a statically mapped account.
    """

    name: str
    uid: int
    gid: int
    pool: str | None = None


# --- job ids (wmproxy-behaviour.md §2) ---

_UNIQUE_ALPHABET = set(string.ascii_letters + string.digits + "-_")

#: ASCII whitespace and control characters: none is in a job id. ``urlsplit`` strips them (TAB,
#: LF and CR anywhere, the others at the ends), so an id holding one would parse as another id.
_NOT_IN_AN_ID = frozenset(map(chr, [*range(0x21), 0x7F]))


def new_job_id(host: str, port: int) -> str:
    """Return a fresh job id ``https://<host>:<port>/<22 URL-safe base64 chars>``.

    The unique part is the unpadded URL-safe base64 of 16 random bytes, the shape
    of the glite jobid library's MD5-based ids.
    """
    unique = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
    return f"https://{host}:{port}/{unique}"


def child_job_id(parent_id: str, index: int) -> str:
    """Deterministic id of node ``index`` of a compound job (``wmproxy-behaviour.md`` §2.3).

    ``<unique_i>`` = URL-safe base64 of MD5(``"<parent unique>,WMPROXY,<i>"``).
    """
    parts = urlsplit(parent_id)
    unique = parts.path.lstrip("/")
    digest = hashlib.md5(f"{unique},WMPROXY,{index}".encode()).digest()  # noqa: S324 - id, not security
    return f"https://{parts.netloc}/{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def parse_job_id(job_id: str) -> str:
    """Validate a job id and return it unchanged.

    Raises:
        InvalidArgumentError: not ``https://host[:port]/<unique>`` with a URL-safe unique part,
            or holding ASCII whitespace or a control character anywhere (``urlsplit`` strips
            TAB, LF and CR, and leading and trailing ones: ``https://h/a<TAB>bc`` read as
            ``https://h/abc``, and the purger's ``job_fan_out`` read another fan-out than
            the area's).
    """
    if not job_id:
        raise InvalidArgumentError("Provided Job Id not valid")
    if not _NOT_IN_AN_ID.isdisjoint(job_id):
        raise InvalidArgumentError(f"Provided Job Id not valid: {job_id!r}")
    try:  # urlsplit refuses an unclosed or non-address "[...]" host, .port a bad or out-of-range port
        parts = urlsplit(job_id)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        raise InvalidArgumentError(f"Provided Job Id not valid: {job_id}") from None
    unique = parts.path[1:] if parts.path.startswith("/") else ""
    if (
        parts.scheme != "https"
        or not host
        or not unique
        or not set(unique) <= _UNIQUE_ALPHABET
        or parts.query
        or parts.fragment
    ):
        raise InvalidArgumentError(f"Provided Job Id not valid: {job_id}")
    return job_id


def job_unique(job_id: str) -> str:
    """The ``<unique>`` part of a job id."""
    return urlsplit(job_id).path.lstrip("/")


_SAFE_FILENAME = set(string.ascii_letters + string.digits + ".- ")


JOB_PROXY_NAME = "user.proxy"
"""File name of a job's proxy copy in its work dir (what ``X509_USER_PROXY`` names)."""

JOB_STATE_DIR = ".wmproxy"
"""The service's directory in a job's work dir (:data:`wmproxy.execution.jobwrapper.STATE_DIR`):
the wrapper's spec (``job.marshal``, with the job's inspection secret until the wrapper has read
it), its log and status, the batch script."""


def service_file(rel_path: str) -> str | None:
    """Why ``rel_path`` (relative to a job's work dir) names what the service put into the work dir
    and never gives back, in an output sandbox or through perusal, to the owner or to a reader
    the job's ACL admits; None for any other path.

    Reserved: the job's proxy copy (:data:`JOB_PROXY_NAME`, the owner's credential with its
    private key: an ACL entry grants read access to the job's data, never that) and everything
    in :data:`JOB_STATE_DIR`. Empty and ``.`` components are left out (``./user.proxy`` is the
    proxy); case counts, as in the file system.
    """
    what = service_file_kind(rel_path)
    return None if what is None else f"it is {what}, never given back"


def service_file_kind(rel_path: str) -> str | None:
    """What :func:`service_file` finds ``rel_path`` names ("the job's proxy (the owner's
    credential)", "the service's state directory of the job"), None for any other path."""
    parts = [part for part in rel_path.split("/") if part not in ("", ".")]
    if parts[:1] == [JOB_STATE_DIR]:
        return "the service's state directory of the job"
    if parts == [JOB_PROXY_NAME]:
        return "the job's proxy (the owner's credential)"
    return None


def reserved_input_file(names: Iterable[str]) -> str | None:
    """Why a job whose input sandbox brings the files ``names`` (file names in its work directory,
    as staged) cannot run: one of them is what the service keeps there (:func:`service_file_kind`:
    a job registered before :func:`~wmproxy.jdl.sandbox.check_input_sandbox_name` refused such
    entries); None when none is. Staged, such a file and the job's proxy clobbered each other
    (the proxy was written over the job's file) or the staging failed against ``.wmproxy``.
    """
    for name in names:
        if (what := service_file_kind(name)) is not None:
            return (f"input sandbox file {name!r} cannot be staged: the job's work directory holds {what} "
                    "under that name (the job was registered before InputSandbox entries so named were refused)")
    return None


def to_filename(job_id: str) -> str:
    """Directory name of a job: every char outside ``[A-Za-z0-9.- ]`` → ``_`` + 2 lowercase hex.

    ``https://wms.example.org:9000/AbC-x_1`` → ``https_3a_2f_2fwms.example.org_3a9000_2fAbC-x_5f1``
    (glite ``to_filename``, ``wmproxy-behaviour.md`` §2.2).
    """
    if job_id.isascii():  # every id of this service but one whose host name is not ASCII
        # one lookup per character in a table made once: a third of the generator's CPU (issue 14)
        return "".join(map(_ASCII_FILENAME_CHARS.__getitem__, job_id))
    return "".join(c if c in _SAFE_FILENAME else f"_{ord(c):02x}" for c in job_id)


#: What :func:`to_filename` writes for each ASCII character.
_ASCII_FILENAME_CHARS = {chr(code): chr(code) if chr(code) in _SAFE_FILENAME else f"_{code:02x}"
                         for code in range(128)}


def job_fan_out(job_id: str) -> str:
    """The fan-out directory of a valid job id (:func:`parse_job_id`) in :func:`job_relative_dir`:
    the first 2 chars of its ``<unique>`` part, the text after its last ``/`` (no ``/`` in it),
    without parsing the id as a URL again."""
    return job_id.rpartition("/")[2][:2]


def job_relative_dir(job_id: str, sandbox_dir_name: str = "SandboxDir") -> str:
    """``SandboxDir/<first 2 chars of unique>/<to_filename(job id)>`` (§2.2, §4.1)."""
    return f"{sandbox_dir_name}/{job_unique(job_id)[:2]}/{to_filename(job_id)}"


#: ``https://<host>[:<port>]/`` of job ids :func:`checked_relative_dir` found valid, and their
#: :func:`to_filename` (a service sees the ids of a few hosts and ports: its own, its peers').
_CHECKED_PREFIXES: dict[str, str] = {}
CHECKED_PREFIXES_MAX = 64


def checked_relative_dir(job_id: str, sandbox_dir_name: str = "SandboxDir") -> str:
    """:func:`parse_job_id` then :func:`job_relative_dir`, the same answer and the same refusal.

    An id whose ``https://<host>[:<port>]/`` an earlier valid id had, and whose unique part is
    non-empty and URL-safe, is valid whatever that unique part is (its host and port are read as
    the earlier id's were, and nothing else ``parse_job_id`` refuses can be in it): its directory
    is made from the prefix's ``to_filename``, kept, without parsing the id again (issue 14: the
    two ``urlsplit`` and the checks were about 80,000 instructions of a jobSubmit's new id).

    Raises:
        InvalidArgumentError: ``job_id`` is not a valid job id (:func:`parse_job_id`).
    """
    cut = job_id.find("/", 8) + 1  # the end of "https://<host>[:<port>]/" in a valid id
    if cut:
        prefix_name = _CHECKED_PREFIXES.get(job_id[:cut])
        unique = job_id[cut:]
        if prefix_name is not None and unique and _UNIQUE_ALPHABET.issuperset(unique):
            return f"{sandbox_dir_name}/{unique[:2]}/{prefix_name}{to_filename(unique)}"
    parse_job_id(job_id)
    relative = job_relative_dir(job_id, sandbox_dir_name)
    if cut and len(_CHECKED_PREFIXES) < CHECKED_PREFIXES_MAX:
        _CHECKED_PREFIXES[job_id[:cut]] = to_filename(job_id[:cut])
    return relative


def utcnow() -> datetime.datetime:
    """Current time, timezone-aware UTC."""
    return datetime.datetime.now(datetime.UTC)


# --- values of the extension ports (jobs-1, inspection-1), one type on both sides ---


@dataclass(frozen=True)
class JobEvent:
    """One event of a job (getJobEvents): ``at`` (aware UTC), ``kind`` (``registered``,
    ``matched``, ``retry``, ... : ``wmproxy.store.jobs.EVENT_KINDS``), the job's ``state``
    after it, ``source`` (service, worker, wrapper, renewal, user) and ``reason``."""

    at: datetime.datetime
    kind: str
    state: str
    source: str
    reason: str | None = None


@dataclass(frozen=True)
class JobSummary:
    """A job as getJobEvents and listJobs describe it (what ``status -v`` and ``status --all`` show).

    Attributes:
        status: as getJobStatus sends it (``Done (Exit Code 0)``).
        owner_dn: the owner's DN.
        submitted, last_update: registration and last change (aware UTC).
        state_times: when the job last entered each state it went through (aware UTC).
        user_tags: the JDL ``UserTags`` as ``name -> text``.
        node_states: for a compound job, how many nodes are in each state.
        missing_outputs: ``(file name, why)`` of each declared output file not collected.
    """

    job_id: str
    state: str
    status: str
    owner_dn: str
    submitted: datetime.datetime
    last_update: datetime.datetime
    parent_id: str | None = None
    node_name: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    destination: str | None = None
    user_tags: dict[str, str] = field(default_factory=dict)
    state_times: dict[str, datetime.datetime] = field(default_factory=dict)
    node_states: dict[str, int] = field(default_factory=dict)
    missing_outputs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class JobHistory:
    """getJobEvents: the job's summary and its events, oldest first."""

    job: JobSummary
    events: tuple[JobEvent, ...]


@dataclass(frozen=True)
class JobPage:
    """listJobs: one page of jobs (newest first) and the number of jobs matching in all."""

    jobs: tuple[JobSummary, ...]
    total: int


#: Inspection request states after which a request changes no more.
INSPECTION_FINISHED = frozenset({"done", "failed", "ended"})


@dataclass(frozen=True)
class InspectionResult:
    """An inspection request (getInspectionResult, the WSDL's InspectionResultType).

    Attributes:
        request_id, job_id: the request and its job.
        state: ``pending``, ``running``, ``done``, ``failed`` or ``ended`` (the job had
            already ended when asked; ``message`` gives its final state).
        command: the argv asked.
        asked_at, started_at, ended_at: aware UTC; started/ended None until known.
        exit_code: the command's exit status (128+N when signal N killed it), None
            until done.
        timed_out: the command was killed at the time limit.
        truncated: the output was cut at the output cap.
        output: stdout and stderr merged, at most the cap (bytes).
        message: why it failed, or the ended job's state.
        job_state: the job's state when this was read.
    """

    request_id: str
    job_id: str
    state: str
    command: list[str]
    asked_at: datetime.datetime | None
    started_at: datetime.datetime | None
    ended_at: datetime.datetime | None
    exit_code: int | None
    timed_out: bool
    truncated: bool
    output: bytes
    message: str
    job_state: str

    @property
    def finished(self) -> bool:
        """The request changes no more (done, failed or ended)."""
        return self.state in INSPECTION_FINISHED
