"""Persistence: SQLAlchemy 2 schema, one repository per aggregate, and the unit of work.

Knows nothing of SOAP or of the services; stores what it is given. Secrets (private
keys, proxies) arrive already sealed by ``wmproxy.security.sealing``.
"""

from wmproxy.store import inspections  # noqa: F401 - puts inspection_requests in the schema's metadata
from wmproxy.store.engine import database_reason, make_engine, make_session_factory
from wmproxy.store.jobs import JobLockedError
from wmproxy.store.uow import UnitOfWork

__all__ = ["JobLockedError", "UnitOfWork", "database_reason", "make_engine", "make_session_factory"]
