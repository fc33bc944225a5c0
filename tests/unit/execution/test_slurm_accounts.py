"""``sbatch`` and ``scancel`` run as a job's account through the identity switch, which refuses
root and the worker's own identity whatever account the backend was handed (the stored
``jobs.local_account``): the command never runs. The client programs here are stand-ins in a
directory of their own (``bin_dir``) that leave a mark when they run; no cluster is needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wmproxy.execution.identity import Account
from wmproxy.execution.slurm import SlurmCommands, SlurmError


@pytest.fixture
def commands(tmp_path: Path) -> SlurmCommands:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sbatch", "scancel"):
        program = bin_dir / name
        program.write_text(f"#!/bin/sh\necho ran > {tmp_path / name}.ran\necho 42\n")
        program.chmod(0o755)
    return SlurmCommands(bin_dir=bin_dir)


@pytest.mark.parametrize("account", [Account(0, 0, "root"), Account(os.getuid(), 54_321, "worker")],
                         ids=["root", "worker"])
def test_sbatch_and_scancel_are_not_run_as_a_refused_account(commands: SlurmCommands, tmp_path: Path,
                                                             account: Account) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(SlurmError, match=f"^Refusing to run .*sbatch as {account.name}: "):
        commands.submit(script, account, tmp_path)
    with pytest.raises(SlurmError, match=f"^Refusing to run .*scancel as {account.name}: "):
        commands.cancel("42", account)
    assert not (tmp_path / "sbatch.ran").exists() and not (tmp_path / "scancel.ran").exists()
