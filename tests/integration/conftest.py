"""A real deployment per test module and database backend: gunicorn over TLS and a worker.

As root (CI): the privilege split of deploy/*.service without mapping
(:func:`tests.integration.isolated.isolated_deployment` with ``mapping="none"``): gunicorn and
the worker run as a throwaway service user and jobs run as that user, since wmproxy-worker
refuses to run jobs as root. Files a job must see (release files...) go in
``deployment.shared``, not in pytest's tmp_path (0700, root's). As another user: everything
runs as that user, in pytest's tmp dirs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import Pki
from tests.integration.isolated import isolated_deployment
from tests.integration.service import BIN, Deployment, free_port, write_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployment(pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if os.geteuid() == 0:
        with isolated_deployment(pki, database_url, mapping="none") as iso:
            yield iso.deployment
        return
    state = tmp_path_factory.mktemp("state")
    port = free_port()
    config = state / "wmproxy.conf"
    write_config(config, db_url=database_url, ca_dir=pki.ca_dir, host_cert=pki.host_cert, host_key=pki.host_key,
                 state=state, port=port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WMPROXY_", "X509_"))}
    env.update(WMPROXY_CONFIG=str(config), X509_CERT_DIR=str(pki.ca_dir), X509_USER_PROXY=str(pki.users["alice"].proxy),
               PATH=f"{BIN}:{env.get('PATH', '')}")
    shared = state / "shared"
    shared.mkdir()
    dep = Deployment(config=config, state=state, port=port, env=env, shared=shared)
    result = dep.run(str(BIN / "wmproxy-admin"), "init")
    assert result.returncode == 0, result.stderr
    dep.start_gunicorn()
    dep.start_worker()
    try:
        yield dep
    finally:
        dep.stop()
