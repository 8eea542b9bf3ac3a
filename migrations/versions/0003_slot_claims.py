"""Slot claims: the local overlay of slots held or booked through slotsync.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.cache.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slot_claims",
        sa.Column("slot_id", sa.String(200), primary_key=True),
        sa.Column("claim_id", sa.String(64), nullable=False),
        sa.Column("appointment_id", sa.String(200)),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("schedule_id", sa.String(200), nullable=False),
        sa.Column("slot_start", UTCDateTime(), nullable=False),
        sa.Column("slot_end", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("confirmed_at", UTCDateTime()),
    )
    op.create_index("ix_slot_claims_claim", "slot_claims", ["claim_id"])
    op.create_index("ix_slot_claims_appointment", "slot_claims", ["appointment_id"])


def downgrade() -> None:
    op.drop_table("slot_claims")
