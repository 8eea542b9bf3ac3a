"""SMART Scheduling Links feed: the published slots and when they were worked out.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.cache.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "published_slots",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("schedule", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("week", sa.String(8), nullable=False),
        sa.Column("start", UTCDateTime(), nullable=False),
        sa.Column("end", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("proposal_id", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_published_slots_file", "published_slots", ["week", "start", "id"])
    op.create_index("ix_published_slots_start", "published_slots", ["start"])
    op.create_index("ix_published_slots_updated", "published_slots", ["updated_at"])
    op.create_table(
        "publish_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("rules", sa.String(64), nullable=False),
        sa.Column("claims", sa.String(64), nullable=False, server_default=""),
        sa.Column("refreshed_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("publish_state")
    op.drop_table("published_slots")
