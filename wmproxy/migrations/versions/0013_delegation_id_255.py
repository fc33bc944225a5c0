"""Delegation ids of up to 255 characters: the four columns that hold one (delegation_requests,
delegations, jobs, proxy_renewals) widen from VARCHAR(64) to VARCHAR(255). The original accepted
any id without ``/`` (``user@host``, ``a:b``, ids longer than 64 characters; ``wmproxy-behaviour.md``
§5.1); :func:`wmproxy.security.delegation.check_delegation_id` now does too, up to 255 bytes.
SQLite alters a column by copying its table (batch mode); existing rows are kept as they are.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0013'
down_revision: str | Sequence[str] | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The tables whose delegation_id column widens.
_TABLES = ('delegation_requests', 'delegations', 'jobs', 'proxy_renewals')


def upgrade() -> None:
    """Upgrade schema."""
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('delegation_id', existing_type=sa.String(length=64), type_=sa.String(length=255),
                                  existing_nullable=False)


def downgrade() -> None:
    """Downgrade schema (on PostgreSQL it fails while an id longer than 64 characters is stored)."""
    for table in reversed(_TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('delegation_id', existing_type=sa.String(length=255), type_=sa.String(length=64),
                                  existing_nullable=False)
