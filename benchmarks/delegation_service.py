"""The service's part of a delegation, CPU per call: getProxyReq's ``create_proxy_request`` (a
pooled key claimed into the pending request) and putProxy's ``store_proxy`` (the take, the
checks of the signed chain, the sealing and the store), in-process, without SOAP, on SQLite or
PostgreSQL. The client signs the CSR between the two calls, outside the clock; the key pool is
filled before the timed pairs (16 keys made once, each sealed again for several rows).

Each figure is the median CPU (``time.process_time``) of one call over ``--pairs`` pairs, after
20 left out. ``--against /path/to/other/checkout`` runs the same measure with the other
checkout's code (``PYTHONPATH``) in turns with this one (``--rounds`` turns each, the order
swapped every round) and prints both, min / median / max over the rounds.

    .venv/bin/python benchmarks/delegation_service.py [--database sqlite|postgresql] [--pairs 300]
        [--rounds 3] [--against /work/base]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_support import DELEGATION_IDS, summary

REPO = Path(__file__).resolve().parents[1]
SKIPPED = 20
#: Distinct RSA keys behind the pooled rows of a run.
KEYS = 16


def measure(database_kind: str, pairs: int) -> dict[str, float]:
    """Median CPU ms of getProxyReq's and putProxy's service calls, and of the pair."""
    from perf_support import database
    from soap_inprocess import build

    from wmproxy.domain import Principal
    from wmproxy.security.dn import slash_dn
    from wmproxy.security.proxy import load_credential, sign_proxy_request
    from wmproxy.services import delegation

    root = Path(tempfile.mkdtemp())
    with database(database_kind, root) as url:
        bench = build(root, url)
        credential = load_credential(bench.proxy)
        principal = Principal(dn=slash_dn(credential.full_chain[-1].subject), fqans=())
        total = pairs + SKIPPED
        _fill_pool(bench.rt, total)
        requests, puts = [], []
        for i in range(total):
            delegation_id = f"pair{i % DELEGATION_IDS}"
            start = time.process_time()
            csr = delegation.create_proxy_request(bench.rt, principal, delegation_id)[1]
            requests.append(time.process_time() - start)
            signed = sign_proxy_request(csr.encode(), credential, lifetime=3600).decode()
            start = time.process_time()
            delegation.store_proxy(bench.rt, principal, delegation_id, signed)
            puts.append(time.process_time() - start)
        requests, puts = requests[SKIPPED:], puts[SKIPPED:]
        return {
            "getProxyReq": statistics.median(requests) * 1000,
            "putProxy": statistics.median(puts) * 1000,
            "pair": statistics.median(r + p for r, p in zip(requests, puts, strict=True)) * 1000,
        }


def _fill_pool(rt: Any, rows: int) -> None:
    """``rows`` pooled keys, made of :data:`KEYS` distinct RSA keys sealed again for each row
    (a benchmark shortcut: the service hands each row out once, whatever key it holds)."""
    from wmproxy.domain import utcnow
    from wmproxy.security.delegation import new_proxy_request

    bits = rt.settings.security.delegation_key_bits
    made = [new_proxy_request(bits) for _ in range(KEYS)]
    with rt.uow() as uow:
        for i in range(rows):
            key_pem, csr_pem = made[i % KEYS]
            uow.key_pool.add(rt.sealer.seal(key_pem), csr_pem.decode(), bits, utcnow())


def _run(repo: Path, database_kind: str, pairs: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(repo), "WMPROXY_BENCH_CHECKOUT": str(repo)}  # perf_support imports it
    out = subprocess.run(
        [sys.executable, __file__, "--database", database_kind, "--pairs", str(pairs), "--one"],
        env=env, check=True, capture_output=True, text=True, cwd=repo,
    ).stdout.strip().splitlines()[-1]
    result = json.loads(out)
    if result.pop("module") != str(repo / "wmproxy"):
        raise SystemExit(f"ran another checkout than {repo}")
    return {k: float(v) for k, v in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import wmproxy

        result = measure(args.database, args.pairs)
        print(json.dumps({"module": str(Path(wmproxy.__file__).parent), **result}))
        return
    sides = [REPO] + ([args.against.resolve()] if args.against is not None else [])
    figures: dict[Path, list[dict[str, float]]] = {side: [] for side in sides}
    for round_ in range(args.rounds):
        for side in sides if round_ % 2 == 0 else sides[::-1]:
            figures[side].append(_run(side, args.database, args.pairs))
    print(f"{args.database}, {args.pairs} pairs a round, {args.rounds} rounds; "
          "CPU ms per call over the rounds (each round's figure a median)")
    for part in ("getProxyReq", "putProxy", "pair"):
        line = f"  {part:12s}" + " | ".join(
            f"{side}: {summary([f[part] for f in figures[side]])}" for side in sides)
        print(line)


if __name__ == "__main__":
    main()
