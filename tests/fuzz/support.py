"""Shared by the hostile-input tests (``tests/fuzz``, ``tests/unit/soap/test_hostile_*.py``,
``tests/integration/test_hostile*.py``; issue 10).

- :data:`HOSTILE` counts the hostile cases the session tried, by class (:func:`tried`);
  ``tests/conftest.py`` prints the total at the end of the session.
- :func:`fuzz_settings`: hypothesis settings bounded for CI: ``WMPROXY_FUZZ_EXAMPLES``
  examples per property (default :data:`FUZZ_EXAMPLES`), no deadline (the machine is loaded:
  nothing assumes a speed), no example database written into the worktree.
- :func:`typed_fault`: the one fault format of the service, checked on a raw reply: a SOAP
  1.1 Fault whose detail is the typed BaseFaultType element the operation declares (WMProxy
  port) or a DelegationException (delegation ports).
- :func:`tree_footprint`, :func:`store_footprint`: what is on disk / in the database, to
  prove that a refused request wrote nothing.
- :func:`wrapped`: an in-process :class:`tests.support.SoapApp` whose requests carry extra
  environ entries (``CONTENT_LENGTH``, ``HTTP_DESTINATION``...) and whose responses are
  closed (a sandbox GET streams an open file).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, settings
from lxml import etree

from wmproxy.soap.dispatch import ENVELOPE_PREFIX

if TYPE_CHECKING:
    from tests.support import SoapApp
    from wmproxy.services.runtime import Runtime

#: Files the fuzzed job's input sandbox may hold (``tests/fuzz/conftest.py``).
FUZZ_INPUT_FILES = 5

#: Hostile cases tried in this session, by class ("xml", "sandbox", "jdl", "credentials"...).
HOSTILE: Counter[str] = Counter()

#: Examples per hypothesis property when ``WMPROXY_FUZZ_EXAMPLES`` is not set.
FUZZ_EXAMPLES = 100

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WMPROXY = "http://glite.org/wms/wmproxy"
DELEGATION_NAMESPACES = ("http://www.gridsite.org/namespaces/delegation-1",
                         "http://www.gridsite.org/namespaces/delegation-2")
BASE_FAULT_FIELDS = ["methodName", "Timestamp", "ErrorCode", "Description"]
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


@dataclasses.dataclass
class FuzzService:
    """The in-process service of ``tests/fuzz``, alice's delegation id and the fuzzed job
    (id, input path relative to the sandbox root)."""

    soap: SoapApp
    delegation_id: str
    job_id: str
    input_path: str


def tried(kind: str, count: int = 1) -> None:
    """Count ``count`` hostile cases of class ``kind``."""
    HOSTILE[kind] += count


def summary() -> str:
    """``"hostile cases tried: <n> (<kind> <n>, ...)"``, or "" when none was tried."""
    total = sum(HOSTILE.values())
    if not total:
        return ""
    parts = ", ".join(f"{kind} {count}" for kind, count in sorted(HOSTILE.items()))
    return f"hostile cases tried: {total} ({parts})"


def fuzz_settings(scale: float = 1.0) -> settings:
    """Hypothesis settings for one property: ``scale`` × the configured example count."""
    examples = int(os.environ.get("WMPROXY_FUZZ_EXAMPLES", FUZZ_EXAMPLES))
    return settings(
        max_examples=max(1, int(examples * scale)),
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.function_scoped_fixture],
    )


def typed_fault(status: int | str, body: bytes, declared: dict[str, frozenset[str]] | None = None) -> etree._Element:
    """The typed detail element of a fault reply; fails (AssertionError) on anything else.

    Args:
        status: HTTP status (``500`` or ``"500 Internal Server Error"``).
        declared: ``{operation: fault names}`` of the WMProxy port (from the WSDL); a
            methodName it knows must carry one of its declared faults.
    """
    assert str(status).startswith("500"), (status, body[:300])
    assert b"Traceback" not in body and b"<html" not in body.lower()
    root = etree.fromstring(body)
    assert root.tag == f"{{{SOAP_ENV}}}Envelope" and root.prefix == ENVELOPE_PREFIX, body[:300]
    fault = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None, body[:300]
    assert [child.tag for child in fault] == ["faultcode", "faultstring", "detail"], body[:300]  # no faultactor
    assert fault.findtext("faultcode") == f"{ENVELOPE_PREFIX}:Server"
    detail = fault.find("detail")
    assert detail is not None and len(detail) == 1, body[:300]
    element = detail[0]
    qname = etree.QName(element)
    if qname.namespace in DELEGATION_NAMESPACES:
        assert qname.localname == "DelegationException", body[:300]
        assert [child.tag for child in element] in (["msg"], ["message"])
        assert element[0].text
        return element
    assert qname.namespace == WMPROXY and qname.localname.endswith("Fault"), body[:300]
    tags = [child.tag for child in element]
    assert tags[:4] == BASE_FAULT_FIELDS and tags[4:] and set(tags[4:]) == {"FaultCause"}, tags
    assert _TIMESTAMP.match(element.findtext("Timestamp") or "")
    assert (element.findtext("ErrorCode") or "").isdigit()
    assert element.findtext("Description") == fault.findtext("faultstring")
    method = element.findtext("methodName") or ""
    if declared is not None and method in declared:
        assert qname.localname in declared[method], (method, qname.localname)
    return element


def expect_fault(reply: Any, kind: str, method: str, text: str, case: str) -> etree._Element:
    """Count one hostile case of class ``case`` and check that ``reply`` (a
    :class:`tests.support.Reply`) is the typed WMProxy fault ``kind`` of ``method`` whose
    Description holds ``text``; return its detail."""
    from wmproxy.soap.contract import operations_by_namespace

    tried(case)
    detail = typed_fault(reply.status, reply.body, operations_by_namespace()[WMPROXY])
    assert etree.QName(detail).localname == kind, reply.body
    assert detail.findtext("methodName") == method
    assert text in (detail.findtext("Description") or ""), detail.findtext("Description")
    return detail


def tree_footprint(top: Path) -> frozenset[tuple[str, int]]:
    """Every path below ``top`` with its size (-1 for directories)."""
    if not top.exists():
        return frozenset()
    return frozenset(
        (str(path.relative_to(top)), -1 if path.is_dir() else path.lstat().st_size) for path in top.rglob("*")
    )


#: The tables whose rows :func:`store_footprint` counts.
FOOTPRINT_TABLES = ("jobs", "execution_requests", "delegations", "delegation_requests")


def _row_counts(bind: Any) -> tuple[int, ...]:
    import sqlalchemy as sa

    with bind.connect() as conn:
        return tuple(
            conn.execute(sa.text(f"select count(*) from {table}")).scalar_one()  # noqa: S608 - fixed names
            for table in FOOTPRINT_TABLES
        )


def store_footprint(rt: Runtime) -> tuple[int, ...]:
    """Rows of jobs, execution requests, delegations and pending delegation requests."""
    return _row_counts(rt.session_factory.kw["bind"])


def deployment_footprint(config: Path) -> tuple[tuple[int, ...], frozenset[tuple[str, int]]]:
    """What requests write in a running deployment (its INI file): rows of jobs, delegations and
    pending delegation requests, the job directories and everything in their ``input/``. Not the
    queue, ``output/`` or ``peek/``: the execution worker changes those on its own."""
    import sqlalchemy as sa

    from wmproxy.config import load_settings

    settings = load_settings(config)
    engine = sa.create_engine(settings.database.url)
    try:
        rows = _row_counts(engine)
    finally:
        engine.dispose()
    top = Path(settings.sandbox.root) / settings.sandbox.dir_name
    entries = {entry for entry in tree_footprint(top)
               if entry[0].count("/") < 2 or entry[0].split("/")[2] == "input"}
    return (rows[0], rows[2], rows[3]), frozenset(entries)


def wrapped(soap: SoapApp, **environ: str) -> SoapApp:
    """``soap`` with ``environ`` entries set in every request and every response closed."""
    from tests.support import SoapApp

    def app(env: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        env.update(environ)
        result = soap.app(env, start_response)
        try:
            return [b"".join(result)]
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    return SoapApp(app, soap.rt)  # type: ignore[arg-type]  # any WSGI callable will do
