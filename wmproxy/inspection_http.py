"""The HTTPS edge the job agents talk to (``wmproxy/execution/inspection_agent.py``), below
:data:`wmproxy.services.inspection.AGENT_PATH`; plain HTTP + JSON, not SOAP.

The agent authenticates with the job's own proxy (TLS client chain: the owner's DN) and
the job's secret in the ``X-WMProxy-Inspection-Token`` header:

``GET <AGENT_PATH>/next?job=<job id>&wait=<seconds>``
    long-poll for the next request: ``200`` ``{"request": id, "argv": [...],
    "time_limit": s, "output_cap": bytes}``; ``204`` none within ``wait`` (a
    ``Retry-After`` header asks the agent to pause first when the service is busy);
    ``410`` the job is not running, or ``[inspection] mode`` is ``off`` (the agent stops);
    ``403`` wrong credential or secret.
``POST <AGENT_PATH>/result?job=<job id>&request=<id>``
    JSON ``{"exit_code": int|null, "started_at": "...Z", "ended_at": "...Z",
    "timed_out": bool, "truncated": bool, "error": str|null, "output": base64}``, read only
    once the caller proved to be the job's agent (``403`` before, the body unread):
    ``204`` recorded; ``400`` with the reason for a body that breaks this contract (an
    ``exit_code`` outside -2**31 to 2**31 - 1, a time that is not an ISO 8601 UTC time
    within years 1 to 9999 once in UTC, output not base64, a request the agent was not
    handed, ...).

Long-polls hold a request thread, so at most
:data:`~wmproxy.services.inspection.AGENT_WAIT_SHARE` of the process's threads wait for agents
at once, and agents and users' ``getInspectionResult`` waits together leave one thread free
(:class:`~wmproxy.services.inspection.HeldWaits`); the others get ``204`` with ``Retry-After``
at once.
Errors are one line of text; no traceback, token or proxy is ever written or logged.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from wmproxy.domain import Principal
from wmproxy.errors import AuthenticationError, AuthorizationError, InvalidArgumentError, WMProxyError
from wmproxy.services import inspection
from wmproxy.services.authz import check_caller
from wmproxy.services.runtime import Runtime
from wmproxy.soap.calls import PRINCIPAL_KEY

log = logging.getLogger(__name__)

TOKEN_HEADER = "HTTP_X_WMPROXY_INSPECTION_TOKEN"  # noqa: S105 - a header name
#: Seconds an agent that found no free slot waits before it asks again.
BUSY_RETRY_AFTER = 5
#: Bytes of a posted result beyond the request's output cap (JSON, base64's third).
POST_OVERHEAD = 64 * 1024
#: The exit codes a result may carry (the ``inspection_requests.exit_code`` column: 32 bits).
EXIT_CODE_MIN, EXIT_CODE_END = -(2**31), 2**31

Authenticate = Callable[[dict[str, Any]], Principal]


class InspectionAgentApp:
    """WSGI app for the agent paths.

    Args:
        runtime: the service runtime.
        authenticate: environ → Principal (the TLS client chain).
    """

    def __init__(self, runtime: Runtime, authenticate: Authenticate) -> None:
        self.runtime = runtime
        self.authenticate = authenticate

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        try:
            principal = self.authenticate(environ)
            environ[PRINCIPAL_KEY] = principal  # the access line's dn (wmproxy.soap.app)
            check_caller(self.runtime.settings, principal, "inspection agent")
            job_id, token = query.get("job", ""), str(environ.get(TOKEN_HEADER, ""))
            if path == f"{inspection.AGENT_PATH}/next" and method == "GET":
                return self._next(start_response, principal, job_id, token, query.get("wait", "0"))
            if path == f"{inspection.AGENT_PATH}/result" and method == "POST":
                # the job, its owner and the secret first: a stranger's body is never parsed
                inspection.agent_check(self.runtime, principal, job_id, token)
                outcome = _outcome(_read_body(environ, self.runtime.settings.inspection.output_cap))
                inspection.agent_post(self.runtime, principal, job_id, token, query.get("request", ""), outcome)
                return _send(start_response, "204 No Content", b"")
            return _send(start_response, "404 Not Found", b"not found\n")
        except inspection.AgentStopError as exc:
            return _send(start_response, "410 Gone", f"{exc}\n".encode())
        except (AuthenticationError, AuthorizationError) as exc:
            log.info("inspection agent refused (%s): %s", path, exc)
            return _send(start_response, "403 Forbidden", f"{exc}\n".encode())
        except WMProxyError as exc:
            return _send(start_response, "400 Bad Request", f"{exc}\n".encode())
        except Exception:  # never a traceback on the wire
            log.exception("inspection agent request failed")
            return _send(start_response, "500 Internal Server Error", b"internal error\n")

    def _next(self, start_response: Callable[..., Any], principal: Principal, job_id: str, token: str,
              wait_text: str) -> list[bytes]:
        try:
            wait = float(wait_text)
        except ValueError:
            raise InvalidArgumentError("wait: not a number") from None
        with inspection.held_waits(self.runtime).hold(agent=True) as held:
            task = inspection.agent_next(self.runtime, principal, job_id, token, wait if held else 0.0)
        if task is None:
            # Busy, or the service stopping (asked again at once, the restarting service would refuse it).
            busy = not held or self.runtime.stopping.is_set()
            headers = [("Retry-After", str(BUSY_RETRY_AFTER))] if busy else []
            return _send(start_response, "204 No Content", b"", headers)
        body = json.dumps({"request": task.request_id, "argv": task.argv, "time_limit": task.time_limit,
                           "output_cap": task.output_cap}).encode()
        return _send(start_response, "200 OK", body, content_type="application/json")


def _read_body(environ: dict[str, Any], output_cap: int) -> dict[str, Any]:
    limit = output_cap * 4 // 3 + POST_OVERHEAD
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidArgumentError("bad Content-Length") from None
    if length <= 0 or length > limit:
        raise InvalidArgumentError(f"a result body must have 1 to {limit} bytes")
    raw = environ["wsgi.input"].read(length)
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidArgumentError("the result is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidArgumentError("the result is not a JSON object")
    return data


def _outcome(data: dict[str, Any]) -> inspection.AgentOutcome:
    code = data.get("exit_code")
    error = data.get("error")
    if (code is not None and (not isinstance(code, int) or isinstance(code, bool))) or \
            (error is not None and not isinstance(error, str)):
        raise InvalidArgumentError("exit_code must be an integer or null, error a string or null")
    if code is not None and not EXIT_CODE_MIN <= code < EXIT_CODE_END:
        raise InvalidArgumentError(f"exit_code must be from {EXIT_CODE_MIN} to {EXIT_CODE_END - 1}")
    try:
        output = base64.b64decode(str(data.get("output", "")), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentError("output: not base64") from None
    return inspection.AgentOutcome(
        exit_code=code, started_at=_time(data.get("started_at")), ended_at=_time(data.get("ended_at")),
        output=output, timed_out=data.get("timed_out") is True, truncated=data.get("truncated") is True,
        error=error[:500] if error else None,
    )


def _time(value: object) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgumentError(f"not a UTC time: {str(value)[:40]!r}") from None
    if parsed.tzinfo is None:
        raise InvalidArgumentError("times must be UTC")
    try:
        return parsed.astimezone(dt.UTC)
    except (OverflowError, ValueError):  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise InvalidArgumentError(f"not a UTC time within years 1 to 9999: {str(value)[:40]!r}") from None


def _send(start_response: Callable[..., Any], status: str, body: bytes, headers: list[tuple[str, str]] | None = None,
          content_type: str = "text/plain") -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *(headers or [])])
    return [body]
