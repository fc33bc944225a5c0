"""A real deployment per test module and database backend: gunicorn over TLS and a worker.

As root (CI): the privilege split of deploy/*.service without mapping
(:func:`tests.integration.isolated.isolated_deployment` with ``mapping="none"``): gunicorn and
the worker run as a throwaway service user and jobs run as that user, since wmproxy-worker
refuses to run jobs as root. Files a job must see (release files...) go in
``deployment.shared``, not in pytest's tmp_path (0700, root's). As another user: everything
runs as that user, in pytest's tmp dirs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Pki
from tests.integration.isolated import standard_deployment
from tests.integration.service import Deployment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployment(pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with standard_deployment(pki, database_url, tmp_path_factory.mktemp("state")) as dep:
        yield dep
