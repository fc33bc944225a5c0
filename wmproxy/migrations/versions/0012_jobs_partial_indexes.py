"""Fewer b-trees written per job: the jobs' indexes on parent_id, worker and local_account skip
the rows where that column is NULL (partial indexes), and the index on parent_id alone goes (it
was a prefix of (parent_id, state)). A simple job is inserted with all three NULL (no mapping):
four of the table's b-trees are written instead of eight (issue 14).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0012'
down_revision: str | Sequence[str] | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (index, columns) made partial: rows whose first column is NULL are left out.
_PARTIAL = (
    ('ix_jobs_parent_state', ['parent_id', 'state']),
    ('ix_jobs_worker', ['worker']),
    ('ix_jobs_local_account', ['local_account']),
)


def upgrade() -> None:
    """Upgrade schema."""
    op.drop_index('ix_jobs_parent_id', table_name='jobs')
    for name, columns in _PARTIAL:
        where = sa.text(f'{columns[0]} IS NOT NULL')
        op.drop_index(name, table_name='jobs')
        op.create_index(name, 'jobs', columns, unique=False, sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    """Downgrade schema."""
    for name, columns in reversed(_PARTIAL):
        op.drop_index(name, table_name='jobs')
        op.create_index(name, 'jobs', columns, unique=False)
    op.create_index('ix_jobs_parent_id', 'jobs', ['parent_id'], unique=False)
