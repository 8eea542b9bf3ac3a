"""Sync pipeline: chunked runs, per-day confirmation marks, EHR subscriptions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from app.cache.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

codes = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(
            sa.Column("chunks_total", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("chunks_done", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("chunks_failed", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("token", sa.String(64)))
    # server defaults only fill existing rows; the models give every new row its values
    with op.batch_alter_table("sync_runs") as batch:
        for column in ("chunks_total", "chunks_done", "chunks_failed"):
            batch.alter_column(column, server_default=None)
    op.create_index("ix_sync_runs_token", "sync_runs", ["token"], unique=True)

    op.create_table(
        "sync_chunks",
        sa.Column(
            "run_id",
            sa.Integer(),
            sa.ForeignKey("sync_runs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("schedule_ids", codes),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("slots_seen", sa.Integer(), nullable=False),
        sa.Column("slots_upserted", sa.Integer(), nullable=False),
        sa.Column("slots_deleted", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("finished_at", UTCDateTime()),
    )
    op.create_table(
        "sync_marks",
        sa.Column(
            "schedule_id",
            sa.String(200),
            sa.ForeignKey("schedules.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("day", UTCDateTime(), primary_key=True),
        sa.Column("confirmed_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_sync_marks_day", "sync_marks", ["day"])
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ehr_id", sa.String(200)),
        sa.Column("fhir_version", sa.String(8), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("heartbeat_seconds", sa.Integer()),
        sa.Column("last_heard_at", UTCDateTime()),
        sa.Column("feed_state", sa.String(16), nullable=False),
        sa.Column("last_event_number", sa.BigInteger()),
        sa.Column("poll_cursor", UTCDateTime()),
        sa.Column("last_polled_at", UTCDateTime()),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index(
        "ix_subscriptions_endpoint", "subscriptions", ["endpoint", "fhir_version"], unique=True
    )


def downgrade() -> None:
    op.drop_table("subscriptions")
    op.drop_table("sync_marks")
    op.drop_table("sync_chunks")
    op.drop_index("ix_sync_runs_token", table_name="sync_runs")
    with op.batch_alter_table("sync_runs") as batch:
        for column in ("token", "chunks_failed", "chunks_done", "chunks_total"):
            batch.drop_column(column)
