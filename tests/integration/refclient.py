"""A client built from the REFERENCE WSDL (as an existing gLite client would be), with the
raw reply XML kept for assertions."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import requests
import zeep
from lxml import etree
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport

REFERENCE_DIR = Path(__file__).resolve().parents[3] / "shared" / "reference" / "wsdl"
REFERENCE_WSDL = REFERENCE_DIR / "WMProxy.wsdl"
DELEGATION1_WSDL = REFERENCE_DIR / "WMProxy-gridsite-delegation-1.0.0.wsdl"
DELEGATION2_WSDL = REFERENCE_DIR / "WMProxy-gridsite-delegation-2.0.0.wsdl"
WMP = "http://glite.org/wms/wmproxy"
D1 = "http://www.gridsite.org/namespaces/delegation-1"
D2 = "http://www.gridsite.org/namespaces/delegation-2"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
#: A getVersion request as a raw body (tests that write HTTP by hand).
GET_VERSION_BODY = (f'<e:Envelope xmlns:e="{SOAP}"><e:Body><w:getVersion xmlns:w="{WMP}"/></e:Body>'
                    "</e:Envelope>").encode()


def session_for(proxy: Path, ca_dir: Path) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify (peers.md §2.5)
    session.cert = str(proxy)
    session.verify = str(ca_dir)
    return session


@dataclass
class ReferenceClient:
    client: zeep.Client
    history: HistoryPlugin
    wmproxy: zeep.proxy.ServiceProxy
    deleg1: zeep.proxy.ServiceProxy
    deleg2: zeep.proxy.ServiceProxy
    session: requests.Session

    @property
    def last_reply(self) -> etree._Element:
        """The Body's first child of the last reply."""
        envelope = self.history.last_received["envelope"]
        return envelope.find(f"{{{SOAP}}}Body")[0]

    @property
    def last_request(self) -> etree._Element:
        return self.history.last_sent["envelope"].find(f"{{{SOAP}}}Body")[0]


def reference_client(endpoint: str, proxy: Path, ca_dir: Path) -> ReferenceClient:
    history = HistoryPlugin()
    session = session_for(proxy, ca_dir)
    transport = Transport(session=session)

    def load(path: Path) -> zeep.Client:
        return zeep.Client(str(path), transport=transport, plugins=[history])

    client = load(REFERENCE_WSDL)
    return ReferenceClient(
        client=client,
        history=history,
        wmproxy=client.create_service(f"{{{WMP}}}WMProxy", endpoint),
        deleg1=load(DELEGATION1_WSDL).create_service(f"{{{D1}}}Delegation1SoapBinding", endpoint),
        deleg2=load(DELEGATION2_WSDL).create_service(f"{{{D2}}}DelegationSoapBinding", endpoint),
        session=session,
    )


def forget_default_delegation(ref: ReferenceClient, dn: str) -> None:
    """Destroy ``dn``'s default delegation (no FQANs) if one is there: the deployments are shared
    across test modules, and one a module left valid (``wmproxy delegate-proxy -a``, ``list-match
    -a``, htproxyput) makes getNewProxyReq refuse ("Previous client delegated proxy still valid")."""
    from wmproxy.security.delegation import default_delegation_id

    with contextlib.suppress(zeep.exceptions.Fault):
        ref.deleg2.destroy(default_delegation_id(dn))


def assert_unqualified_children(element: etree._Element) -> None:
    """Every element below the wrapper must be in no namespace (rpc/literal, unqualified schema)."""
    for child in element.iterdescendants():
        if isinstance(child.tag, str):
            assert etree.QName(child).namespace is None, f"qualified element {child.tag} under {element.tag}"


def fault_detail(exc: zeep.exceptions.Fault) -> etree._Element:
    assert exc.detail is not None, "fault without <detail>"
    assert len(exc.detail) == 1
    return exc.detail[0]
