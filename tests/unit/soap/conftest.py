"""The WSGI application in-process (no TLS): see :class:`tests.support.SoapApp`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Pki
from tests.support import (
    SoapApp,
    build_runtime,
    caller_from_environ,
    close_runtime,
    principal_fixture,
)
from wmproxy.soap.app import WMProxyApplication

alice = principal_fixture("alice")
bob = principal_fixture("bob")
mallory = principal_fixture("mallory")


@pytest.fixture
def soap(tmp_path: Path, pki: Pki, template_db: Path) -> Iterator[SoapApp]:
    rt = build_runtime(tmp_path / "state", pki, template_db)
    yield SoapApp(WMProxyApplication(rt, authenticate=caller_from_environ), rt)
    close_runtime(rt)
