"""WSGI edge of the job monitor (GET only, under ``prefix``, default ``/monitor/``).

Pages:

* ``<prefix>`` — the caller's jobs, newest first, with totals by state; query ``state``
  (a job state), ``since`` / ``until`` (UTC date ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM``;
  ``until`` is exclusive, but a date alone includes that day),
  ``page`` (from 1), ``per_page`` (1..200);
* ``<prefix>job?id=<job id>`` — one job: status, event timeline, destination CE, JDL,
  output files (links to the sandbox HTTPS paths), perusal files; for a compound job its
  nodes (``nodes_page``, from 1, of :data:`~wmproxy.services.monitor.NODES_PER_PAGE`) and the
  DAG picture (a notice instead beyond :data:`~wmproxy.services.monitor.MAX_DRAWN_NODES`
  nodes or :data:`~wmproxy.services.monitor.MAX_DRAWN_EDGES` dependencies);
* ``<prefix>dag.svg?id=<job id>`` — the DAG picture alone (``image/svg+xml``; the notice as
  a picture beyond those bounds).

Refusals are HTML pages with a status: 400 (bad query), 403 (not the caller's job, the
caller is not allowed to use the service, or a request another site's page made other than
following a link: ``Sec-Fetch-Site: cross-site``), 404 (unknown job or page), 405 (not
GET/HEAD). Every response forbids caching, framing, scripts, referrers (job ids are in URLs)
and loads by another origin (``Cross-Origin-Resource-Policy: same-origin``).

Every request writes a ``wmproxy.access`` line and is counted as the SOAP operations are
(:func:`wmproxy.monitoring.access.record`): ``op`` is ``monitor_jobs``, ``monitor_job``,
``monitor_dag`` or ``monitor_other`` (any other path), ``job`` the id the query names,
``outcome`` ``ok`` or ``http_<status>``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape

from wmproxy.domain import Principal
from wmproxy.errors import (
    AuthenticationError,
    AuthorizationError,
    InvalidArgumentError,
    JobNotFoundError,
    WMProxyError,
)
from wmproxy.monitoring import access
from wmproxy.services import monitor
from wmproxy.services.authz import check_caller
from wmproxy.services.runtime import Runtime
from wmproxy.web.dag import STATE_COLOURS, DagPicture, layout
from wmproxy.web.headers import BROWSER_HEADERS

log = logging.getLogger(__name__)

Authenticate = Callable[[dict[str, Any]], Principal]
StartResponse = Callable[..., Any]

#: Headers of every monitor response.
SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
                                 "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")),
    *BROWSER_HEADERS,
]

#: Characters of a registered JDL the job page shows: a compound job's holds every node's and
#: every dependency (2 MB from a 41 KB JDL of 632 nodes); getJDL gives it whole.
MAX_REGISTERED_JDL_SHOWN = 262_144

#: The ``op`` of a page in the access log and the request metrics (any other path: ``monitor_other``).
OPERATIONS = {"": "monitor_jobs", "job": "monitor_job", "dag.svg": "monitor_dag"}

_STATUS = {200: "200 OK", 400: "400 Bad Request", 403: "403 Forbidden", 404: "404 Not Found",
           405: "405 Method Not Allowed", 500: "500 Internal Server Error"}


class PageError(Exception):
    """A refusal shown as an error page with HTTP ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _templates() -> Environment:
    env = Environment(loader=PackageLoader("wmproxy.web", "templates"),
                      autoescape=select_autoescape(["html", "svg"], default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals["state_colours"] = STATE_COLOURS
    return env


#: The forms a ``since`` / ``until`` filter takes (ASCII digits: ``fromisoformat`` took more).
_FILTER_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2})?")


def parse_time(value: str, what: str, *, end: bool = False) -> dt.datetime | None:
    """``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM`` as UTC, None for empty; with ``end``, a date
    alone is the start of the next day (an exclusive ``until`` then includes that day).

    Raises:
        PageError: 400 for anything else, and for a date past the last one a filter can take.
    """
    if not value:
        return None
    try:
        if not _FILTER_TIME.fullmatch(value):
            raise ValueError(value)
        parsed = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
        if end and len(value) == len("YYYY-MM-DD"):
            parsed += dt.timedelta(days=1)
    except ValueError:
        raise PageError(400, f"{what}: not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)") from None
    except OverflowError:  # until=9999-12-31: its next day is past datetime.max
        raise PageError(400, f"{what}: {value} is past the last date a filter can take "
                             "(9999-12-30, or 9999-12-31T23:59)") from None
    return parsed


#: A page number or size: ASCII digits, at most six (``str.isdigit`` took ``²``, which ``int`` refuses).
_NUMBER = re.compile(r"[0-9]{1,6}")


def _int(value: str, what: str, default: int) -> int:
    if not value:
        return default
    if not _NUMBER.fullmatch(value):
        raise PageError(400, f"{what}: not a positive number")
    return int(value)


def _cross_site(environ: dict[str, Any]) -> bool:
    """A request another site's page made (Fetch Metadata), but following a link to a page:
    an ``<img>``, a script, a fetch, a form or a frame of another site, which could tell from
    the answer whether the visitor may read a job. A browser without Fetch Metadata is left to
    ``Cross-Origin-Resource-Policy``."""
    if environ.get("HTTP_SEC_FETCH_SITE", "").lower() != "cross-site":
        return False
    return not (environ.get("HTTP_SEC_FETCH_MODE", "").lower() == "navigate"
                and environ.get("HTTP_SEC_FETCH_DEST", "").lower() == "document"
                and environ.get("REQUEST_METHOD") in ("GET", "HEAD"))


class MonitorApp:
    """The monitor's WSGI application; ``authenticate`` is the service's (TLS client chain)."""

    def __init__(self, runtime: Runtime, authenticate: Authenticate, prefix: str = "/monitor/") -> None:
        self.runtime = runtime
        self.authenticate = authenticate
        self.prefix = prefix
        self.templates = _templates()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        method = environ.get("REQUEST_METHOD", "GET")
        page = environ.get("PATH_INFO", "")[len(self.prefix):]
        principal: Principal | None = None
        job_id: str | None = None
        code = 200
        try:
            if method not in ("GET", "HEAD"):
                raise PageError(405, "the job monitor is read-only")
            if _cross_site(environ):
                raise PageError(403, "the job monitor answers no request of another site's page")
            principal = self.authenticate(environ)
            environ["wmproxy.principal"] = principal
            check_caller(self.runtime.settings, principal, "monitor")
            query = _query(environ.get("QUERY_STRING", ""))
            if page in ("job", "dag.svg"):
                job_id = query.get("id") or None
            if page == "":
                body, ctype = self._jobs(principal, query), "text/html; charset=utf-8"
            elif page == "job":
                body, ctype = self._job(principal, query), "text/html; charset=utf-8"
            elif page == "dag.svg":
                body, ctype = self._dag(principal, query), "image/svg+xml"
            else:
                raise PageError(404, "no such page")
            data = body.encode("utf-8")
        except Exception as exc:  # an error page, never a traceback on the wire
            if isinstance(exc, PageError | WMProxyError):
                code, message = _refusal(exc)
            else:  # a store error while the page was made, say: the traceback goes to the log
                error_id = uuid.uuid4().hex[:12]
                if isinstance(exc, RecursionError):  # its traceback is as long as the recursion
                    log.error("monitor page %s failed (error id %s): %s", page or "jobs", error_id, _summary(exc))
                else:
                    log.exception("monitor page %s failed (error id %s)", page or "jobs", error_id)
                code, message = 500, f"Internal server error (error id {error_id})"
            body = self.templates.get_template("error.html").render(
                status=_STATUS[code], message=message, prefix=self.prefix, principal=principal)
            ctype = "text/html; charset=utf-8"
            data = body.encode("utf-8", "backslashreplace")
        status = _STATUS[code]
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(data))), *SECURITY_HEADERS])
        access.record(OPERATIONS.get(page, "monitor_other"), principal.dn if principal else None, job_id,
                      "ok" if code == 200 else f"http_{code}", time.monotonic() - started)
        return [b""] if method == "HEAD" else [data]

    def _jobs(self, principal: Principal, query: dict[str, str]) -> str:
        state = query.get("state") or None
        since = parse_time(query.get("since", ""), "since")
        until = parse_time(query.get("until", ""), "until", end=True)  # a date alone includes that day
        per_page = _int(query.get("per_page", ""), "per_page", 25)
        page = monitor.my_jobs(self.runtime, principal, state=state, since=since, until=until,
                               page=_int(query.get("page", ""), "page", 1), per_page=per_page)
        filters = {k: query[k] for k in ("state", "since", "until", "per_page") if query.get(k)}

        def page_link(number: int) -> str:
            return "?" + urlencode({**filters, "page": str(number)})

        return self.templates.get_template("jobs.html").render(
            principal=principal, prefix=self.prefix, page=page, totals=monitor.my_totals(self.runtime, principal),
            states=monitor.STATES, query=query, page_link=page_link)

    def _job(self, principal: Principal, query: dict[str, str]) -> str:
        detail = monitor.job_detail(self.runtime, principal, _job_id(query),
                                    node_page=_int(query.get("nodes_page", ""), "nodes_page", 1))
        dag = self._picture(detail.dag) if detail.dag and detail.dag.drawn else ""
        return self.templates.get_template("job.html").render(
            principal=principal, prefix=self.prefix, detail=detail, dag=dag, job_link=self.job_link,
            max_nodes=monitor.MAX_DRAWN_NODES, max_edges=monitor.MAX_DRAWN_EDGES,
            max_jdl=MAX_REGISTERED_JDL_SHOWN)

    def _dag(self, principal: Principal, query: dict[str, str]) -> str:
        dag = monitor.job_dag(self.runtime, principal, _job_id(query))
        if dag is None:
            raise PageError(404, "this job is not a compound job: it has no DAG")
        if not dag.drawn:
            return self.templates.get_template("dag_notice.svg").render(
                dag=dag, max_nodes=monitor.MAX_DRAWN_NODES, max_edges=monitor.MAX_DRAWN_EDGES)
        return self._picture(dag)

    def _picture(self, dag: monitor.Dag) -> str:
        picture: DagPicture = layout(dag.nodes, dag.edges)
        return self.templates.get_template("dag.svg").render(picture=picture, job_link=self.job_link)

    def job_link(self, job_id: str, nodes_page: int | None = None) -> str:
        fields = {"id": job_id} if nodes_page is None else {"id": job_id, "nodes_page": str(nodes_page)}
        return f"{self.prefix}job?" + urlencode(fields)


def _job_id(query: dict[str, str]) -> str:
    job_id = query.get("id", "")
    if not job_id:
        raise PageError(400, "which job? (?id=<job id>)")
    return job_id


def _summary(exc: BaseException) -> str:
    """``exc`` in one line with where it was raised, instead of its traceback: a RecursionError's
    is a thousand frames (110 KB of log a view of a long chain DAG, before its layout recursed no more)."""
    frames = list(traceback.walk_tb(exc.__traceback__))
    where = f"{frames[-1][0].f_code.co_filename}:{frames[-1][1]}" if frames else "?"
    return (f"{type(exc).__name__}: {str(exc)[:200]} (raised at {where}, {len(frames)} frames deep; "
            "traceback not logged)")


#: Fields a monitor query may have (the pages read at most five).
MAX_QUERY_FIELDS = 20


def _query(text: str) -> dict[str, str]:
    """The first value of each field of the query string ``text``.

    Raises:
        PageError: 400 for more than :data:`MAX_QUERY_FIELDS` fields.
    """
    try:
        fields = parse_qs(text, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        raise PageError(400, f"too many query fields (at most {MAX_QUERY_FIELDS})") from None
    return {key: values[0] for key, values in fields.items()}


def _refusal(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, PageError):
        return exc.status, exc.message
    message = str(exc)[:300]
    if isinstance(exc, JobNotFoundError):
        return 404, message
    if isinstance(exc, InvalidArgumentError):
        return 400, message
    if not isinstance(exc, AuthorizationError | AuthenticationError):
        log.info("monitor refused: %s", message)
    return 403, message
