"""Time to match 10,000 waiting jobs against 100 CEs (issue 9), two ways.

1. The broker's matching alone (``wmproxy.services.brokering.choose_ce``): each job's
   registered JDL parsed, completed as for matching (``matching_ad``) and matched against
   the 100 CE ads; realistic ``Requirements`` (``other.`` scope, ``member``, ``RegExp``,
   ``&&``/``||``), ``Rank = -other.GlueCEStateEstimatedResponseTime`` or free CPUs, every
   tenth job with ``FuzzyRank``; CEs with their own ``Requirements`` on the job's VO.
2. The same jobs through ``claim_next_start`` on a migrated SQLite database (one
   transaction per job: claim the request, read the job, read the CE states, match, store
   the destination), the way a worker claims them.

Standalone::

    .venv/bin/python benchmarks/matching.py [--jobs 10000] [--ces 100] [--claims 10000] [--seed 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import classad2
import sqlalchemy as sa

from wmproxy.admin import upgrade_database
from wmproxy.config import DatabaseSettings, ExecutionSettings, JobsSettings, SandboxSettings, Settings
from wmproxy.domain import utcnow
from wmproxy.jdl import parse_jdl
from wmproxy.sandbox.storage import FilesystemSandboxStorage
from wmproxy.security.sealing import Sealer
from wmproxy.services.brokering import choose_ce
from wmproxy.services.execution import claim_next_start
from wmproxy.services.matchmaking import ce_catalogue, ce_view, matching_ad
from wmproxy.services.runtime import Runtime
from wmproxy.store import UnitOfWork, make_engine, make_session_factory
from wmproxy.store.schema import Delegation, ExecutionRequest, Job

SITES = ("cern.ch", "in2p3.fr", "gridka.de", "cnaf.infn.it", "pic.es", "ral.ac.uk", "nikhef.nl", "ndgf.org")
VOS = ("atlas", "cms", "lhcb", "alice", "dteam")
RELEASES = tuple(f"VO-atlas-release-{n}" for n in range(17, 27))
DN = "/C=XX/O=Grid/CN=Bench User"
#: The owner's proxy's primary FQAN: the VO the CEs' own Requirements see (``ce_view``).
FQAN = "/atlas/Role=NULL"


def catalogue(count: int, rng: random.Random) -> str:
    """``count`` CE ads in a catalogue file's text."""
    ads = []
    for i in range(count):
        site = SITES[i % len(SITES)]
        vos = rng.sample(VOS, rng.randint(1, 3))
        software = ", ".join(f'"{r}"' for r in rng.sample(RELEASES, rng.randint(2, 6)))
        vo_rule = " || ".join(f'other.VirtualOrganisation == "{vo}"' for vo in vos)
        ads.append(
            f'[ GlueCEUniqueID = "ce{i:03d}.{site}:8443/cream-pbs-q{i % 4}"; GlueCEInfoHostName = "ce{i:03d}.{site}";'
            f' GlueCEStateStatus = "{rng.choice(("Production",) * 9 + ("Draining",))}";'
            f" GlueCEInfoTotalCPUs = {rng.randint(64, 4096)}; GlueCEStateFreeCPUs = {rng.randint(0, 512)};"
            f" GlueCEStateWaitingJobs = {rng.randint(0, 2000)}; GlueCEStateRunningJobs = {rng.randint(0, 4000)};"
            f" GlueCEStateEstimatedResponseTime = {rng.randint(0, 86400)};"
            f" GlueCEPolicyMaxWallClockTime = {rng.choice((720, 1440, 2880, 4320))};"
            f" GlueHostMainMemoryRAMSize = {rng.choice((2048, 4096, 8192, 16384))};"
            f" GlueHostApplicationSoftwareRunTimeEnvironment = {{ {software} }};"
            f" Requirements = {vo_rule}; ]"
        )
    return "\n".join(ads)


def job_jdl(i: int, rng: random.Random) -> str:
    """A registered JDL as users write them: Glue requirements, software tags, site regexps."""
    sites = "|".join(rng.sample(SITES, rng.randint(2, 5)))
    rank = rng.choice(("-other.GlueCEStateEstimatedResponseTime", "other.GlueCEStateFreeCPUs"))
    fuzzy = "FuzzyRank = true;" if i % 10 == 0 else ""
    return (
        f'[ Executable = "/bin/sh"; Arguments = "run.sh {i}"; StdOutput = "std.out"; StdError = "std.err";'
        f' OutputSandbox = {{"std.out", "std.err"}}; VirtualOrganisation = "{rng.choice(VOS[:3])}";'
        f' Requirements = other.GlueCEStateStatus == "Production"'
        f" && other.GlueCEPolicyMaxWallClockTime >= {rng.choice((600, 1440, 2880))}"
        f' && member("{rng.choice(RELEASES)}", other.GlueHostApplicationSoftwareRunTimeEnvironment)'
        f' && RegExp("{sites}", other.GlueCEUniqueID)'
        f" && other.GlueHostMainMemoryRAMSize >= {rng.choice((2048, 4096))};"
        f" Rank = {rank}; {fuzzy} RetryCount = 3; ShallowRetryCount = 3; ]"
    )


def match_alone(jdls: list[str], ces: tuple[classad2.ClassAd, ...], rng: random.Random) -> tuple[float, int]:
    start = time.perf_counter()
    matched = 0
    for text in jdls:
        job = matching_ad(parse_jdl(text), DN, FQAN)
        if choose_ce(job, ces, rng, for_ces=ce_view(job, FQAN)) is not None:  # as a claim matches it
            matched += 1
    return time.perf_counter() - start, matched


def through_claims(root: Path, catalogue_file: Path, jdls: list[str]) -> tuple[float, int, int]:
    url = f"sqlite:///{root}/bench.db"
    settings = Settings(database=DatabaseSettings(url=url), sandbox=SandboxSettings(root=str(root / "sandbox")),
                        execution=ExecutionSettings(work_dir=str(root / "work")),
                        jobs=JobsSettings(ce_catalogue=str(catalogue_file)))
    upgrade_database(settings)
    engine = make_engine(url)
    rt = Runtime(settings=settings, session_factory=make_session_factory(engine),
                 sealer=Sealer(Sealer.generate_key()), storage=FilesystemSandboxStorage(root / "sandbox"))
    now = utcnow()
    with UnitOfWork(rt.session_factory) as uow:
        # The owner's delegation: without one every claim leaves its job waiting for a proxy
        # (nothing is matched). The claim only unseals it and hands it to the start order.
        uow.session.add(Delegation(owner_dn=DN, delegation_id="bench", sealed_proxy=rt.sealer.seal(b"bench proxy"),
                                   not_before=now - dt.timedelta(hours=1), not_after=now + dt.timedelta(days=1),
                                   fqans=FQAN, created_at=now, updated_at=now))
        uow.session.add_all(
            Job(id=f"https://bench:9000/job{i:05d}", owner_dn=DN, delegation_id="bench", state="Waiting",
                jdl_original=text, jdl_registered=text, sandbox_dir=f"SandboxDir/jo/job{i:05d}",
                created_at=now, updated_at=now)
            for i, text in enumerate(jdls))
        uow.session.flush()
        uow.session.add_all(ExecutionRequest(job_id=f"https://bench:9000/job{i:05d}", command="start",
                                             created_at=now) for i in range(len(jdls)))
    start = time.perf_counter()
    claimed = 0
    while True:  # a call gives up after a run of unmatched jobs: go on while any request is due
        if claim_next_start(rt, "bench") is not None:
            claimed += 1
        elif not _due(rt):
            break
    elapsed = time.perf_counter() - start
    with UnitOfWork(rt.session_factory) as uow:
        waiting = uow.jobs.count_at(("Waiting",))
    engine.dispose()
    return elapsed, claimed, waiting


def _due(rt: Runtime) -> bool:
    now = utcnow()
    with UnitOfWork(rt.session_factory) as uow:
        return uow.session.scalar(
            sa.select(sa.func.count()).select_from(ExecutionRequest).where(
                ExecutionRequest.done_at.is_(None), ExecutionRequest.claimed_by.is_(None),
                sa.or_(ExecutionRequest.not_before.is_(None), ExecutionRequest.not_before <= now))) != 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="waiting jobs (default 10000)")
    parser.add_argument("--ces", type=int, default=100, help="CEs in the catalogue (default 100)")
    parser.add_argument("--claims", type=int, default=10_000, help="jobs matched through claim_next_start "
                        "on SQLite (default 10000, 0 = skip)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)  # noqa: S311 - reproducible synthetic data
    with tempfile.TemporaryDirectory(prefix="matching-bench-") as tmp:
        root = Path(tmp)
        catalogue_file = root / "ce-catalogue.ads"
        catalogue_file.write_text(catalogue(args.ces, rng))
        ces = ce_catalogue(str(catalogue_file))
        jdls = [job_jdl(i, rng) for i in range(args.jobs)]
        elapsed, matched = match_alone(jdls, ces, rng)
        print(f"CEs:                          {len(ces)}")
        print(f"jobs:                         {args.jobs} ({matched} matched a CE)")
        print(f"matching alone:               {elapsed:.2f} s  ({args.jobs / elapsed:,.0f} jobs/s)")
        if args.claims:
            elapsed, claimed, waiting = through_claims(root, catalogue_file, jdls[: args.claims])
            print(f"claim_next_start on SQLite:   {elapsed:.2f} s for {args.claims} jobs "
                  f"({args.claims / elapsed:,.0f} jobs/s; {claimed} Ready, {waiting} left Waiting)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
