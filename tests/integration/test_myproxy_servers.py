"""A JDL may name only the MyProxy servers the site allows (``[renewal] myproxy_allowed_servers``
plus the configured defaults), on the wire: one deployment per database backend (gunicorn over
TLS with the test PKI, an execution worker), driven by a zeep client built from the reference WSDL.

A refused ``MyProxyServer`` gives the typed GenericFault (1220, BaseFaultType filled) to
jobRegister and jobSubmit, for a simple job and for a compound job of which one node names the
server, and writes nothing: no job, renewal record, delegation row or sandbox file. An allowed
server registers the job and its renewal record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import zeep

from tests.conftest import Pki
from tests.fuzz.support import deployment_footprint
from tests.integration.isolated import standard_deployment
from tests.integration.refclient import ReferenceClient, reference_client
from tests.integration.service import Deployment
from tests.support import assert_fault, delegate
from wmproxy.config import load_settings

pytestmark = pytest.mark.integration

DELEGATION = "myproxy-servers"
ALLOWED = "myproxy.example.org, *.grid.example.org:7600"
DEFAULT = "default.example.org:7512"
REFUSED = "10.0.0.5:22"


def simple(server: str) -> str:
    return f'[ Executable = "/bin/true"; MyProxyServer = "{server}"; ]'


def collection(node_server: str) -> str:
    """Two nodes, the second with its own ``MyProxyServer`` (the parent names an allowed one)."""
    return ('[ Type = "collection"; MyProxyServer = "myproxy.example.org"; Nodes = { '
            '[ Executable = "/bin/true"; ], '
            f'[ Executable = "/bin/true"; MyProxyServer = "{node_server}"; ] }}; ]')


def dag(node_server: str) -> str:
    """Two nodes, the second's description with its own ``MyProxyServer``."""
    return ('[ Type = "dag"; nodes = [ '
            'a = [ Description = [ Executable = "/bin/true"; ]; ]; '
            f'b = [ Description = [ Executable = "/bin/true"; MyProxyServer = "{node_server}"; ]; ]; '
            'dependencies = { { a, b } }; ]; ]')


def parametric(server: str) -> str:
    return (f'[ JobType = "Parametric"; Executable = "/bin/echo"; Arguments = "_PARAM_"; '
            f'Parameters = 3; ParameterStart = 0; ParameterStep = 1; MyProxyServer = "{server}"; ]')


@pytest.fixture(scope="module")
def deployment(pki: Pki, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    env = {"WMPROXY_RENEWAL_MYPROXY_ALLOWED_SERVERS": ALLOWED, "WMPROXY_RENEWAL_MYPROXY_SERVER": DEFAULT}
    with standard_deployment(pki, database_url, tmp_path_factory.mktemp("state"), env) as dep:
        yield dep


@pytest.fixture(scope="module")
def alice(deployment: Deployment, pki: Pki) -> ReferenceClient:
    ref = reference_client(deployment.endpoint, pki.users["alice"].proxy, pki.ca_dir)
    delegate(ref, pki.users["alice"].proxy, DELEGATION)
    return ref


def renewal_records(config: Path) -> list[tuple[str, str]]:
    engine = sa.create_engine(load_settings(config).database.url)
    try:
        with engine.connect() as conn:
            return [(d, s) for d, s in conn.execute(sa.text(
                "select delegation_id, myproxy_server from proxy_renewals order by id")).all()]
    finally:
        engine.dispose()


@pytest.fixture
def unchanged(deployment: Deployment) -> Callable[[], None]:
    """Call it after a refused request: jobs, delegations, requests, sandbox files and renewal
    records are as they were before the test."""
    before = deployment_footprint(deployment.config), renewal_records(deployment.config)

    def check() -> None:
        assert (deployment_footprint(deployment.config), renewal_records(deployment.config)) == before

    return check


OPERATIONS = ["jobRegister", "jobSubmit"]


def call(alice: ReferenceClient, operation: str, jdl: str) -> Any:
    return getattr(alice.wmproxy, operation)(jdl, DELEGATION)


class TestRefused:
    @pytest.mark.parametrize("operation", OPERATIONS)
    @pytest.mark.parametrize("server", [REFUSED, "localhost", "myproxy.example.org:22", "grid.example.org:7600",
                                        "px.grid.example.org"])
    def test_a_server_outside_the_allowed_set_is_a_generic_fault_and_nothing_is_written(
            self, alice: ReferenceClient, unchanged: Callable[[], None], operation: str, server: str) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            call(alice, operation, simple(server))
        detail = assert_fault(err, "GenericFault", operation, "1220",
                              f"MyProxyServer: '{server}' is not a MyProxy server this service renews proxies from")
        assert detail.findtext("Timestamp")
        unchanged()

    @pytest.mark.parametrize("operation", OPERATIONS)
    @pytest.mark.parametrize("jdl", [collection(REFUSED), dag(REFUSED), parametric(REFUSED)],
                             ids=["collection-node", "dag-node", "parametric"])
    def test_a_compound_job_with_one_refused_node_is_refused_whole(
            self, alice: ReferenceClient, unchanged: Callable[[], None], operation: str, jdl: str) -> None:
        with pytest.raises(zeep.exceptions.Fault) as err:
            call(alice, operation, jdl)
        assert_fault(err, "GenericFault", operation, "1220", f"MyProxyServer: '{REFUSED}'")
        unchanged()


class TestAllowed:
    @pytest.mark.parametrize(("operation", "server"), [
        ("jobRegister", "myproxy.example.org"), ("jobSubmit", "px.grid.example.org:7600"),
        ("jobRegister", DEFAULT), ("jobSubmit", "Default.Example.org"),
    ])
    def test_a_listed_or_default_server_registers_the_job_and_its_renewal(
            self, alice: ReferenceClient, deployment: Deployment, operation: str, server: str) -> None:
        job_id = call(alice, operation, simple(server)).id
        assert f'MyProxyServer = "{server}"' in alice.wmproxy.getJDL(job_id, "REGISTERED")
        assert (DELEGATION, server) in renewal_records(deployment.config)

    def test_a_compound_job_whose_nodes_name_allowed_servers_registers(
            self, alice: ReferenceClient, deployment: Deployment) -> None:
        job = alice.wmproxy.jobRegister(collection("a.grid.example.org:7600"), DELEGATION)
        nodes = job.childrenJob
        assert len(nodes) == 2
        jdls = [alice.wmproxy.getJDL(node.id, "REGISTERED") for node in nodes]
        assert sum('MyProxyServer = "a.grid.example.org:7600"' in j for j in jdls) == 1
