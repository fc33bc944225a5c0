"""Job history (issue 12): each job event gets a kind and a source; existing rows are state
changes reported by the service.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=32), server_default='state', nullable=False))
        batch_op.add_column(sa.Column('source', sa.String(length=16), server_default='service', nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('job_events', schema=None) as batch_op:
        batch_op.drop_column('source')
        batch_op.drop_column('kind')
