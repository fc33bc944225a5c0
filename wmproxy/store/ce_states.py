"""Repository of the dynamic state of CEs (``ce_states``): Glue attributes per CE id, as
JSON, with the time they were recorded."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from wmproxy.store.schema import CeState

#: What a CE attribute value may be.
Attribute = int | float | str


class SqlCeStateStore:
    """CE states, looked up by ``GlueCEUniqueID``."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def put(self, ce_id: str, attributes: Mapping[str, Attribute], now: dt.datetime) -> None:
        """Record ``attributes`` as the state of ``ce_id`` at ``now``, replacing the previous
        one (an upsert: two writers racing on a new CE never collide)."""
        values = {"ce_id": ce_id, "attributes": json.dumps(dict(attributes), sort_keys=True), "updated_at": now}
        dialect = postgresql if self.session.get_bind().dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(CeState).values(**values)
        self.session.execute(stmt.on_conflict_do_update(
            index_elements=[CeState.ce_id], set_={"attributes": stmt.excluded.attributes,
                                                  "updated_at": stmt.excluded.updated_at}))

    def fresh(self, since: dt.datetime) -> dict[str, dict[str, Attribute]]:
        """``{ce id: attributes}`` of the states recorded at or after ``since``."""
        rows = self.session.scalars(select(CeState).where(CeState.updated_at >= since)).all()
        return {row.ce_id: json.loads(row.attributes) for row in rows}
