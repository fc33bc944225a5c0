"""Plain domain values shared by every layer: job states, principals, job ids.

Nothing here touches SOAP, the database or the file system.
"""

from __future__ import annotations

import base64
import datetime
import enum
import hashlib
import secrets
import string
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
        if not self.fqans:
            return None
        return self.fqans[0].lstrip("/").split("/", 1)[0] or None


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
        InvalidArgumentError: not ``https://host[:port]/<unique>`` with a URL-safe unique part.
    """
    if not job_id:
        raise InvalidArgumentError("Provided Job Id not valid")
    parts = urlsplit(job_id)
    unique = parts.path[1:] if parts.path.startswith("/") else ""
    if (
        parts.scheme != "https"
        or not parts.hostname
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


def to_filename(job_id: str) -> str:
    """Directory name of a job: every char outside ``[A-Za-z0-9.- ]`` → ``_`` + 2 lowercase hex.

    ``https://wms.example.org:9000/AbC-x_1`` → ``https_3a_2f_2fwms.example.org_3a9000_2fAbC-x_5f1``
    (glite ``to_filename``, ``wmproxy-behaviour.md`` §2.2).
    """
    return "".join(c if c in _SAFE_FILENAME else f"_{ord(c):02x}" for c in job_id)


def job_relative_dir(job_id: str, sandbox_dir_name: str = "SandboxDir") -> str:
    """``SandboxDir/<first 2 chars of unique>/<to_filename(job id)>`` (§2.2, §4.1)."""
    return f"{sandbox_dir_name}/{job_unique(job_id)[:2]}/{to_filename(job_id)}"


def utcnow() -> datetime.datetime:
    """Current time, timezone-aware UTC."""
    return datetime.datetime.now(datetime.UTC)
