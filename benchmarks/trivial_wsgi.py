"""A trivial WSGI app for the baseline of ``benchmarks/soap_ratios.py``: answers every request with
the bytes of the file named by ``WMPROXY_BENCH_REPLY`` (the service's own getVersion reply), served
by gunicorn with the service's TLS settings."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

_REPLY = open(os.environ["WMPROXY_BENCH_REPLY"], "rb").read() if "WMPROXY_BENCH_REPLY" in os.environ else b""  # noqa: SIM115


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(_REPLY)))])
    return [_REPLY]
