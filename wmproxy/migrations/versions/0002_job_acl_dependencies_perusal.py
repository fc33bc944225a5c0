"""Per-job ACL entries, DAG dependencies and the perusal file list.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""

    op.create_table('job_acl',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.String(length=255), nullable=False),
    sa.Column('item', sa.String(length=512), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'item', name='uq_job_acl_item')
    )
    with op.batch_alter_table('job_acl', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_acl_job_id'), ['job_id'], unique=False)

    op.create_table('job_dependencies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_id', sa.String(length=255), nullable=False),
    sa.Column('depends_on', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['depends_on'], ['jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'depends_on', name='uq_job_dependency')
    )
    with op.batch_alter_table('job_dependencies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_dependencies_depends_on'), ['depends_on'], unique=False)
        batch_op.create_index(batch_op.f('ix_job_dependencies_job_id'), ['job_id'], unique=False)

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('perusal_files', sa.Text(), nullable=True))




def downgrade() -> None:
    """Downgrade schema."""

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('perusal_files')

    with op.batch_alter_table('job_dependencies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_dependencies_job_id'))
        batch_op.drop_index(batch_op.f('ix_job_dependencies_depends_on'))

    op.drop_table('job_dependencies')
    with op.batch_alter_table('job_acl', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_acl_job_id'))

    op.drop_table('job_acl')

