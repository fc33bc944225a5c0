"""Every operation of the project's own WSDL (wsdl/wmproxy.wsdl, as published at ?wsdl) called
with a zeep client built from it, against the real service: the WSDL describes exactly what the
service accepts and returns."""

from __future__ import annotations

import contextlib

import pytest
import zeep
from lxml import etree
from zeep.plugins import HistoryPlugin
from zeep.transports import Transport

from tests.conftest import Pki
from tests.integration.refclient import SOAP, assert_unqualified_children, session_for
from tests.integration.service import Deployment
from tests.support import wait_for
from wmproxy.client.jsdl import jsdl_part
from wmproxy.client.wsdl import BINDINGS
from wmproxy.security.delegation import default_delegation_id
from wmproxy.security.proxy import load_credential, sign_proxy_request
from wmproxy.soap.contract import WSDL_FILE, operations_by_namespace
from wmproxy.soap.namespaces import DELEGATION_1, DELEGATION_2, WMPROXY

pytestmark = pytest.mark.integration

JDL = ('[ Executable = "/bin/echo"; Arguments = "walk"; StdOutput = "o"; OutputSandbox = {"o"}; '
       "PerusalFileEnable = true; ]")
JSDL = b"""<jsdl:JobDefinition xmlns:jsdl="http://schemas.ggf.org/jsdl/2005/11/jsdl"
    xmlns:posix="http://schemas.ggf.org/jsdl/2005/11/jsdl-posix"><jsdl:JobDescription><jsdl:Application>
    <posix:POSIXApplication><posix:Executable>/bin/true</posix:Executable></posix:POSIXApplication>
    </jsdl:Application></jsdl:JobDescription></jsdl:JobDefinition>"""


class Walk:
    def __init__(self, deployment: Deployment, pki: Pki) -> None:
        self.history = HistoryPlugin()
        session = session_for(pki.users["alice"].proxy, pki.ca_dir)
        self.session = session
        # Built from what the service publishes, as a new zeep user would do.
        client = zeep.Client(f"{deployment.endpoint}?wsdl", transport=Transport(session=session),
                             plugins=[self.history])
        self.ports = {key: client.create_service(qname, deployment.endpoint) for key, qname in BINDINGS.items()}
        self.called: set[tuple[str, str]] = set()
        self.proxy = pki.users["alice"].proxy

    def __call__(self, port: str, operation: str, *args):
        result = getattr(self.ports[port], operation)(*args)
        reply = self.history.last_received["envelope"].find(f"{{{SOAP}}}Body")[0]
        assert etree.QName(reply).localname == f"{operation}Response"
        assert_unqualified_children(reply)
        self.called.add((etree.QName(reply).namespace, operation))
        return result

    def delegate(self, port: str, delegation_id: str) -> None:
        csr = self(port, "getProxyReq", delegation_id)
        signed = sign_proxy_request(csr.encode(), load_credential(self.proxy), lifetime=3 * 3600)
        self(port, "putProxy", delegation_id, signed.decode())


def test_every_operation_of_the_project_wsdl(deployment: Deployment, pki: Pki) -> None:
    w = Walk(deployment, pki)
    wmp, d1, d2 = "wmproxy", "delegation1", "delegation2"
    assert w(wmp, "getVersion") == "3.5.0"
    w(wmp, "getTransferProtocols")
    w(wmp, "getMaxInputSandboxSize")
    w(wmp, "getTotalQuota")
    w(wmp, "getFreeQuota")
    for port in (wmp, d1, d2):
        w.delegate(port, f"walk-{port}")
    w(d1, "getTerminationTime", f"walk-{d1}")
    w(d1, "renewProxyReq", f"walk-{d1}")
    w(d1, "destroy", f"walk-{d1}")
    w(d2, "getVersion")
    w(d2, "getInterfaceVersion")
    w(d2, "getTerminationTime", f"walk-{d2}")
    w(d2, "renewProxyReq", f"walk-{d2}")
    w(d2, "destroy", f"walk-{d2}")
    # getNewProxyReq is refused while alice's default delegation is valid, and a module run
    # earlier on the shared deployment (test_gridsite_tools' htproxyput) may have left one.
    with contextlib.suppress(zeep.exceptions.Fault):
        w.ports[d2].destroy(default_delegation_id(pki.users["alice"].dn))
    for port in (d1, d2):
        new = w(port, "getNewProxyReq")
        signed = sign_proxy_request(new.proxyRequest.encode(), load_credential(w.proxy), lifetime=3600)
        w.ports[port].putProxy(new.delegationID, signed.decode())
        w.ports[d2].destroy(new.delegationID)
    with pytest.raises(zeep.exceptions.Fault):
        w(d2, "getServiceMetadata", "key")
    w.called.add((operations_namespace(d2), "getServiceMetadata"))
    deleg = f"walk-{wmp}"
    w(wmp, "getDelegatedProxyInfo", deleg)
    w(wmp, "jobListMatch", JDL, deleg)
    w(wmp, "getJobTemplate", {"jobType": ["NORMAL"]}, "/bin/true", "", "true", "1")
    w(wmp, "getDAGTemplate", {"name": None, "childrenJob": [{"name": "a", "childrenJob": [{"name": "b"}]}]},
      "true", "1")
    w(wmp, "getCollectionTemplate", 2, "true", "1")
    w(wmp, "getIntParametricJobTemplate", {"Item": ["Arguments"]}, 3, 0, 1, "true", "1")
    w(wmp, "getStringParametricJobTemplate", {"Item": ["Arguments"]}, {"Item": ["a", "b"]}, "true", "1")
    w(wmp, "jobListMatchJSDL", jsdl_part(JSDL, "jobListMatchJSDL"), deleg)
    w(wmp, "jobRegisterJSDL", jsdl_part(JSDL, "jobRegisterJSDL"), deleg)
    w(wmp, "jobSubmitJSDL", deleg, jsdl_part(JSDL, "jobSubmitJSDL"))
    job = w(wmp, "jobRegister", JDL, deleg)
    w(wmp, "getSandboxDestURI", job.id, "https")
    w(wmp, "getSandboxBulkDestURI", job.id, "https")
    w(wmp, "getJDL", job.id, "ORIGINAL")
    w(wmp, "getACLItems", job.id)
    w(wmp, "addACLItems", job.id, {"Item": ["/C=XX/O=Somewhere/CN=Friend"]})
    w(wmp, "removeACLItem", job.id, "/C=XX/O=Somewhere/CN=Friend")
    w(wmp, "getJobProxyInfo", job.id)
    w(wmp, "getProxyRenewalInfo", job.id)
    w(wmp, "enableFilePerusal", job.id, {"Item": ["o"]})
    w(wmp, "jobStart", job.id)
    wait_for(lambda: str(w(wmp, "getJobStatus", job.id).status), lambda status: status.startswith("Done"),
             what=f"{job.id} to be Done")
    w(wmp, "getPerusalFiles", job.id, "o", True, "https")
    w(wmp, "getOutputFileList", job.id, "https")
    w(wmp, "jobPurge", job.id)
    other = w(wmp, "jobSubmit", JDL, deleg)
    try:
        w(wmp, "jobCancel", other.id)
    except zeep.exceptions.Fault:  # it may already have ended
        w.called.add((operations_namespace(wmp), "jobCancel"))
    declared = {(ns, op) for ns, ops in operations_by_namespace(WSDL_FILE).items() for op in ops}
    assert declared - w.called == set()


def operations_namespace(port_key: str) -> str:
    return {"wmproxy": WMPROXY, "delegation1": DELEGATION_1, "delegation2": DELEGATION_2}[port_key]
