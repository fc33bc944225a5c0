"""One ``wmproxy.access`` log line per SOAP operation and per sandbox HTTP request.

Format (logfmt: ``key=value`` pairs separated by one space, a value with a space, ``"``,
``=`` or ``\\`` quoted with ``"`` and backslash escapes, control characters escaped)::

    op=jobStart dn="/C=XX/O=wmproxy-demo/OU=Users/CN=alice" job=https://host:7443/AbC outcome=ok duration=0.0123

* ``op``: the SOAP operation (``getProxyReq``, ``jobRegister``...) or ``sandbox_<METHOD>``;
* ``dn``: the caller's DN (``-`` when the caller could not be authenticated);
* ``job``: the job id the request names or the one it created (``-`` when none);
* ``outcome``: ``ok`` or the fault type (``AuthorizationFault``, ``DelegationException``...);
  for sandbox requests ``ok`` or ``http_<status>``;
* ``duration``: seconds from the request's arrival to its answer;
* ``bytes`` (sandbox requests): bytes sent or received.

Never a key, proxy, JDL body or request body: only these fields are written.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from wmproxy.monitoring import metrics

log = logging.getLogger("wmproxy.access")

#: A value written without quotes.
_BARE = re.compile(r"[^\s\"=\\\x00-\x1f\x7f]+")
#: The characters of a quoted value written as escapes: ``"``, ``\``, the control characters.
_ESCAPED = re.compile(r"[\"\\\x00-\x1f\x7f]")
#: Characters of a value kept (a DN or job id is far shorter).
MAX_VALUE_CHARS = 512
#: Values of the fields that repeat (operation, DN, outcome) whose logfmt form is kept (:func:`_quoted`).
QUOTED_KEPT = 1024


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in '"\\':
        return "\\" + ch
    return "\\n" if ch == "\n" else f"\\x{ord(ch):02x}"


def quote(value: str) -> str:
    """``value`` as a logfmt value: bare when it can be, else ``"..."`` with escapes."""
    value = value[:MAX_VALUE_CHARS]
    if value and _BARE.fullmatch(value):
        return value
    # one regex pass, not a Python loop over the characters (issue 14: a DN's quoting, a
    # character at a time, was about a third of the access line's instructions)
    return '"' + _ESCAPED.sub(_escape, value) + '"'


#: :func:`quote` of a value that repeats, kept: a process serves few callers' DNs, each on every
#: request, and operations and outcomes are few.
_quoted = functools.lru_cache(maxsize=QUOTED_KEPT)(quote)


def record(op: str, dn: str | None, job: str | None, outcome: str, duration: float,
           size: int | None = None) -> None:
    """Log one request and count it (``wmproxy_requests_total``, ``wmproxy_request_duration_seconds``,
    ``wmproxy_sandbox_bytes_total`` for sandbox requests).

    Args:
        op: operation name (bounded: the WSDL's operations or ``sandbox_<METHOD>``).
        dn: caller DN or None; job: job id or None; outcome: ``ok`` or the fault type;
        duration: seconds; size: bytes moved by a sandbox request.
    """
    if log.isEnabledFor(logging.INFO):
        # the fields in the module's order, each value quoted as :func:`quote` does (the
        # repeating ones through its cache); a number and "-" are bare values
        line = (f"op={_quoted(op)} dn={_quoted(dn) if dn else '-'} job={quote(job) if job else '-'} "
                f"outcome={_quoted(outcome)} duration={duration:.4f}")
        if size is not None:
            line = f"{line} bytes={size}"
        # Logger.info without its search of the caller's frame (findCaller): the line comes
        # from here. Filters and handlers run as for log.info.
        log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, "%s", (line,), None, func="record"))
    metrics.observe_request(op, outcome, duration, size)


def observing(start_response: Callable[..., Any], seen: dict[str, Any]) -> Callable[..., Any]:
    """A WSGI ``start_response`` that records ``status`` and ``headers`` in ``seen``, then
    calls ``start_response``."""

    def observe(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = status, headers
        return start_response(status, headers) if exc_info is None else start_response(status, headers, exc_info)

    return observe
