"""listJobs finds the ACL items that may name its caller through an index: ``job_acl`` gets
an index on its item without trailing ``/`` (``rtrim(item, '/')``, an expression index on
SQLite and PostgreSQL alike). Before, listJobs read every ACL item of every other user's jobs
and kept those naming its caller: a user who gave his own jobs 120,000 junk items made every
other user's listJobs take 5 s.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0015'
down_revision: str | Sequence[str] | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index('ix_job_acl_trimmed_item', 'job_acl', [sa.text("rtrim(item, '/')")], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_job_acl_trimmed_item', table_name='job_acl')
