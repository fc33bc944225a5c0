"""The session's throwaway Slurm cluster and one pool account to run jobs as."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from tests.accounts import AccountSet, local_accounts
from tests.peers.slurm import slurm_cluster

__all__ = ["pool_accounts", "slurm_cluster"]


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
