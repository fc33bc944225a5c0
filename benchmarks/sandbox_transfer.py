"""Issue 14, target 5: a 200 MB sandbox upload and download through the HTTPS edge against the
plainest TLS PUT/GET of the same file, side by side in one run.

The baseline (``benchmarks/raw_transfer_wsgi.py``) runs under gunicorn with the service's own
configuration (TLS with client certificates and proxies, workers, threads). Each round uploads
the file to a registered job's input sandbox and to the baseline, then downloads both, one
after the other, each on a new connection. Printed: edge throughput / baseline throughput,
min/median/max over rounds (targets: upload ≥ 0.8, download ≥ 0.9).

    .venv/bin/python benchmarks/sandbox_transfer.py [--megabytes 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_support import Site, client_context, database, site, start_other_app

CHUNK = 1024 * 1024


def put(s: Site, port: int, path: str, source: Path) -> float:
    conn = http.client.HTTPSConnection("localhost", port, context=client_context(s.ca_dir, s.proxy),
                                       blocksize=CHUNK)
    conn.connect()
    size = source.stat().st_size
    with source.open("rb") as f:
        t0 = time.perf_counter()
        conn.request("PUT", path, body=f, headers={"Content-Length": str(size)})
        response = conn.getresponse()
        response.read()
        elapsed = time.perf_counter() - t0
    conn.close()
    if response.status >= 300:
        raise RuntimeError(f"PUT {path}: HTTP {response.status}")
    return size / elapsed


def get(s: Site, port: int, path: str) -> float:
    conn = http.client.HTTPSConnection("localhost", port, context=client_context(s.ca_dir, s.proxy))
    conn.connect()
    t0 = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    total = 0
    while chunk := response.read(CHUNK):
        total += len(chunk)
    elapsed = time.perf_counter() - t0
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"GET {path}: HTTP {response.status}")
    return total / elapsed


def line(name: str, values: list[float], target: float) -> str:
    verdict = "met" if statistics.median(values) >= target else "NOT met"
    return (f"{name:<46} min {min(values):.3f}  median {statistics.median(values):.3f}  max {max(values):.3f}"
            f"  (target >= {target}: {verdict} at the median)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = args.megabytes * 1000 * 1000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = root / "payload.bin"
        with source.open("wb") as f:
            for _ in range(size // CHUNK):
                f.write(os.urandom(CHUNK))
            f.write(os.urandom(size % CHUNK))
        raw_dir = root / "raw"
        raw_dir.mkdir()
        no_quota = {"WMPROXY_JOBS_QUOTA_SOFT_LIMIT": "0", "WMPROXY_JOBS_QUOTA_HARD_LIMIT": "0"}
        with database("sqlite", root) as url, site(root, url, max_isb=2 * size, env=no_quota) as s:
            from wmproxy.client import WMProxyClient

            client = WMProxyClient(s.deployment.endpoint, str(s.proxy), str(s.ca_dir))
            client.delegate("bench")
            job = client.job_register('[ Executable = "/bin/true"; Requirements = true; ]', "bench")
            edge_path = client.get_sandbox_dest_uri(job.id, "https")[0].split(f":{s.port}", 1)[1] + "/payload.bin"
            raw_port, _ = start_other_app(s, "benchmarks.raw_transfer_wsgi:application",
                                          {"WMPROXY_BENCH_RAW_DIR": str(raw_dir)})
            up: list[float] = []
            down: list[float] = []
            for _ in range(args.rounds):
                raw_up = put(s, raw_port, "/payload.bin", source)
                edge_up = put(s, s.port, edge_path, source)
                raw_down = get(s, raw_port, "/payload.bin")
                edge_down = get(s, s.port, edge_path)
                up.append(edge_up / raw_up)
                down.append(edge_down / raw_down)
                print(f"  upload MB/s: raw {raw_up / 1e6:.0f}, edge {edge_up / 1e6:.0f}; "
                      f"download MB/s: raw {raw_down / 1e6:.0f}, edge {edge_down / 1e6:.0f}", flush=True)
            print(line(f"sandbox upload / raw TLS PUT ({args.megabytes} MB)", up, 0.8))
            print(line(f"sandbox download / raw TLS GET ({args.megabytes} MB)", down, 0.9))


if __name__ == "__main__":
    main()
