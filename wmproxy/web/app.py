"""WSGI edge of the job monitor (GET only, under ``prefix``, default ``/monitor/``).

Pages:

* ``<prefix>`` — the caller's jobs, newest first, with totals by state; query ``state``
  (a job state), ``since`` / ``until`` (UTC date ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM``;
  ``until`` is exclusive, but a date alone includes that day),
  ``page`` (from 1), ``per_page`` (1..200);
* ``<prefix>job?id=<job id>`` — one job: status, event timeline, destination CE, JDL,
  output files (links to the sandbox HTTPS paths), perusal files; for a compound job its
  nodes and the DAG picture;
* ``<prefix>dag.svg?id=<job id>`` — the DAG picture alone (``image/svg+xml``).

Refusals are HTML pages with a status: 400 (bad query), 403 (not the caller's job, or the
caller is not allowed to use the service), 404 (unknown job or page), 405 (not GET/HEAD).
Every response forbids caching, framing, scripts and referrers (job ids are in URLs).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
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
from wmproxy.services import monitor
from wmproxy.services.authz import check_caller
from wmproxy.services.runtime import Runtime
from wmproxy.web.dag import STATE_COLOURS, layout
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

_STATUS = {400: "400 Bad Request", 403: "403 Forbidden", 404: "404 Not Found", 405: "405 Method Not Allowed",
           500: "500 Internal Server Error"}


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


def _int(value: str, what: str, default: int) -> int:
    if not value:
        return default
    if not value.isdigit() or len(value) > 6:
        raise PageError(400, f"{what}: not a positive number")
    return int(value)


class MonitorApp:
    """The monitor's WSGI application; ``authenticate`` is the service's (TLS client chain)."""

    def __init__(self, runtime: Runtime, authenticate: Authenticate, prefix: str = "/monitor/") -> None:
        self.runtime = runtime
        self.authenticate = authenticate
        self.prefix = prefix
        self.templates = _templates()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        page = environ.get("PATH_INFO", "")[len(self.prefix):]
        principal: Principal | None = None
        try:
            if method not in ("GET", "HEAD"):
                raise PageError(405, "the job monitor is read-only")
            principal = self.authenticate(environ)
            environ["wmproxy.principal"] = principal
            check_caller(self.runtime.settings, principal, "monitor")
            query = _query(environ.get("QUERY_STRING", ""))
            if page == "":
                body, ctype = self._jobs(principal, query), "text/html; charset=utf-8"
            elif page == "job":
                body, ctype = self._job(principal, query), "text/html; charset=utf-8"
            elif page == "dag.svg":
                body, ctype = self._dag(principal, query), "image/svg+xml"
            else:
                raise PageError(404, "no such page")
            status = "200 OK"
        except Exception as exc:  # an error page, never a traceback on the wire
            if isinstance(exc, PageError | WMProxyError):
                code, message = _refusal(exc)
            else:  # a store error while the page was made, say: the traceback goes to the log
                error_id = uuid.uuid4().hex[:12]
                log.exception("monitor page %s failed (error id %s)", page or "jobs", error_id)
                code, message = 500, f"Internal server error (error id {error_id})"
            status = _STATUS[code]
            body = self.templates.get_template("error.html").render(
                status=status, message=message, prefix=self.prefix, principal=principal)
            ctype = "text/html; charset=utf-8"
        data = body.encode("utf-8")
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(data))), *SECURITY_HEADERS])
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

    def _detail(self, principal: Principal, query: dict[str, str]) -> monitor.JobDetail:
        job_id = query.get("id", "")
        if not job_id:
            raise PageError(400, "which job? (?id=<job id>)")
        return monitor.job_detail(self.runtime, principal, job_id)

    def _job(self, principal: Principal, query: dict[str, str]) -> str:
        detail = self._detail(principal, query)
        picture = layout(detail.nodes, detail.edges) if detail.nodes else None
        dag = self.templates.get_template("dag.svg").render(picture=picture, job_link=self.job_link) if picture else ""
        return self.templates.get_template("job.html").render(
            principal=principal, prefix=self.prefix, detail=detail, dag=dag, job_link=self.job_link)

    def _dag(self, principal: Principal, query: dict[str, str]) -> str:
        detail = self._detail(principal, query)
        if not detail.nodes:
            raise PageError(404, "this job is not a compound job: it has no DAG")
        return self.templates.get_template("dag.svg").render(picture=layout(detail.nodes, detail.edges),
                                                             job_link=self.job_link)

    def job_link(self, job_id: str) -> str:
        return f"{self.prefix}job?" + urlencode({"id": job_id})


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
