"""Issue 14, target 5: a 200 MB sandbox upload and download through the HTTPS edge against the
plainest TLS PUT/GET of the same file, side by side in one run.

The baseline (``benchmarks/raw_transfer_wsgi.py``) runs under gunicorn with the service's own
configuration (TLS with client certificates and proxies, workers, threads); it stores an upload
as the edge does (a temporary file renamed over the target). Each round uploads the file to a
registered job's input sandbox and to the baseline, then downloads both, each on a new
connection; the edge goes first in odd rounds and the baseline in even ones, so that a swing of
the machine's load, or the state one transfer leaves (page cache, dirty pages), falls on both.
Printed: edge throughput / baseline throughput, min/median/max over rounds (targets: upload ≥ 0.8,
download ≥ 0.9), and the inverse ratio of the server CPU (user + system, the gunicorn process
group) per transfer, which moves less with the load. ``--in-place-baseline`` also measures the
baseline of the first two passes, which truncated the target and rewrote it in place.

    .venv/bin/python benchmarks/sandbox_transfer.py [--megabytes 200] [--rounds 6] [--in-place-baseline]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_support import Site, client_context, database, group_cpu, site, start_other_app

CHUNK = 1024 * 1024


def measured(pgid: int, transfer: Callable[[], float]) -> tuple[float, float]:
    """``(bytes per second, server CPU seconds)`` of one ``transfer()`` (which returns its rate)."""
    before = group_cpu(pgid)
    rate = transfer()
    return rate, group_cpu(pgid) - before


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
    return (f"{name:<58} min {min(values):.3f}  median {statistics.median(values):.3f}  max {max(values):.3f}"
            f"  (target >= {target}: {verdict} at the median)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--in-place-baseline", action="store_true",
                        help="also measure the earlier baseline, which rewrote its file in place")
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
            servers = {"edge": (s.port, s.pgid, edge_path)}
            raw_port, raw_pgid = start_other_app(s, "benchmarks.raw_transfer_wsgi:application",
                                                 {"WMPROXY_BENCH_RAW_DIR": str(raw_dir)})
            servers["raw"] = (raw_port, raw_pgid, "/payload.bin")
            if args.in_place_baseline:
                in_place_dir = root / "in-place"
                in_place_dir.mkdir()
                port, pgid = start_other_app(s, "benchmarks.raw_transfer_wsgi:application",
                                             {"WMPROXY_BENCH_RAW_DIR": str(in_place_dir),
                                              "WMPROXY_BENCH_RAW_IN_PLACE": "1"})
                servers["in-place"] = (port, pgid, "/payload.bin")
            ratios: dict[str, list[float]] = {}
            for r in range(args.rounds):
                order = list(servers) if r % 2 == 0 else list(reversed(servers))
                up: dict[str, tuple[float, float]] = {}
                down: dict[str, tuple[float, float]] = {}
                for name in order:
                    port, pgid, path = servers[name]
                    up[name] = measured(pgid, lambda port=port, path=path: put(s, port, path, source))
                for name in order:
                    port, pgid, path = servers[name]
                    down[name] = measured(pgid, lambda port=port, path=path: get(s, port, path))
                for base in servers:
                    if base == "edge":
                        continue
                    for what, values in (("upload", up), ("download", down)):
                        ratios.setdefault(f"{what} rate {base}", []).append(values["edge"][0] / values[base][0])
                        edge_cpu = max(values["edge"][1], 1e-3)
                        ratios.setdefault(f"{what} cpu {base}", []).append(values[base][1] / edge_cpu)
                print(f"  round {r + 1} ({order[0]} first): " + "; ".join(
                    f"{name} up {up[name][0] / 1e6:.0f} MB/s {up[name][1]:.2f} s CPU, "
                    f"down {down[name][0] / 1e6:.0f} MB/s {down[name][1]:.2f} s CPU" for name in servers), flush=True)
            for base in servers:
                if base == "edge":
                    continue
                label = "raw TLS" if base == "raw" else "in-place raw"
                mb = args.megabytes
                print(line(f"sandbox upload / {label} PUT ({mb} MB)", ratios[f"upload rate {base}"], 0.8))
                print(line(f"sandbox download / {label} GET ({mb} MB)", ratios[f"download rate {base}"], 0.9))
                print(line(f"  upload, inverse ratio of server CPU ({label})", ratios[f"upload cpu {base}"], 0.8))
                print(line(f"  download, inverse ratio of server CPU ({label})", ratios[f"download cpu {base}"], 0.9))

if __name__ == "__main__":
    main()
