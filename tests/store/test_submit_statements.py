"""The SQL statements of one simple jobSubmit, counted on each database (issue 14).

A jobSubmit's transaction is pinned statement by statement (kind and table), so a change that
adds a round trip to the submission path (an ORM flush, a lazy load, a re-read of a row the
registration already has) shows here, not only in a benchmark.
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from tests.conftest import Pki
from tests.support import ECHO_JDL, delegate_in_process, principal_of
from wmproxy.services.runtime import Runtime
from wmproxy.services.submission import submit_job


def _shape(statement: str) -> str:
    """``INSERT jobs``, ``SELECT delegations``...: the statement's verb and first table."""
    text = " ".join(statement.split())
    verb = text.split(" ", 1)[0].upper()
    match = re.search(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", text, re.IGNORECASE)
    return f"{verb} {match.group(1) if match else ''}".strip()


def _statements_of(rt: Runtime, call: Any) -> list[str]:
    """The statements ``call`` sends, by shape. On SQLite, those SQLite itself runs (the driver's
    trace callback on each connection the call checks out): the engine sends ``BEGIN IMMEDIATE``
    on the driver's connection, not through SQLAlchemy's statement events (issue 14), and
    ``COMMIT`` is the driver's. On PostgreSQL, those SQLAlchemy sends (``before_cursor_execute``);
    psycopg's own ``BEGIN`` and ``COMMIT`` are not among them."""
    engine = rt.session_factory.kw["bind"]
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(_shape(statement))

    def trace(statement: str) -> None:
        seen.append(_shape(statement) if not statement.upper().startswith("BEGIN") else " ".join(statement.split()))

    def checked_out(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        dbapi_conn.set_trace_callback(trace)

    def checked_in(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.set_trace_callback(None)

    sqlite = engine.dialect.name == "sqlite"
    listeners = [("checkout", checked_out), ("checkin", checked_in)] if sqlite else [("before_cursor_execute", note)]
    for name, listener in listeners:
        sa.event.listen(engine, name, listener)
    try:
        call()
    finally:
        for name, listener in listeners:
            sa.event.remove(engine, name, listener)
    return seen


def test_one_simple_job_submit_is_these_statements(rt: Runtime, pki: Pki, database_url: str) -> None:
    alice = principal_of(pki, "alice")
    delegate_in_process(rt, alice, pki.users["alice"].proxy, "count")
    submit_job(rt, alice, ECHO_JDL, "count")  # the first call of a process may set things up
    seen = _statements_of(rt, lambda: submit_job(rt, alice, ECHO_JDL, "count"))
    if database_url.startswith("sqlite"):
        # The engine opens the transaction itself with BEGIN IMMEDIATE (wmproxy/store/engine.py);
        # then the delegation's lookup, the job row, its two events (one multi-row INSERT), the
        # start request, the commit.
        assert seen == ["BEGIN IMMEDIATE", "SELECT delegations", "INSERT jobs", "INSERT job_events",
                        "INSERT execution_requests", "COMMIT"]
    else:
        # The job row, its events and its start request are one statement of data-modifying
        # CTEs, with the transaction's pg_notify as its RETURNING.
        assert seen == ["SELECT delegations", "WITH jobs"]
