"""The number of cached slots, maintained per schedule (table ``schedule_slot_counts``).

Counting a million slots every minute is a scan of the whole slot table each time.
Every write to a schedule's slots already bumps its ``slots_version`` (the slot index
relies on it), so :func:`refresh` recounts only the schedules whose version moved
since their last count, through the ``(schedule_id, start)`` index, and the total is a
sum over one row per schedule. After a full load every schedule is recounted once;
in between, only what notifications and refreshes changed.

A count is stored with the version read *before* counting: a write that commits in
between makes the count newer than its version, never older, and the next refresh
counts that schedule again.

Functions take a session and never commit: the caller owns the transaction.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from .bulk import BATCH, upsert
from .models import ScheduleRow, ScheduleSlotCountRow, SlotRow


def refresh(session: Session) -> int:
    """Recount the schedules whose slots changed since their last count; returns how many."""
    counted = ScheduleSlotCountRow
    moved = list(
        session.execute(
            select(ScheduleRow.id, ScheduleRow.slots_version)
            .outerjoin(counted, counted.schedule_id == ScheduleRow.id)
            .where(
                (counted.counted_version.is_(None))
                | (counted.counted_version != ScheduleRow.slots_version)
            )
        )
    )
    for i in range(0, len(moved), BATCH):
        part = dict(moved[i : i + BATCH])
        found = dict(
            session.execute(
                select(SlotRow.schedule_id, func.count())
                .where(SlotRow.schedule_id.in_(sorted(part)))
                .group_by(SlotRow.schedule_id)
            ).all()
        )
        rows = [
            {"schedule_id": sid, "slots": int(found.get(sid, 0)), "counted_version": version}
            for sid, version in sorted(part.items())
        ]
        upsert(session, counted, rows, ["schedule_id"])
    # schedules forgotten since (their slots went with them)
    session.execute(delete(counted).where(counted.schedule_id.not_in(select(ScheduleRow.id))))
    return len(moved)


def total(session: Session) -> int:
    """Cached slots as last counted: a sum over one row per schedule."""
    value = session.scalar(
        select(func.coalesce(func.sum(ScheduleSlotCountRow.slots), 0)).join(
            ScheduleRow, ScheduleRow.id == ScheduleSlotCountRow.schedule_id
        )
    )
    return int(value or 0)
