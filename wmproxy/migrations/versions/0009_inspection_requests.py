"""Inspection requests: live inspection of running jobs (issue 13).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0009'
down_revision: str | Sequence[str] | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('inspection_requests',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('job_id', sa.String(length=255), nullable=False),
    sa.Column('requester_dn', sa.String(length=512), nullable=False),
    sa.Column('argv', sa.Text(), nullable=False),
    sa.Column('time_limit', sa.Float(), nullable=False),
    sa.Column('output_cap', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('asked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('timed_out', sa.Boolean(), nullable=False),
    sa.Column('truncated', sa.Boolean(), nullable=False),
    sa.Column('output', sa.LargeBinary(), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('inspection_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inspection_requests_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_inspection_requests_state'), ['state'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('inspection_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inspection_requests_state'))
        batch_op.drop_index(batch_op.f('ix_inspection_requests_job_id'))
    op.drop_table('inspection_requests')
