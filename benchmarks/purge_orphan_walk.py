"""What the purger's walks of the sandbox areas cost a pass (``wmproxy.services.purge``): a pass
at 1,000 job areas and at 100,000, side by side in one run, and within each the pass with and
without its orphan walk.

Two deployments on SQLite (``--database postgresql`` for PostgreSQL) are made in one run:
*small* with ``--small`` job areas (1,000), *large* with ``--large`` (100,000). Every area is a
real job area (``create_job_area``, one 1 kB input file) whose job row exists (Running: no rule
takes it), backdated past ``registered_age``, so the orphan walk does all its work for each one
(listed, ``lstat``, looked up in the database ``batch`` ids at a time) and removes nothing: the
steady state of a busy service, where every pass that ends its backlog walks every area. No job
is due, so a pass is: the listing of the areas (``area_dirs``, also needed to settle
``.purging-*`` leftovers, done by every pass), the settling, the job query, the orphan walk,
the credentials. Each round runs, per deployment and interleaved (small, large): one whole
pass (:func:`purge`), a pass without its orphan walk, then the listing and the orphan walk alone.
Printed per deployment, min/median/max over rounds: milliseconds of each, microseconds of the
walk per area and the ratio pass / pass without the walk; then the ratios large / small. The
page cache is warm after the first round (on a cold cache, or on NFS, every ``lstat`` and
directory read may be a round trip).

    .venv/bin/python benchmarks/purge_orphan_walk.py [--small 1000] [--large 100000] [--rounds 5]
        [--root /var/tmp] [--database sqlite]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from perf_support import database, summary

from tests.admin.support import settings_for
from wmproxy.admin import initialise
from wmproxy.domain import utcnow
from wmproxy.services import purge as purging
from wmproxy.services.runtime import Runtime
from wmproxy.store.schema import Job

OWNER = "/C=XX/O=wmproxy-demo/OU=Users/CN=Bench"
BATCH = 5000


@contextmanager
def deployment(root: Path, kind: str, areas: int) -> Iterator[Runtime]:
    """A deployment under ``root`` with ``areas`` live jobs and their areas, all older than
    ``registered_age``."""
    with database(kind, root) as url:
        # no certificate is read: the paths are only named
        trust = SimpleNamespace(ca_dir=root / "ca", host_cert=root / "host.pem", host_key=root / "host.key")
        settings = settings_for(root / "state", url, trust)  # type: ignore[arg-type]
        initialise(settings)
        rt = Runtime.from_settings(settings)
        try:
            started = time.perf_counter()
            old = time.time() - 3 * 86400
            when = utcnow() - dt.timedelta(days=3)
            ids = [f"https://localhost:7443/{uuid.uuid4().hex[:22]}" for _ in range(areas)]
            for start in range(0, areas, BATCH):
                chunk = ids[start:start + BATCH]
                with rt.uow() as uow:
                    uow.session.add_all(Job(id=job_id, owner_dn=OWNER, delegation_id="d", state="Running",
                                            jdl_original="[]", jdl_registered="[]", sandbox_dir="",
                                            created_at=when, updated_at=when) for job_id in chunk)
                for job_id in chunk:
                    area = rt.storage.create_job_area(job_id)
                    (rt.storage.create_area(rt.storage.job_rel_dir(job_id), "input") / "in.txt").write_bytes(
                        b"i" * 1024)
                    os.utime(area, (old, old))
            print(f"  {areas} job areas made in {time.perf_counter() - started:.1f} s", flush=True)
            yield rt
        finally:
            rt.session_factory.kw["bind"].dispose()


def _no_walk(*_args: object) -> None:
    """The orphan walk left out of a pass."""


def one_round(rt: Runtime) -> tuple[float, float, float, float]:
    """Milliseconds of a whole pass, of a pass without the orphan walk, of the listing of the
    areas, of the orphan walk alone."""
    started = time.perf_counter()
    report = purging.purge(rt)
    whole = time.perf_counter() - started
    assert report.errors == [] and report.areas == [] and report.jobs == [], report
    walk_areas = purging._purge_orphan_areas
    purging._purge_orphan_areas = _no_walk  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        purging.purge(rt)
        without = time.perf_counter() - started
    finally:
        purging._purge_orphan_areas = walk_areas
    started = time.perf_counter()
    areas = rt.storage.area_dirs()
    listing = time.perf_counter() - started
    started = time.perf_counter()
    walk_areas(rt, purging.PurgeReport(dry_run=False), areas, utcnow())
    walk = time.perf_counter() - started
    return whole * 1e3, without * 1e3, listing * 1e3, walk * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--root", default="/var/tmp")  # noqa: S108 - TemporaryDirectory makes a private one in it
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    sizes = {"small": args.small, "large": args.large}
    with ExitStack() as stack:
        runtimes = {}
        for name, areas in sizes.items():
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=args.root, prefix=f"purge-{name}-")))
            runtimes[name] = stack.enter_context(deployment(root, args.database, areas))
        results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in sizes}
        for _ in range(args.rounds + 1):  # the first round warms the page cache: not counted
            for name, rt in runtimes.items():
                results[name].append(one_round(rt))
        for name in sizes:
            results[name] = results[name][1:]
        print(f"purge pass, {args.database}, {args.rounds} rounds (milliseconds unless said)")
        for name, areas in sizes.items():
            rows = results[name]
            print(f"{name} ({areas} areas)")
            print(f"  {'pass':<44} {summary([r[0] for r in rows], 1)}")
            print(f"  {'pass without the orphan walk':<44} {summary([r[1] for r in rows], 1)}")
            print(f"  {'listing of the areas (area_dirs, in both)':<44} {summary([r[2] for r in rows], 1)}")
            print(f"  {'orphan walk alone':<44} {summary([r[3] for r in rows], 1)}")
            print(f"  {'orphan walk per area (us)':<44} {summary([r[3] / areas * 1e3 for r in rows], 2)}")
            print(f"  {'ratio pass / pass without the orphan walk':<44} {summary([r[0] / r[1] for r in rows], 2)}")
        small, large = results["small"], results["large"]
        print(f"large / small ({args.large / args.small:g} x the areas)")
        pairs = list(zip(small, large, strict=True))
        print(f"  {'pass':<44} {summary([b[0] / a[0] for a, b in pairs], 1)}")
        print(f"  {'pass without the orphan walk':<44} {summary([b[1] / a[1] for a, b in pairs], 1)}")
        print(f"  {'orphan walk alone':<44} {summary([b[3] / a[3] for a, b in pairs], 1)}")
        print(f"  median pass: small {statistics.median(r[0] for r in small):.1f} ms, "
              f"large {statistics.median(r[0] for r in large):.1f} ms")


if __name__ == "__main__":
    main()
