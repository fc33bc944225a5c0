"""Sealed secrets written with AES-256-GCM: no table changes.

From this revision the service seals delegated proxies and pending delegation keys with
AES-256-GCM (:mod:`wmproxy.security.sealing`), a format earlier releases cannot open; the
Fernet tokens already stored stay as they are and are still opened. The revision exists so that
an earlier release refuses this database ("the database is newer than this wmproxy") instead of
starting and failing on every proxy sealed since the upgrade.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""
from collections.abc import Sequence

# revision identifiers, used by Alembic.
revision: str = '0014'
down_revision: str | Sequence[str] | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema (nothing to change: the revision marks the sealed format)."""


def downgrade() -> None:
    """Downgrade schema (nothing to change; secrets sealed since the upgrade stay AES-256-GCM,
    which the earlier release cannot open: restore a backup instead)."""
