"""Appointment holds: pending Appointments to cancel at an EHR without $hold when they expire.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.cache.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "appointment_holds",
        sa.Column("appointment_id", sa.String(200), primary_key=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text()),
    )
    op.create_index("ix_appointment_holds_expires", "appointment_holds", ["expires_at"])


def downgrade() -> None:
    op.drop_table("appointment_holds")
