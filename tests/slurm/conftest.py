"""The session's throwaway Slurm cluster, one pool account to run jobs as, and the Slurm
backend's fixtures (:mod:`tests.slurm.slurm_support`)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.accounts import AccountSet, local_accounts
from tests.peers.slurm import slurm_cluster
from tests.slurm.slurm_support import account, backend, input_dir, work_root

__all__ = ["account", "backend", "input_dir", "pool_accounts", "slurm_cluster", "work_root"]


@pytest.fixture(scope="session")
def pool_accounts() -> Iterator[AccountSet]:
    """One throwaway local account ``name("slurm001")`` in its own group ``name("slurm")``."""
    from tests.conftest import need_peer

    context = local_accounts({"slurm": ["slurm001"]})
    try:
        created = context.__enter__()
    except (OSError, subprocess.SubprocessError) as exc:
        need_peer(f"cannot create a local account for the Slurm tests (useradd as root): {exc}")
    try:
        yield created
    finally:
        context.__exit__(None, None, None)
