"""Slots keep their schedule id without a foreign key: the sync's writers guarantee it.

PostgreSQL checks a foreign key row by row (a lookup and a row lock on ``schedules``
for every slot written). At 1M slots that was a third of a full load's database CPU
(3.2 of 9.8 s of ``COPY``), on the path every load waits for. The one writer of slots
(:func:`app.cache.repository.apply_snapshot`, from :func:`app.sync.chunk.write_chunk`)
writes only slots of schedules it holds locked in the same transaction, and the one
deleter of schedules (:func:`app.cache.repository.delete_schedules_not_in`) locks them
and deletes their slots first.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# 0001 left the constraint unnamed: PostgreSQL named it so; SQLite's batch mode finds it
# by this convention.
FK_NAME = "slots_schedule_id_fkey"
NAMING = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}


def upgrade() -> None:
    with op.batch_alter_table("slots", naming_convention=NAMING) as batch:
        batch.drop_constraint(FK_NAME, type_="foreignkey")


def downgrade() -> None:
    bind = op.get_bind()
    orphans = sa.text("DELETE FROM slots WHERE schedule_id NOT IN (SELECT id FROM schedules)")
    bind.execute(orphans)
    with op.batch_alter_table("slots", naming_convention=NAMING) as batch:
        batch.create_foreign_key(FK_NAME, "schedules", ["schedule_id"], ["id"], ondelete="CASCADE")
