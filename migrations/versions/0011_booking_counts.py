"""Booking counts per hour, maintained slot counts per schedule, and indexes for the
reads of every status view (the schedules' last confirmation, the last complete full
load, the pending chunks): the ops console's Bookings chart, and an overview and a
sampler that scan nothing at 1M slots and a week of runs.

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
    op.create_index("ix_sync_runs_kind_finished", "sync_runs", ["kind", "status", "finished_at"])
    pending = sa.text("status = 'pending'")
    op.create_index(
        "ix_sync_chunks_pending",
        "sync_chunks",
        ["run_id", "heartbeat_at"],
        postgresql_where=pending,
        sqlite_where=pending,
    )


def downgrade() -> None:
    op.drop_index("ix_sync_chunks_pending", table_name="sync_chunks")
    op.drop_index("ix_sync_runs_kind_finished", table_name="sync_runs")
    op.drop_index("ix_schedules_last_confirmed_at", table_name="schedules")
    op.drop_table("schedule_slot_counts")
    op.drop_table("booking_counts")
