"""Slots name their codes by a ``code_sets`` row instead of carrying three JSON lists.

An organisation's slots repeat a few dozen combinations of service types, specialties
and appointment types. As three jsonb columns per slot, PostgreSQL parsed them on every
row a load wrote (a quarter of ``COPY`` into ``slots`` with its indexes, measured at
810k rows: 8.4 s with jsonb, 6.4 s with an integer) and kept them in every row (the
heap was twice as large). Like the schedule id, the code set id has no foreign key:
code sets are only ever added, in the writing transaction before the slots naming
them (:mod:`app.cache.code_sets`).

Existing slots keep their codes: each distinct combination becomes a code set.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

codes = sa.JSON().with_variant(JSONB(), "postgresql")
CODE_COLUMNS = ("service_types", "specialties", "appointment_types")


def _key(texts: tuple[str, str, str]) -> str:
    """As :func:`app.cache.code_sets.code_set_key` (a migration does not import the app's
    code, which may change after it)."""
    parts = [list(json.loads(t) or ()) for t in texts]
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False)


def upgrade() -> None:
    op.create_table(
        "code_sets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.Text(), nullable=False),
        *(sa.Column(c, codes, nullable=False) for c in CODE_COLUMNS),
    )
    op.create_index("ix_code_sets_key", "code_sets", ["key"], unique=True)
    op.add_column("slots", sa.Column("code_set_id", sa.Integer(), nullable=True))
    _fill_code_set_ids()
    with op.batch_alter_table("slots") as batch:
        batch.alter_column("code_set_id", existing_type=sa.Integer(), nullable=False)
        for column in CODE_COLUMNS:
            batch.drop_column(column)


def _fill_code_set_ids() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    value = "CAST(:{} AS jsonb)" if postgres else ":{}"
    texts = bind.execute(
        sa.text(
            "SELECT DISTINCT CAST(service_types AS TEXT), CAST(specialties AS TEXT),"
            " CAST(appointment_types AS TEXT) FROM slots"
        )
    ).all()
    ids: dict[str, int] = {}
    for row in sorted(texts):
        key = _key(tuple(row))
        if key not in ids:
            bind.execute(
                sa.text(
                    "INSERT INTO code_sets (key, service_types, specialties, appointment_types)"
                    f" VALUES (:key, {value.format('st')}, {value.format('sp')},"
                    f" {value.format('at')})"
                ),
                {"key": key, "st": row[0], "sp": row[1], "at": row[2]},
            )
            found = bind.execute(sa.text("SELECT id FROM code_sets WHERE key = :key"), {"key": key})
            ids[key] = int(found.scalar_one())
        if postgres:
            continue  # one pass below: jsonb compares by value
        bind.execute(
            sa.text(
                "UPDATE slots SET code_set_id = :id WHERE CAST(service_types AS TEXT) = :st"
                " AND CAST(specialties AS TEXT) = :sp AND CAST(appointment_types AS TEXT) = :at"
            ),
            {"id": ids[key], "st": row[0], "sp": row[1], "at": row[2]},
        )
    if postgres:
        bind.execute(
            sa.text(
                "UPDATE slots s SET code_set_id = c.id FROM code_sets c"
                " WHERE c.service_types = s.service_types AND c.specialties = s.specialties"
                " AND c.appointment_types = s.appointment_types"
            )
        )


def downgrade() -> None:
    for column in CODE_COLUMNS:
        op.add_column("slots", sa.Column(column, codes, nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.execute(
            sa.text(
                "UPDATE slots s SET service_types = c.service_types, specialties = c.specialties,"
                " appointment_types = c.appointment_types FROM code_sets c"
                " WHERE c.id = s.code_set_id"
            )
        )
    else:
        for column in CODE_COLUMNS:
            bind.execute(
                sa.text(
                    f"UPDATE slots SET {column} ="
                    f" (SELECT c.{column} FROM code_sets c WHERE c.id = slots.code_set_id)"
                )
            )
    with op.batch_alter_table("slots") as batch:
        for column in CODE_COLUMNS:
            batch.alter_column(column, existing_type=codes, nullable=False)
        batch.drop_column("code_set_id")
    op.drop_index("ix_code_sets_key", table_name="code_sets")
    op.drop_table("code_sets")
