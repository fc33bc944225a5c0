"""The execution worker's per-cycle record steps, CPU per job: Scheduled, Running and Done
(``mark_scheduled``, ``mark_running``, ``end_attempts``) for 4 simple jobs per cycle, as one
worker cycle records them, in-process on a SQLite file database (no processes, no wrappers).

``--against /path/to/other/checkout`` runs the same measure with the other checkout's code
(``PYTHONPATH``), alternately with this one, and prints both and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PER = 4


def measure(cycles: int) -> float:
    """Median CPU ms per job of the three record steps over ``cycles`` cycles (the first 20 left out)."""
    from wmproxy.domain import JobState, utcnow
    from wmproxy.services import execution as service
    from wmproxy.services.retries import AttemptEnd, end_attempts
    from wmproxy.store import UnitOfWork
    from wmproxy.store.engine import make_engine, make_session_factory
    from wmproxy.store.schema import Base, Job

    engine = make_engine(f"sqlite:///{tempfile.mkdtemp()}/db.sqlite")
    Base.metadata.create_all(engine)
    factory = make_session_factory(engine)
    rt = types.SimpleNamespace(uow=lambda: UnitOfWork(factory), settings=None)
    samples = []
    for cycle in range(cycles):
        now = utcnow()
        ids = [f"https://h:9000/{cycle}-{i}" for i in range(PER)]
        with UnitOfWork(factory) as uow:
            for job_id in ids:
                uow.jobs.add(Job(id=job_id, owner_dn="/CN=x", delegation_id="d", state="Ready", jdl_original="[]",
                                 jdl_registered="[]", sandbox_dir=job_id, created_at=now, updated_at=now), flush=False)
        start = time.process_time()
        service.mark_scheduled(rt, [(j, f"local:h:1:/w/{j}") for j in ids])  # type: ignore[arg-type]
        service.mark_running(rt, [(j, f"local:h:2:/w/{j}") for j in ids])  # type: ignore[arg-type]
        end_attempts(rt, [(j, AttemptEnd(JobState.DONE, exit_code=0)) for j in ids])  # type: ignore[arg-type]
        samples.append((time.process_time() - start) * 1000 / PER)
    return statistics.median(samples[20:])


def _run(repo: Path, cycles: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    out = subprocess.run([sys.executable, __file__, "--cycles", str(cycles), "--one"], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    if out[0] != str(repo / "wmproxy"):
        raise SystemExit(f"ran {out[0]}, not {repo}")
    return float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=300, help="cycles of 4 jobs per run, default 300")
    parser.add_argument("--runs", type=int, default=3, help="runs per checkout, default 3")
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import wmproxy
        print(Path(wmproxy.__file__).parent, f"{measure(args.cycles):.3f}")
        return
    for run in range(args.runs):
        here = _run(REPO, args.cycles)
        line = f"run {run + 1}: {REPO}: {here:.3f} ms/job"
        if args.against is not None:
            there = _run(args.against.resolve(), args.cycles)
            line += f" | {args.against}: {there:.3f} ms/job | ratio {here / there:.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
