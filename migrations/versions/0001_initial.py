"""Initial slot cache: actors, schedules, schedule_actors, slots, sync_runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from app.cache.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

codes = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "actors",
        sa.Column("ref", sa.String(200), primary_key=True),
        sa.Column("resource_type", sa.String(40), nullable=False),
        sa.Column("display", sa.Text()),
        sa.Column("codes", codes, nullable=False),
        sa.Column("address", sa.Text()),
        sa.Column("part_of", sa.String(200)),
        sa.Column("timezone", sa.String(64)),
        sa.Column("last_confirmed_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_actors_resource_type", "actors", ["resource_type"])
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("actor_refs", codes, nullable=False),
        sa.Column("service_types", codes, nullable=False),
        sa.Column("specialties", codes, nullable=False),
        sa.Column("horizon_start", UTCDateTime()),
        sa.Column("horizon_end", UTCDateTime()),
        sa.Column("covered_start", UTCDateTime()),
        sa.Column("covered_end", UTCDateTime()),
        sa.Column("last_confirmed_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text()),
    )
    op.create_table(
        "schedule_actors",
        sa.Column(
            "schedule_id",
            sa.String(200),
            sa.ForeignKey("schedules.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("actor_ref", sa.String(200), primary_key=True),
    )
    op.create_index("ix_schedule_actors_actor", "schedule_actors", ["actor_ref", "schedule_id"])
    op.create_table(
        "slots",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column(
            "schedule_id",
            sa.String(200),
            sa.ForeignKey("schedules.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("start", UTCDateTime(), nullable=False),
        sa.Column("end", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("service_types", codes, nullable=False),
        sa.Column("specialties", codes, nullable=False),
        sa.Column("appointment_types", codes, nullable=False),
        sa.Column("overbooked", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text()),
        sa.Column("version_id", sa.String(64)),
        sa.Column("ehr_last_updated", UTCDateTime()),
        sa.Column("last_confirmed_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_slots_schedule_start", "slots", ["schedule_id", "start"])
    op.create_index("ix_slots_start", "slots", ["start"])
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("scope", sa.Text()),
        sa.Column("window_start", UTCDateTime()),
        sa.Column("window_end", UTCDateTime()),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("slots_seen", sa.Integer(), nullable=False),
        sa.Column("slots_upserted", sa.Integer(), nullable=False),
        sa.Column("slots_deleted", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
    )
    op.create_index("ix_sync_runs_started", "sync_runs", ["started_at"])


def downgrade() -> None:
    op.drop_table("sync_runs")
    op.drop_table("slots")
    op.drop_table("schedule_actors")
    op.drop_table("schedules")
    op.drop_table("actors")
