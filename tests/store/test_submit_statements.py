"""The SQL statements of one simple jobSubmit, counted on each database (issue 14).

A jobSubmit's transaction is pinned statement by statement (kind and table), so a change that
adds a round trip to the submission path (an ORM flush, a lazy load, a re-read of a row the
registration already has) shows here, not only in a benchmark.
"""

from __future__ import annotations

import re
import tempfile
from typing import Any

import psycopg
import sqlalchemy as sa

from tests.conftest import Pki
from tests.support import ECHO_JDL, delegate_in_process, principal_of
from wmproxy.services.delegation import forget_proxy
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job


def _shape(statement: str) -> str:
    """``INSERT jobs``, ``SELECT delegations``...: the statement's verb and first table."""
    text = " ".join(statement.split())
    verb = text.split(" ", 1)[0].upper()
    match = re.search(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", text, re.IGNORECASE)
    return f"{verb} {match.group(1) if match else ''}".strip()


def _statements_of(rt: Runtime, call: Any) -> list[str]:
    """The statements ``call`` sends, by shape, as the database receives them, on every
    connection the call checks out (the service's own unit of work, and the driver connections
    of ``wmproxy.store.job_writes``). On SQLite, those SQLite itself runs (the driver's trace
    callback): the engine sends ``BEGIN IMMEDIATE`` on the driver's connection, and ``COMMIT``
    is the driver's. On PostgreSQL, the messages libpq sends (its protocol trace): the
    transaction's ``BEGIN`` and ``COMMIT`` (psycopg's own) and each statement executed."""
    engine = rt.session_factory.kw["bind"]
    seen: list[str] = []
    sqlite = engine.dialect.name == "sqlite"
    traces: list[Any] = []

    def trace(statement: str) -> None:
        seen.append(_shape(statement) if not statement.upper().startswith("BEGIN") else " ".join(statement.split()))

    def checked_out(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if sqlite:
            dbapi_conn.set_trace_callback(trace)
            return
        out = tempfile.TemporaryFile()  # noqa: SIM115 - read and closed at check-in
        dbapi_conn.pgconn.trace(out.fileno())
        dbapi_conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)
        traces.append(out)

    def checked_in(dbapi_conn: Any, _record: Any) -> None:
        if sqlite:
            dbapi_conn.set_trace_callback(None)
            return
        dbapi_conn.pgconn.untrace()
        out = traces.pop()
        out.seek(0)
        seen.extend(_sent(out.read().decode(errors="replace")))
        out.close()

    listeners = [("checkout", checked_out), ("checkin", checked_in)]
    for name, listener in listeners:
        sa.event.listen(engine, name, listener)
    try:
        call()
    finally:
        for name, listener in listeners:
            sa.event.remove(engine, name, listener)
    return seen


def _sent(trace: str) -> list[str]:
    """The statements a libpq trace shows the client sending: each simple ``Query`` (psycopg's
    ``BEGIN`` and ``COMMIT``) and each ``Bind`` of a statement ``Parse`` gave (named or not).
    A message's text may span lines (the SQL's own line breaks)."""
    parsed: dict[str, str] = {}
    sent = []
    for message, text in re.findall(r"^F\t\d+\t(\w+)\t(.*?)(?=^[FB]\t|\Z)", trace, re.MULTILINE | re.DOTALL):
        rest = text.strip()
        if message == "Query":
            sent.append(" ".join(rest.strip('"').split()))
        elif message == "Parse":
            name, sql = re.fullmatch(r'"([^"]*)" "(.*)" \d+(?: \S+)*', rest, re.DOTALL).groups()  # type: ignore[union-attr]
            parsed[name] = sql
        elif message == "Bind":
            name = re.match(r'"[^"]*" "([^"]*)"', rest).group(1)  # type: ignore[union-attr]
            sent.append(_shape(parsed[name]) if name in parsed else f"prepared statement {name}")
    return sent


def test_one_simple_job_submit_is_these_statements(rt: Runtime, pki: Pki, database_url: str) -> None:
    alice = principal_of(pki, "alice")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, "count")
    forget_proxy(rt, alice.dn, "count")  # as another process that served the putProxy
    # A jobSubmit with no stored proxy kept in the process: a unit of work, the stored proxy read in it.
    first = _statements_of(rt, lambda: submit_job(rt, alice, ECHO_JDL, "count"))
    # The next ones: the stored proxy that read kept, checked by the job's INSERT itself.
    seen = _statements_of(rt, lambda: submit_job(rt, alice, ECHO_JDL, "count"))
    if database_url.startswith("sqlite"):
        # The engine opens the transaction itself with BEGIN IMMEDIATE (wmproxy/store/engine.py);
        # then the delegation's lookup, the job row, its two events (one multi-row INSERT), the
        # start request, the commit.
        assert first == ["BEGIN IMMEDIATE", "SELECT delegations", "INSERT jobs", "INSERT job_events",
                         "INSERT execution_requests", "COMMIT"]
        # The job row's INSERT is guarded by the delegation (INSERT ... SELECT ... WHERE EXISTS).
        assert seen == ["BEGIN IMMEDIATE", "INSERT jobs", "INSERT job_events", "INSERT execution_requests",
                        "COMMIT"]
    else:
        # The job row, its events and its start request are one statement of data-modifying
        # CTEs, with the transaction's pg_notify as its RETURNING.
        assert first == ["BEGIN", "SELECT delegations", "WITH jobs", "COMMIT"]
        # One statement, its own transaction: the guarded job row, its events and its request.
        assert seen == ["WITH jobs"]
