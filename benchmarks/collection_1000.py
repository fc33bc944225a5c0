"""Register, start and read the status tree of a 1,000-node collection (issue 3 scale target).

Starts a real deployment (gunicorn over TLS + SQLite by default, or the database URL
given with --database-url) on a throwaway PKI, then through the project's zeep client:
jobRegister of one collection JDL with N inline nodes, jobStart, getJobStatus of the
whole tree, and getSandboxBulkDestURI. Prints each figure in seconds. No worker is
started: the numbers are the service's, not the jobs'.

    .venv/bin/python benchmarks/collection_1000.py [--nodes 1000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf_support import Site, site

from wmproxy.client import WMProxyClient


def collection(nodes: int) -> str:
    body = ",\n".join(
        f'  [ Executable = "/bin/echo"; Arguments = "node {i}"; StdOutput = "o{i}.txt";'
        f' OutputSandbox = {{"o{i}.txt"}}; ]'
        for i in range(nodes)
    )
    return f'[ Type = "collection";\n  Requirements = true;\n  Nodes = {{\n{body}\n  }};\n]'


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.database_url or f"sqlite:///{tmp}/wmproxy.db"
        with site(Path(tmp), db) as s:
            run(s, args.nodes)


def run(s: Site, nodes: int) -> None:
    """Register, start and follow one ``nodes``-node collection on the running site ``s``."""
    db = s.database_url
    client = WMProxyClient(s.deployment.endpoint, str(s.proxy), str(s.ca_dir))
    client.delegate("bench")
    jdl = collection(nodes)
    t0 = time.perf_counter()
    job = client.job_register(jdl, "bench")
    t1 = time.perf_counter()
    client.job_start(job.id)
    t2 = time.perf_counter()
    status = client.get_job_status(job.id)
    t3 = time.perf_counter()
    uris = client.get_sandbox_bulk_dest_uri(job.id, "https")
    t4 = time.perf_counter()
    assert len(job.children) == nodes and len(status.children) == nodes
    assert len(uris) == nodes + 1
    print(f"nodes:                    {nodes}")
    print(f"database:                 {db.split(':')[0]}")
    print(f"jobRegister:              {t1 - t0:.2f} s")
    print(f"jobStart:                 {t2 - t1:.2f} s")
    print(f"register + start:         {t2 - t0:.2f} s")
    print(f"getJobStatus (tree):      {t3 - t2:.2f} s")
    print(f"getSandboxBulkDestURI:    {t4 - t3:.2f} s")


if __name__ == "__main__":
    main()
