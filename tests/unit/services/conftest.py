"""In-process service fixtures: a Runtime on a fresh, migrated SQLite database per test,
a temporary sandbox root and store key, and Principals of the test PKI's users.

Build variations with :func:`tests.support.build_runtime` (e.g. quotas off) in the test itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Pki
from tests.support import (
    SoapApp,
    build_runtime,
    caller_from_environ,
    close_runtime,
    delegate_in_process,
    principal_fixture,
    principal_of,
)
from wmproxy.config import BrokeringSettings, SlurmSettings
from wmproxy.domain import Principal
from wmproxy.services.runtime import Runtime
from wmproxy.soap.app import WMProxyApplication

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


@pytest.fixture
def soap(rt: Runtime, delegated: str) -> SoapApp:
    """The SOAP application in process on ``rt``, alice's ``unit`` delegation stored; each
    request runs as the ``caller`` it is given (:class:`tests.support.SoapApp`)."""
    return SoapApp(WMProxyApplication(rt, authenticate=caller_from_environ), rt)


@pytest.fixture
def broker_rt(tmp_path: Path, pki: Pki, template_db: Path) -> Iterator[Callable[..., Runtime]]:
    """``make(catalogue="", **brokering)``: a Runtime whose CE catalogue holds the ClassAds
    ``catalogue`` (none: the built-in local CE) and whose ``[brokering]`` settings are
    overridden by ``brokering`` (``[slurm]`` ones by a ``slurm`` dict, ``[security]`` ones by
    a ``security`` dict); alice has her ``unit`` delegation there."""
    made: list[Runtime] = []

    def make(catalogue: str = "", slurm: dict[str, Any] | None = None, security: dict[str, Any] | None = None,
             **brokering: Any) -> Runtime:
        root = tmp_path / f"broker{len(made)}"
        root.mkdir()
        path = ""
        if catalogue:
            path = str(root / "ce-catalogue.ads")
            Path(path).write_text(catalogue)
        runtime = build_runtime(root / "state", pki, template_db, jobs={"ce_catalogue": path}, security=security or {})
        runtime.settings = dataclasses.replace(
            runtime.settings, brokering=BrokeringSettings(**brokering), slurm=SlurmSettings(**(slurm or {})))
        made.append(runtime)
        delegate_in_process(runtime, principal_of(pki, "alice"), pki.users["alice"].proxy, DELEGATION)
        return runtime

    yield make
    for runtime in made:
        close_runtime(runtime)
