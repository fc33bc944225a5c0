"""Store key fingerprint (service_meta) and tombstones of purged jobs (issue 11).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('service_meta',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('purged_jobs',
    sa.Column('job_id', sa.String(length=255), nullable=False),
    sa.Column('owner_dn', sa.String(length=512), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('purged_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('job_id')
    )
    with op.batch_alter_table('purged_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_purged_jobs_owner_dn'), ['owner_dn'], unique=False)
        batch_op.create_index(batch_op.f('ix_purged_jobs_purged_at'), ['purged_at'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('purged_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_purged_jobs_purged_at'))
        batch_op.drop_index(batch_op.f('ix_purged_jobs_owner_dn'))
    op.drop_table('purged_jobs')
    op.drop_table('service_meta')
