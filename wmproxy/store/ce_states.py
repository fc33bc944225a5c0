"""Repository of the dynamic state of CEs (``ce_states``): Glue attributes per CE id, as
JSON, with the time they were recorded."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from wmproxy.store.schema import CeState

#: What a CE attribute value may be.
Attribute = int | float | str


_STATES = cast(Table, CeState.__table__)
#: :meth:`SqlCeStateStore.fresh`'s query, built once (a worker's claim batch reads it).
_FRESH = select(_STATES.c.ce_id, _STATES.c.attributes).where(
    _STATES.c.updated_at >= bindparam("since", type_=_STATES.c.updated_at.type))


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
        self.session.flush()  # a Core statement: no autoflush of the transaction's changes
        rows = self.session.connection().execute(_FRESH, {"since": since})
        return {ce_id: json.loads(attributes) for ce_id, attributes in rows}
