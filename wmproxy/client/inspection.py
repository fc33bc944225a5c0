"""Client of the inspection extension port (``wsdl/wmproxy-inspection.wsdl``): ask a
running job to run a command, then wait for the outcome (``docs/inspection.md``)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import zeep

from wmproxy.client.faults import WMProxyClientError, translated_errors
from wmproxy.client.session import grid_session, soap_transport
from wmproxy.domain import InspectionResult

INSPECTION_NS = "http://wmproxy.org/namespaces/inspection-1"
BINDING = f"{{{INSPECTION_NS}}}Inspection"
WSDL_FILE = Path(__file__).resolve().parents[1] / "wsdl" / "wmproxy-inspection.wsdl"
#: Seconds one getInspectionResult call waits on the service (it allows at most 30).
WAIT_PER_CALL = 25


def _utc(value: Any) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _inspection(raw: Any) -> InspectionResult:
    return InspectionResult(
        request_id=str(raw.requestId), job_id=str(raw.jobId), state=str(raw.state),
        command=[str(w) for w in (raw.command.word if raw.command is not None else [])],
        asked_at=_utc(raw.askedAt), started_at=_utc(raw.startedAt), ended_at=_utc(raw.endedAt),
        exit_code=None if raw.exitCode is None else int(raw.exitCode), timed_out=bool(raw.timedOut),
        truncated=bool(raw.truncated), output=bytes(raw.output or b""), message=str(raw.message or ""),
        job_state=str(raw.jobState or ""),
    )


#: Seconds between two getInspectionResult calls at least, when the service answers one at once
#: with the request still pending (it held no wait: its threads were taken).
UNHELD_PAUSE = 2.0


class InspectionClient:
    """The inspection port of a WMProxy endpoint.

    Args:
        endpoint: service URL, ``https://host:7443/glite_wms_wmproxy_server``.
        proxy_file: the user's proxy (PEM cert, key, chain).
        ca_dir: grid CA directory used to verify the service.
        timeout: seconds for connecting and for each read beyond a call's own wait.
        session: an already configured requests Session (tests).

    Every method raises :class:`~wmproxy.client.WMProxyClientError` on a fault or a
    transport failure.
    """

    def __init__(self, endpoint: str, proxy_file: str, ca_dir: str, timeout: float = 60.0, *,
                 session: Any = None) -> None:
        self.session = session if session is not None else grid_session(proxy_file, ca_dir)
        read = timeout + WAIT_PER_CALL
        transport = soap_transport(self.session, timeout, read)
        with translated_errors("wsdl"):
            self._zeep = zeep.Client(str(WSDL_FILE), transport=transport)
        self._port = self._zeep.create_service(BINDING, endpoint)

    def inspect_job(self, job_id: str, argv: list[str], time_limit: int = 0) -> str:
        """``inspectJob``: ask the job to run ``argv``; returns the request id.

        Args:
            time_limit: seconds the command may run; 0 = the site's limit (which caps it).
        """
        with translated_errors("inspectJob"):
            return str(self._port.inspectJob(jobId=job_id, command={"word": list(argv)}, timeLimit=time_limit))

    def get_result(self, request_id: str, wait: int = WAIT_PER_CALL) -> InspectionResult:
        """``getInspectionResult``: the request, after waiting up to ``wait`` seconds for it
        to finish."""
        with translated_errors("getInspectionResult"):
            return _inspection(self._port.getInspectionResult(requestId=request_id, timeout=wait))

    def inspect(self, job_id: str, argv: list[str], time_limit: int = 0, *,
                deadline: float = 900.0) -> InspectionResult:
        """Ask and wait until the request has finished.

        Args:
            deadline: seconds after which the client gives up even though the service still
                reports the request pending (the service itself ends every request within
                its pickup timeout plus the time limit and a margin).

        Raises:
            WMProxyClientError: a fault, or ``Timeout`` past ``deadline``.
        """
        request_id = self.inspect_job(job_id, argv, time_limit)
        end = time.monotonic() + deadline
        while True:
            asked = time.monotonic()
            found = self.get_result(request_id)
            if found.finished:
                return found
            if time.monotonic() >= end:
                raise WMProxyClientError("Timeout", f"no answer to inspection {request_id} within {deadline:g} s",
                                         None, "getInspectionResult")
            # Answered at once while pending: the service had no thread to hold the wait on
            # (wmproxy.services.inspection.HeldWaits). Pause instead of asking again at once.
            pause = UNHELD_PAUSE - (time.monotonic() - asked)
            if pause > 0:
                time.sleep(min(pause, max(0.0, end - time.monotonic())))
