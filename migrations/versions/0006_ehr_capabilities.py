"""What the EHR says it supports (its CapabilityStatement, summarised), per base URL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.cache.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ehr_capabilities",
        sa.Column("base_url", sa.String(500), primary_key=True),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("summary", sa.Text()),
        sa.Column("error", sa.Text()),
    )


def downgrade() -> None:
    op.drop_table("ehr_capabilities")
