"""wmproxy.web.unread: an answer that leaves request body bytes unread asks gunicorn to close."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import pytest

from wmproxy.soap import tls_worker
from wmproxy.soap.tls_worker import close_connection
from wmproxy.web.unread import close_unread, gunicorn_response


class GunicornResponse:
    """What close_unread reaches through ``start_response.__self__``."""

    def __init__(self) -> None:
        self.closing = False
        self.status = ""

    def force_close(self) -> None:
        self.closing = True

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        self.status = status


def reading(size: int | None) -> Any:
    """An application that reads ``size`` bytes of the body (None: all, -1: nothing), then answers."""
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if size is None:
            environ["wsgi.input"].read()
        elif size >= 0:
            environ["wsgi.input"].read(size)
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    return app


def call(size: int | None, body: bytes, headers: dict[str, str]) -> GunicornResponse:
    response = GunicornResponse()
    environ = {"REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO(body), **headers}
    close_unread(reading(size), environ, response.start_response)
    assert response.status.startswith("404")
    return response


@pytest.mark.parametrize(("size", "closing"), [(-1, True), (5, True), (10, False), (None, False)])
def test_a_body_with_a_length_closes_unless_read_whole(size: int | None, closing: bool) -> None:
    assert call(size, b"0123456789", {"CONTENT_LENGTH": "10"}).closing is closing


@pytest.mark.parametrize(("size", "closing"), [(-1, True), (10, True), (64, False), (None, False)])
def test_a_chunked_body_closes_unless_its_end_was_read(size: int | None, closing: bool) -> None:
    # gunicorn's read(n) returns n bytes unless the body ends first: a shorter read is its end
    assert call(size, b"0123456789", {"HTTP_TRANSFER_ENCODING": "chunked"}).closing is closing


def test_a_request_without_a_body_stays_open() -> None:
    assert call(-1, b"", {}).closing is False
    assert call(-1, b"", {"CONTENT_LENGTH": "0"}).closing is False


def test_gunicorns_response_is_found_through_its_bound_start_response() -> None:
    """One helper finds gunicorn's response for close_unread (graceful close) and for
    tls_worker.close_connection (the socket abandoned): none behind another start_response."""
    response = GunicornResponse()
    assert gunicorn_response(response.start_response) is response

    class NoClose:
        def start_response(self, status: str, headers: list[tuple[str, str]]) -> None:
            pass

    class NotCallable(NoClose):
        force_close = True

    def plain(status: str, headers: list[tuple[str, str]]) -> None:
        pass

    for other in (None, plain, NoClose().start_response, NotCallable().start_response):
        assert gunicorn_response(other) is None


def test_close_connection_closes_gunicorns_response_and_nothing_else() -> None:
    response = GunicornResponse()
    close_connection({tls_worker._START_RESPONSE_KEY: response.start_response})
    assert response.closing is True
    close_connection({})  # in process: nothing to close
    close_connection({tls_worker._START_RESPONSE_KEY: lambda status, headers: None})
