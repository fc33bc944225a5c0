"""Mapping to local accounts: pool leases and the job's mapped account.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('pool_leases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account', sa.String(length=64), nullable=False),
    sa.Column('pool', sa.String(length=64), nullable=False),
    sa.Column('owner_dn', sa.String(length=512), nullable=False),
    sa.Column('group_name', sa.String(length=255), nullable=False),
    sa.Column('leased_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account', name='uq_pool_leases_account'),
    sa.UniqueConstraint('pool', 'owner_dn', 'group_name', name='uq_pool_leases_identity')
    )
    with op.batch_alter_table('pool_leases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pool_leases_last_used_at'), ['last_used_at'], unique=False)

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('local_account', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_local_account'), ['local_account'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_local_account'))
        batch_op.drop_column('local_account')

    with op.batch_alter_table('pool_leases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pool_leases_last_used_at'))

    op.drop_table('pool_leases')
