"""Close the connection of any answer that leaves part of its request body unread.

gunicorn reads what the application left of a request body before it serves the next request
on a kept-alive connection, 1 KiB at a time: its deadline (5 s) is checked only between those
reads, so a client sending a byte every 1.5 s held a request thread for about 25 minutes a
connection, after any answer sent while its body was unread (the router's 404 and 405, a sandbox
GET, HEAD or DELETE with a body, ``?wsdl`` with a body...). As many such clients as request
threads stopped the service for everyone (``docs/load.md``, "Callers the site refuses").

A ``Connection: close`` header of the application's own does not help: gunicorn drops the
application's hop-by-hop headers (PEP 3333 forbids them) and decides from its own state.
:func:`close_unread` asks gunicorn's response to close (``force_close``) when the answer starts
while the body has not been read to its end: gunicorn then sends ``Connection: close`` itself,
does not drain, and closes the connection gracefully in its event loop, without a request thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

StartResponse = Callable[..., Any]
Application = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class CountingInput:
    """``wsgi.input`` that knows whether the request body was read to its end.

    The body ends after ``Content-Length`` bytes, or (chunked) at the first read that returns
    fewer bytes than it asked for: gunicorn's ``read(size)`` returns ``size`` bytes unless the
    body ends first. A request with neither has no body.
    """

    def __init__(self, stream: Any, length: int | None, chunked: bool) -> None:
        self.stream = stream
        self.length = length
        self.chunked = chunked
        self.received = 0
        self.ended = not chunked and not length

    @property
    def consumed(self) -> bool:
        """Whether nothing of the body is left to read."""
        if self.ended:
            return True
        return not self.chunked and self.length is not None and self.received >= self.length

    def _saw(self, data: bytes, size: int | None) -> bytes:
        self.received += len(data)
        if size is None or size < 0 or len(data) < size:
            self.ended = True
        return data

    def read(self, size: int | None = None) -> bytes:
        data = self.stream.read() if size is None else self.stream.read(size)
        return self._saw(data, size)

    def readline(self, size: int | None = None) -> bytes:
        data: bytes = self.stream.readline() if size is None else self.stream.readline(size)
        self.received += len(data)
        if not data:
            self.ended = True
        return data

    def readlines(self, hint: int | None = None) -> list[bytes]:
        lines: list[bytes] = self.stream.readlines() if hint is None else self.stream.readlines(hint)
        self.received += sum(len(line) for line in lines)
        if hint is None or hint <= 0:
            self.ended = True
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def counting_input(environ: dict[str, Any]) -> CountingInput:
    """Put a :class:`CountingInput` in place of ``environ["wsgi.input"]`` and return it."""
    raw = str(environ.get("CONTENT_LENGTH") or "").strip()
    length = int(raw) if raw.isdigit() else None
    chunked = "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    counted = CountingInput(environ["wsgi.input"], length, chunked)
    environ["wsgi.input"] = counted
    return counted


def gunicorn_response(start_response: StartResponse | None) -> Any | None:
    """gunicorn's response of the request, reached through its ``start_response`` (the
    response's bound method), when it can close the connection after the answer
    (``force_close``); None for another ``start_response`` (tests in process, a wrapper's own)
    or none. What :func:`force_close` and :func:`wmproxy.soap.tls_worker.close_connection` close."""
    response = getattr(start_response, "__self__", None)
    return response if callable(getattr(response, "force_close", None)) else None


def force_close(start_response: StartResponse) -> None:
    """Have gunicorn close the connection after this answer (``Connection: close``) without
    reading the rest of the request; ``start_response`` is gunicorn's own (its response's bound
    method). Without gunicorn's (tests in process), nothing happens."""
    if (response := gunicorn_response(start_response)) is not None:
        response.force_close()


def close_unread(app: Application, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Call ``app``; an answer that starts while the request body has not been read to its end
    closes the connection (:func:`force_close`) instead of letting gunicorn drain the body."""
    if "wsgi.input" not in environ:
        return app(environ, start_response)
    body = counting_input(environ)

    def starting(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if not body.consumed:
            force_close(start_response)
        if exc_info is None:
            return start_response(status, headers)
        return start_response(status, headers, exc_info)

    return app(environ, starting)
