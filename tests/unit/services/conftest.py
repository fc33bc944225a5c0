"""In-process service fixtures: a Runtime on a fresh, migrated SQLite database per test,
a temporary sandbox root and store key, and Principals of the test PKI's users.

Build variations with :func:`tests.support.build_runtime` (e.g. quotas off) in the test itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.support import (
    build_runtime,
    close_runtime,
    delegate_in_process,
    principal_fixture,
)
from wmproxy.domain import Principal
from wmproxy.services.runtime import Runtime

#: The delegation id the ``delegated`` fixture stores for alice.
DELEGATION = "unit"

alice = principal_fixture("alice")
bob = principal_fixture("bob")


@pytest.fixture
def rt(tmp_path: Path, pki: Pki, template_db: Path) -> Iterator[Runtime]:
    runtime = build_runtime(tmp_path / "state", pki, template_db)
    yield runtime
    close_runtime(runtime)


@pytest.fixture
def delegated(rt: Runtime, alice: Principal, pki: Pki) -> str:
    """Alice's delegation ``unit`` (6 hours), stored through getProxyReq/putProxy."""
    return delegate_in_process(rt, alice, pki.users["alice"].proxy, DELEGATION)
