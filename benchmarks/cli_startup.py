"""CLI start-up time (issue 14): ``wmproxy status <id>`` and ``wmproxy --help`` against the raw
SOAP call on a new connection from a small script, measured side by side in one run.

Starts a real deployment (gunicorn over TLS, SQLite) on a throwaway PKI, delegates and
registers one job, then in each window runs, interleaved, ``--runs`` times each:

* raw:    ``python -c`` with ``ssl`` + ``http.client``: one TLS connection with the user's proxy,
          a getJobStatus envelope POSTed, the reply read (what a hand-written script costs);
* status: ``wmproxy status <id>`` (the whole CLI: imports, configuration, proxy check, client,
          call, text);
* help:   ``wmproxy --help``;
* python: ``python -c pass`` (the interpreter alone, for reference).

Prints per window the median wall time of each, then the ratios status/raw and help/raw as
min/median/max over the windows (target: status ≤ 3 × raw).

The commands run without ``PYTHONDONTWRITEBYTECODE``, as on a user's machine (pip compiles
an installed package's bytecode): the warm-up run writes the ``__pycache__`` files, so the
measured runs do not compile wmproxy's sources each time.

    .venv/bin/python benchmarks/cli_startup.py [--windows 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_support import site, summary

from tests.integration.service import BIN
from wmproxy.client import WMProxyClient

RAW = r"""
import http.client, ssl, sys
host, port, path, proxy, ca, job = sys.argv[1:]
ctx = ssl.create_default_context(capath=ca)
ctx.load_cert_chain(proxy)
body = ('<?xml version="1.0" encoding="utf-8"?><soap-env:Envelope '
        'xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body>'
        '<ns0:getJobStatus xmlns:ns0="http://glite.org/wms/wmproxy"><jobId>' + job + '</jobId>'
        '</ns0:getJobStatus></soap-env:Body></soap-env:Envelope>').encode()
conn = http.client.HTTPSConnection(host, int(port), context=ctx)
conn.request("POST", path, body, {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})
reply = conn.getresponse().read()
assert b"<status>" in reply, reply[:300]
print(reply.decode().split("<status>")[1].split("</status>")[0])
"""


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {done.stderr or done.stdout}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, site(Path(tmp), f"sqlite:///{tmp}/wmproxy.db") as s:
        root, port, proxy, ca_dir = s.root, s.port, s.proxy, s.ca_dir
        client = WMProxyClient(s.deployment.endpoint, str(proxy), str(ca_dir))
        client.delegate("bench")
        job = client.job_register('[ Executable = "/bin/true"; ]', "bench").id
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("WMPROXY_", "X509_", "GLITE_")) and k != "PYTHONDONTWRITEBYTECODE"}
        user_env = dict(env, X509_USER_PROXY=str(proxy), X509_CERT_DIR=str(ca_dir),
                        GLITE_WMS_WMPROXY_ENDPOINT=s.deployment.endpoint, HOME=str(root))
        python = sys.executable
        commands = {
            "raw": [python, "-c", RAW, "localhost", str(port), "/glite_wms_wmproxy_server", str(proxy),
                    str(ca_dir), job],
            "status": [str(BIN / "wmproxy"), "status", job],
            "help": [str(BIN / "wmproxy"), "--help"],
            "python": [python, "-c", "pass"],
        }
        for argv in commands.values():  # warm the page cache and any user cache once
            timed(argv, user_env)
        ratios: dict[str, list[float]] = {"status/raw": [], "help/raw": []}
        medians: dict[str, list[float]] = {name: [] for name in commands}
        for window in range(args.windows):
            times: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.runs):
                for name, argv in commands.items():
                    times[name].append(timed(argv, user_env))
            med = {name: statistics.median(values) for name, values in times.items()}
            for name in commands:
                medians[name].append(med[name])
            ratios["status/raw"].append(med["status"] / med["raw"])
            ratios["help/raw"].append(med["help"] / med["raw"])
            print(f"window {window + 1}: " + "  ".join(f"{n} {med[n] * 1000:.0f} ms" for n in commands))
        print()
        for name, values in medians.items():
            print(f"{name:>10} (s, medians of windows): {summary(values, 2)}")
        for name, values in ratios.items():
            print(f"{name:>10} (ratio):                 {summary(values, 2)}")
        print("target: status/raw <= 3.00")


if __name__ == "__main__":
    main()
