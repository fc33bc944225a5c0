"""The inspection client pauses between two getInspectionResult calls the service answered at
once with the request still pending: it held no wait, its threads being taken
(``wmproxy.services.inspection.HeldWaits``). The real service in process behind a real TLS
server (tests/unit/cli/https_server.py); the job's agent never takes the request."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Pki
from tests.unit.cli.https_server import registered_job
from wmproxy.client import inspection as client_inspection
from wmproxy.client.faults import WMProxyClientError
from wmproxy.client.inspection import InspectionClient
from wmproxy.domain import JobState
from wmproxy.services import inspection
from wmproxy.services.runtime import Runtime

#: Seconds the client keeps asking; with a pause of 1 s it asks at most about this many times.
DEADLINE = 4.0


def test_an_answer_given_at_once_is_not_asked_again_at_once(service: Runtime, pki: Pki,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    settings = service.settings
    service.settings = dataclasses.replace(settings, inspection=dataclasses.replace(
        settings.inspection, mode="any", agent_delay=3600, pickup_timeout=3600))
    monkeypatch.setattr(inspection, "held_waits", lambda rt: inspection.HeldWaits(1))  # no thread to hold
    monkeypatch.setattr(client_inspection, "UNHELD_PAUSE", 1.0)
    asked: list[int] = []
    original = inspection.result

    def counted(*args: Any, **kwargs: Any) -> Any:
        asked.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(inspection, "result", counted)
    _alice, job_id = registered_job(service, pki, '[ Executable = "/bin/sleep"; Arguments = "600"; ]',
                                    JobState.RUNNING)
    client = InspectionClient(service.settings.service.endpoint, str(pki.users["alice"].proxy), str(pki.ca_dir))
    with pytest.raises(WMProxyClientError, match="Timeout"):
        client.inspect(job_id, ["ps"], deadline=DEADLINE)
    # Asked again at once, a call every few milliseconds: hundreds. With the pause, one a second.
    assert 1 <= len(asked) <= DEADLINE + 2, len(asked)
