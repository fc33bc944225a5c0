"""The baseline of ``benchmarks/sandbox_transfer.py``: the plainest WSGI file transfer, served by
gunicorn with the service's TLS settings. PUT streams the body into ``$WMPROXY_BENCH_RAW_DIR/<name>``
(1 MiB reads, written as they come); GET sends that file with the server's file wrapper."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

CHUNK = 1024 * 1024


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = os.path.join(os.environ["WMPROXY_BENCH_RAW_DIR"], os.path.basename(environ["PATH_INFO"]))
    if environ["REQUEST_METHOD"] == "PUT":
        stream = environ["wsgi.input"]
        with open(path, "wb") as out:
            while chunk := stream.read(CHUNK):
                out.write(chunk)
        start_response("201 Created", [("Content-Length", "0")])
        return [b""]
    f = open(path, "rb")  # noqa: SIM115 - closed by the server's file wrapper
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(os.fstat(f.fileno()).st_size))])
    return environ["wsgi.file_wrapper"](f, CHUNK)
