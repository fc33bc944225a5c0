"""Brokering: the job's destination CE and resubmission counters, start requests that wait
for the match retry period, and the dynamic state of CEs (issue 9).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('ce_states',
    sa.Column('ce_id', sa.String(length=255), nullable=False),
    sa.Column('attributes', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('ce_id')
    )
    with op.batch_alter_table('execution_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('not_before', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('destination', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('shallow_retries', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('deep_retries', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('deep_retries')
        batch_op.drop_column('shallow_retries')
        batch_op.drop_column('destination')

    with op.batch_alter_table('execution_requests', schema=None) as batch_op:
        batch_op.drop_column('not_before')

    op.drop_table('ce_states')
