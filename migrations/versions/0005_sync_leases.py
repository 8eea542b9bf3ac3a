"""Sync work that survives faults: chunk leases and retries, run progress, follow-ups.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.cache.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_chunks") as batch:
        batch.add_column(sa.Column("claim_token", sa.String(64)))
        batch.add_column(sa.Column("claimed_at", UTCDateTime()))
        batch.add_column(sa.Column("heartbeat_at", UTCDateTime()))
        batch.add_column(sa.Column("next_attempt_at", UTCDateTime()))
        batch.add_column(sa.Column("dispatched_at", UTCDateTime()))
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("progress_at", UTCDateTime()))
        batch.add_column(sa.Column("parent_run_id", sa.Integer()))
        batch.add_column(sa.Column("root_run_id", sa.Integer()))
        batch.add_column(sa.Column("generation", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("due_at", UTCDateTime()))
        batch.add_column(sa.Column("recovered_at", UTCDateTime()))
    op.create_index("ix_sync_runs_status", "sync_runs", ["status"])
    op.create_index("ix_sync_runs_parent", "sync_runs", ["parent_run_id"])


def downgrade() -> None:
    op.drop_index("ix_sync_runs_parent", "sync_runs")
    op.drop_index("ix_sync_runs_status", "sync_runs")
    with op.batch_alter_table("sync_runs") as batch:
        for name in ("recovered_at", "due_at", "generation", "root_run_id", "parent_run_id"):
            batch.drop_column(name)
        batch.drop_column("progress_at")
    with op.batch_alter_table("sync_chunks") as batch:
        for name in ("dispatched_at", "next_attempt_at", "heartbeat_at", "claimed_at"):
            batch.drop_column(name)
        batch.drop_column("claim_token")
