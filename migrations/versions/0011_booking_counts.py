"""Booking counts per hour, maintained slot counts per schedule, and the index of the
schedules' last confirmation (the ops console's Bookings chart and a cheap overview and
sampler at 1M slots).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.cache.models import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "booking_counts",
        sa.Column("hour", UTCDateTime(), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "schedule_slot_counts",
        sa.Column("schedule_id", sa.String(200), primary_key=True),
        sa.Column("slots", sa.BigInteger(), nullable=False),
        sa.Column("counted_version", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_schedules_last_confirmed_at", "schedules", ["last_confirmed_at"])


def downgrade() -> None:
    op.drop_index("ix_schedules_last_confirmed_at", table_name="schedules")
    op.drop_table("schedule_slot_counts")
    op.drop_table("booking_counts")
