"""Sync samples: the cache's size and freshness every few minutes (the ops console's charts).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.cache.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_samples",
        sa.Column("sampled_at", UTCDateTime(), primary_key=True),
        sa.Column("slots_cached", sa.BigInteger(), nullable=False),
        sa.Column("schedules", sa.Integer(), nullable=False),
        sa.Column("max_lag_seconds", sa.Float(), nullable=True),
        sa.Column("stale_schedules", sa.Integer(), nullable=False),
        sa.Column("claims_held", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("claims_booked", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("sync_samples")
