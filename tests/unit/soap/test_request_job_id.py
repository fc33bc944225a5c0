"""The job a checked request names (``SoapRequest.job_id``: the access line's ``job``)."""

from __future__ import annotations

import pytest

from wmproxy.config import LimitsSettings
from wmproxy.soap.request import JOB_ID_SEARCH_ELEMENTS, check_request

ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def _request(parts: str, header: str = "") -> bytes:
    return (f'<e:Envelope xmlns:e="{ENV}" xmlns:w="http://glite.org/wms/wmproxy">{header}<e:Body>'
            f"<w:jobStart>{parts}</w:jobStart></e:Body></e:Envelope>").encode()


@pytest.mark.parametrize(("parts", "expected"), [
    ("<jobId> https://h:9000/AbC </jobId>", "https://h:9000/AbC"),
    ('<w:jobId xmlns:w="urn:any">https://h:9000/q</w:jobId>', "https://h:9000/q"),
    ("<other>x</other><jobId>https://h:9000/second</jobId>", "https://h:9000/second"),
    ("<jdl>[]</jdl>", None),
    ("<jobId></jobId>", None),
    ("<jobId>" + "x" * 600 + "</jobId>", "x" * 512),
])
def test_the_first_job_id_of_the_operation(parts: str, expected: str | None) -> None:
    assert check_request(_request(parts), LimitsSettings()).job_id() == expected


def test_a_job_id_in_the_header_is_not_the_operations() -> None:
    request = check_request(_request("<jdl>[]</jdl>", header="<e:Header><jobId>https://h:9000/h</jobId></e:Header>"),
                            LimitsSettings())
    assert request.job_id() is None


def test_the_search_is_bounded() -> None:
    parts = "<a/>" * (JOB_ID_SEARCH_ELEMENTS + 1) + "<jobId>https://h:9000/late</jobId>"
    assert check_request(_request(parts), LimitsSettings()).job_id() is None
    parts = "<a/>" * (JOB_ID_SEARCH_ELEMENTS - 2) + "<jobId>https://h:9000/in-time</jobId>"
    assert check_request(_request(parts), LimitsSettings()).job_id() == "https://h:9000/in-time"
