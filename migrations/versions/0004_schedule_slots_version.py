"""Slot versions: let API processes keep slots in memory and know when to re-read them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schedules") as batch:
        batch.add_column(
            sa.Column("slots_version", sa.BigInteger(), nullable=False, server_default="0")
        )
    generation = op.create_table(
        "cache_generation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(generation, [{"id": 1, "value": 0}])


def downgrade() -> None:
    op.drop_table("cache_generation")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("slots_version")
