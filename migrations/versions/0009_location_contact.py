"""What the EHR says of a location for directories: address parts, telecom, position.

Kept on ``actors`` beside the one-line address, for the SMART Scheduling Links feed.
Actors cached before this revision have none until the next sync reads them again
(the sync rewrites an actor whose fields differ from the EHR's).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(JSONB(), "postgresql")
    with op.batch_alter_table("actors") as batch:
        batch.add_column(sa.Column("postal_address", json))
        batch.add_column(sa.Column("telecom", json, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("position", json))


def downgrade() -> None:
    with op.batch_alter_table("actors") as batch:
        batch.drop_column("position")
        batch.drop_column("telecom")
        batch.drop_column("postal_address")
