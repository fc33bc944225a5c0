"""The execution worker's per-cycle database steps, CPU per job, in-process on a SQLite file
database (no processes, no wrappers): the claim of a cycle's jobs (``claim_starts``: start
requests, jobs, the site's CEs, Ready) and the records of Scheduled, Running and Done
(``mark_scheduled``, ``mark_running``, ``end_attempts``), for 4 simple jobs per cycle as one
worker cycle handles them. The jobs are registered through the services (a ``/bin/true`` JDL,
one user's delegation) and started as jobStart does (Waiting + a start request, one
transaction per cycle, not timed).

``--against /path/to/other/checkout`` runs the same measure with the other checkout's code
(``PYTHONPATH``), alternately with this one, and prints both and their ratios.
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

REPO = Path(__file__).resolve().parents[1]
PER = 4
SKIP = 20  # first cycles left out (caches, the statements' first compilation)


def measure(cycles: int) -> tuple[float, float]:
    """Median CPU ms per job over ``cycles`` cycles (the first :data:`SKIP` left out): of the
    claim, and of the three record steps."""
    from tests.support import delegate_in_process
    from wmproxy.admin import initialise
    from wmproxy.config import load_settings
    from wmproxy.domain import JobState, Principal, utcnow
    from wmproxy.security.dn import slash_dn
    from wmproxy.security.pki import create_ca, write_proxy
    from wmproxy.services import execution as service
    from wmproxy.services.retries import AttemptEnd, end_attempts
    from wmproxy.services.runtime import Runtime
    from wmproxy.services.submission import register_job

    root = Path(tempfile.mkdtemp(prefix="wmproxy-steps-"))
    ca = create_ca(root / "certificates", key_path=root / "ca" / "ca-key.pem")
    cred = ca.issue_user("Bench", root / "user")
    write_proxy(cred, root / "user" / "x509up", lifetime=12 * 3600)
    config = root / "wmproxy.conf"
    config.write_text(
        f"[database]\nurl = sqlite:///{root}/wmproxy.db\n"
        f"[security]\nca_dir = {root / 'certificates'}\nstore_key_file = {root}/store.key\nauthorized_users = *\n"
        f"[service]\nhost = localhost\nport = 7443\n[sandbox]\nroot = {root}/sandbox\n"
        f"[execution]\nwork_dir = {root}/work\n")
    settings = load_settings(config)
    initialise(settings)
    rt = Runtime.from_settings(settings)
    principal = Principal(dn=slash_dn(cred.cert.subject))
    delegation = delegate_in_process(rt, principal, root / "user" / "x509up", "bench")
    claims: list[float] = []
    records: list[float] = []
    for _ in range(cycles):
        ids = [register_job(rt, principal, '[ Executable = "/bin/true"; ]', delegation).job_id for _ in range(PER)]
        with rt.uow() as uow:  # what jobStart does
            now = utcnow()
            for job_id in ids:
                job = uow.jobs.get(job_id, for_update=True)
                assert job is not None
                uow.jobs.set_state(job, JobState.WAITING.value, now)
                uow.queue.enqueue(job_id, "start", now)
        start = time.process_time()
        orders = service.claim_starts(rt, "bench", {"local": PER}, limit=8)  # as many free slots as jobs queued
        claimed = time.process_time()
        if sorted(order.job_id for order in orders) != sorted(ids):
            raise SystemExit(f"claimed {[order.job_id for order in orders]}, not {ids}")
        service.mark_scheduled(rt, [(j, f"local:h:1:/w/{j}") for j in ids])
        service.mark_running(rt, [(j, f"local:h:2:/w/{j}") for j in ids])
        end_attempts(rt, [(j, AttemptEnd(JobState.DONE, exit_code=0)) for j in ids])
        claims.append((claimed - start) * 1000 / PER)
        records.append((time.process_time() - claimed) * 1000 / PER)
    rt.session_factory.kw["bind"].dispose()
    return statistics.median(claims[SKIP:]), statistics.median(records[SKIP:])


def _run(repo: Path, cycles: int) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": f"{repo}:{REPO}"}  # the other checkout's wmproxy, this one's tests.support
    out = subprocess.run([sys.executable, __file__, "--cycles", str(cycles), "--one"], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    if out[0] != str(repo / "wmproxy"):
        raise SystemExit(f"ran {out[0]}, not {repo}")
    return float(out[1]), float(out[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=300, help="cycles of 4 jobs per run, default 300")
    parser.add_argument("--runs", type=int, default=3, help="runs per checkout, default 3")
    parser.add_argument("--against", type=Path, help="another checkout to compare with")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        import wmproxy
        claim, records = measure(args.cycles)
        print(Path(wmproxy.__file__).parent, f"{claim:.3f}", f"{records:.3f}")
        return
    print(f"median CPU ms/job over cycles {SKIP + 1}-{args.cycles} of {PER} jobs: claim | record steps | both")
    for run in range(args.runs):
        here = _run(REPO, args.cycles)
        line = f"run {run + 1}: {REPO}: {here[0]:.3f} | {here[1]:.3f} | {sum(here):.3f}"
        if args.against is not None:
            there = _run(args.against.resolve(), args.cycles)
            line += (f"  ||  {args.against}: {there[0]:.3f} | {there[1]:.3f} | {sum(there):.3f}"
                     f"  ||  ratio {here[0] / there[0]:.2f} | {here[1] / there[1]:.2f} | {sum(here) / sum(there):.2f}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
