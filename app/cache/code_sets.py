"""Slots name their codes by a row of ``code_sets``: the distinct combinations of
service types, specialties and appointment types, a few dozen per organisation.

A slot row then holds one small integer instead of three JSON lists, which PostgreSQL
parsed on every row a load wrote (a quarter of its ``COPY``) and stored a million
times. Code sets are only ever added, never changed or deleted, so an id once read
stays right; writers add the sets they need in their own transaction, before the
slots that name them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.domain import CodeSet, Slot

from .bulk import CodeSetIds, among, insert_statement
from .models import CodeSetRow


def code_set_of(slot: Slot) -> CodeSet:
    return (slot.service_types, slot.specialties, slot.appointment_types)


def code_set_key(codes: CodeSet) -> str:
    """The unique key of a code set: its three lists as compact JSON, in order."""
    return json.dumps([list(part) for part in codes], separators=(",", ":"), ensure_ascii=False)


def code_set_ids(session: Session, slots: Iterable[Slot]) -> CodeSetIds:
    """``code set -> id`` for every code set the slots name, adding the missing ones.

    Added in key order with ``ON CONFLICT DO NOTHING``: two writers adding the same new
    sets wait for each other in one order (never a deadlock), and the second then reads
    the first's ids."""
    wanted = {code_set_key(codes): codes for codes in {code_set_of(s) for s in slots}}
    if not wanted:
        return {}
    ids = _ids_of(session, wanted)
    missing = sorted(key for key in wanted if key not in ids)
    if missing:
        stmt = insert_statement(session, CodeSetRow).on_conflict_do_nothing(index_elements=["key"])
        rows = [
            {
                "key": key,
                "service_types": list(wanted[key][0]),
                "specialties": list(wanted[key][1]),
                "appointment_types": list(wanted[key][2]),
            }
            for key in missing
        ]
        session.connection().execute(stmt, rows)
        ids.update(_ids_of(session, {key: wanted[key] for key in missing}))
    return {codes: ids[key] for key, codes in wanted.items()}


def _ids_of(session: Session, wanted: Mapping[str, CodeSet]) -> dict[str, int]:
    found: dict[str, int] = {}
    for matched in among(session, CodeSetRow.key, list(wanted)):
        rows = session.execute(select(CodeSetRow.key, CodeSetRow.id).where(matched))
        found.update((key, int(code_set_id)) for key, code_set_id in rows)
    return found
