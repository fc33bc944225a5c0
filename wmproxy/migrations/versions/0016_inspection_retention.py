"""Inspection requests: indexes for the caps and the retention (``[inspection]``
``max_requests_per_user``, ``retention``): the per-user count reads ``requester_dn``, the purger
and an ask at a cap delete by ``asked_at``.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""
from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0016'
down_revision: str | Sequence[str] | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ('ix_inspection_requests_requester_dn', ['requester_dn']),
    ('ix_inspection_requests_asked_at', ['asked_at']),
)


def upgrade() -> None:
    """Upgrade schema."""
    for name, columns in _INDEXES:
        op.create_index(name, 'inspection_requests', columns, unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    for name, _columns in reversed(_INDEXES):
        op.drop_index(name, table_name='inspection_requests')
