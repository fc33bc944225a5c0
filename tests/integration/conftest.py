"""Real deployments for the integration tests: gunicorn over TLS and a worker.

As root (CI): the privilege split of deploy/*.service without mapping
(:func:`tests.integration.isolated.isolated_deployment` with ``mapping="none"``): gunicorn and
the worker run as a throwaway service user and jobs run as that user, since wmproxy-worker
refuses to run jobs as root. Files a job must see (release files...) go in
``deployment.shared``, not in pytest's tmp_path (0700, root's). As another user: everything
runs as that user, in pytest's tmp dirs.

The ``deployment`` fixture here is ONE deployment per database backend, started by the first
module that asks for it and shared by every module that does not define its own (starting
one costs several seconds of CPU: five Python processes import the service). Each module's
tests run on SQLite, then on PostgreSQL (``database_kind``); when a module is done, the job
wrappers it left running are killed so the next module finds every slot free. A module whose
tests need a deployment of their own (other settings, counting rows or metrics from zero,
stopping or adding workers) defines ``deployment`` itself on ``database_url`` (a fresh database
per module) with :func:`tests.integration.isolated.standard_deployment`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from tests.conftest import Pki, _postgres_database
from tests.integration.isolated import kill_jobs_of, standard_deployment
from tests.integration.service import Deployment

pytestmark = pytest.mark.integration


class SharedDeployments:
    """The session's shared deployments, one per database backend, started on first use."""

    def __init__(self, pki: Pki, tmp_path_factory: pytest.TempPathFactory, stack: ExitStack) -> None:
        self._pki, self._tmp, self._stack = pki, tmp_path_factory, stack
        self._started: dict[str, Deployment] = {}

    def get(self, kind: str) -> Deployment:
        if kind not in self._started:
            if kind == "sqlite":
                url = f"sqlite:///{self._tmp.mktemp('shared-db')}/wmproxy.db"
            else:
                url = self._stack.enter_context(contextmanager(_postgres_database)())
            self._started[kind] = self._stack.enter_context(
                standard_deployment(self._pki, url, self._tmp.mktemp(f"shared-state-{kind}")))
        return self._started[kind]


@pytest.fixture(scope="session")
def shared_deployments(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedDeployments]:
    with ExitStack() as stack:
        yield SharedDeployments(pki, tmp_path_factory, stack)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_kind(request: pytest.FixtureRequest) -> str:
    """The backend of the shared deployment a module's tests run against (ids as ``database_url``'s)."""
    return str(request.param)


@pytest.fixture(scope="module")
def deployment(shared_deployments: SharedDeployments, database_kind: str) -> Iterator[Deployment]:
    dep = shared_deployments.get(database_kind)
    yield dep
    kill_jobs_of(dep)

