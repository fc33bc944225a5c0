"""Fixtures: one throwaway grid PKI per test session, fresh ones for tests that revoke."""

from __future__ import annotations

import pytest

from wmproxy.security.pki import create_ca
from wmproxy.security.proxy import make_proxy


@pytest.fixture(scope="session")
def ca(tmp_path_factory):
    return create_ca(tmp_path_factory.mktemp("pki") / "certificates")


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory):
    return create_ca(tmp_path_factory.mktemp("other") / "certificates", "/C=YY/O=Elsewhere/CN=Other CA")


@pytest.fixture(scope="session")
def user(ca):
    return ca.issue_user("Jane Doe")


@pytest.fixture(scope="session")
def proxy(user):
    return make_proxy(user, lifetime=3600)


@pytest.fixture
def fresh_ca(tmp_path):
    return create_ca(tmp_path / "certificates")
