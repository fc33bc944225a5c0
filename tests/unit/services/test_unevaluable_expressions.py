"""jobListMatch of a job whose Requirements or Rank classad2 cannot evaluate: a typed fault.

classad2 raises ``ClassAdException`` on references nested deeper than it evaluates; that
went out of jobListMatch as an internal error (GenericFault 1201, "Internal server error",
the traceback logged). It is the job's expression, so the answer is now an
InvalidArgumentFault (1219) naming the attribute, the CE and classad2's error
(``wmproxy/services/matchmaking.py``). A CE whose own Requirements cannot be evaluated does
not match, and the other CEs are still listed. The SOAP application in-process; the chain is
in a CE's ad, the job reaches it through ``other``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from tests.conftest import Pki
from tests.support import SoapApp, build_runtime, caller_from_environ, close_runtime, delegate_in_process, principal_of
from wmproxy.domain import Principal
from wmproxy.errors import JdlExpressionError
from wmproxy.soap.app import WMProxyApplication
from wmproxy.soap.namespaces import WMPROXY

DEEP_CE = "ce.example.org:8443/deep"
BROKEN_CE = "ce.example.org:8443/broken"
PLAIN_CE = "ce.example.org:8443/plain"
#: An attribute classad2 cannot evaluate: 500 references, each to the next.
CHAIN = "; ".join(f"D{i} = D{i + 1}" for i in range(500)) + "; D500 = true"
CATALOGUE = f"""
[ GlueCEUniqueID = "{DEEP_CE}"; GlueCEStateStatus = "Production"; {CHAIN} ]
[ GlueCEUniqueID = "{BROKEN_CE}"; GlueCEStateStatus = "Production"; {CHAIN}; Requirements = D0 ]
[ GlueCEUniqueID = "{PLAIN_CE}"; GlueCEStateStatus = "Production" ]
"""


@pytest.fixture
def soap(tmp_path: Path, pki: Pki, template_db: Path) -> Iterator[SoapApp]:
    catalogue = tmp_path / "ce-catalogue.ads"
    catalogue.write_text(CATALOGUE)
    rt = build_runtime(tmp_path / "state", pki, template_db, jobs={"ce_catalogue": str(catalogue)})
    delegate_in_process(rt, principal_of(pki, "alice"), pki.users["alice"].proxy, "unit")
    yield SoapApp(WMProxyApplication(rt, authenticate=caller_from_environ), rt)
    close_runtime(rt)


def list_match(soap: SoapApp, alice: Principal, extra: str) -> etree._Element:
    return soap.call(WMPROXY, "jobListMatch", alice, jdl=f'[ Executable = "/bin/true"; {extra} ]',
                     delegationId="unit").element


@pytest.mark.parametrize("attribute", ["Requirements", "Rank"])
def test_an_expression_classad2_cannot_evaluate_is_an_invalid_argument_fault(soap: SoapApp, alice: Principal,
                                                                               attribute: str) -> None:
    fault = list_match(soap, alice, f"{attribute} = other.D0;")
    detail = fault.find("detail")[0]
    assert etree.QName(detail).localname == "InvalidArgumentFault", etree.tostring(fault)
    assert detail.findtext("ErrorCode") == str(JdlExpressionError.code) == "1219"
    assert detail.findtext("Description") == (
        f"the job's {attribute} cannot be evaluated against CE {DEEP_CE}: failed to evaluate expression")


def test_a_ce_whose_own_requirements_cannot_be_evaluated_does_not_match(soap: SoapApp, alice: Principal) -> None:
    answer = list_match(soap, alice, "")
    assert [file.findtext("name") for file in answer.find("CEIdAndRankList")] == [DEEP_CE, PLAIN_CE]
