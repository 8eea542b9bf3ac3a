"""Which slots an Appointment needs: those it references, or matched by its time and actors.

Pure reading of the store and the Appointment, apart from the appointment state
machine (:mod:`sandbox_ehr.appointments`), which decides whether the matched
slots are free to take.
"""

from __future__ import annotations

from typing import Any

from sandbox_ehr.errors import bad_request, conflict, unprocessable
from sandbox_ehr.model import slot_id, slot_index
from sandbox_ehr.search import normalise_ref
from sandbox_ehr.store import SlotStore
from sandbox_ehr.timefmt import BadDateTime, ceil_minute, parse_datetime


def participant_refs(resource: dict[str, Any]) -> list[str]:
    """The normalised actor references of the Appointment's participants, in order."""
    refs = []
    for p in resource.get("participant") or []:
        ref = (p.get("actor") or {}).get("reference")
        if ref:
            refs.append(normalise_ref(ref, None))
    return refs


def slot_refs(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in resource.get("slot") or [] if isinstance(s, dict)]


def match_slots(store: SlotStore, resource: dict[str, Any]) -> list[int]:
    """The slots the Appointment names, checked against its start/end, or those covering it.

    400 when start/end are unreadable, 422 for an unknown slot or actor, 409 when
    the slots do not cover the requested time (e.g. the EHR moved a slot).
    """
    org = store.org
    start = end = None
    if resource.get("start") and resource.get("end"):
        try:
            start = ceil_minute(parse_datetime(resource["start"])[0])
            end = ceil_minute(parse_datetime(resource["end"])[0])
        except BadDateTime as exc:
            raise bad_request(str(exc)) from exc
        if end <= start:
            raise bad_request("Appointment.end must be after Appointment.start")
    refs = [(s.get("reference") or "") for s in resource.get("slot") or []]
    if refs:
        chosen = []
        for ref in refs:
            idx = slot_index(normalise_ref(ref, "Slot").split("/", 1)[1])
            if idx is None or not store.exists(idx):
                raise unprocessable(f"Appointment.slot {ref!r} is not a slot of this EHR")
            chosen.append(idx)
        chosen = sorted(set(chosen))
        if start is not None and end is not None:
            by_schedule: dict[int, list[int]] = {}
            for i in chosen:
                by_schedule.setdefault(int(store.sched[i]), []).append(i)
            for slots in by_schedule.values():
                if not _covers(store, slots, start, end):  # e.g. the EHR moved a slot
                    raise conflict(
                        "Appointment.start/end are not covered by its slots "
                        f"{[slot_id(i) for i in slots]}"
                    )
        return chosen
    if start is None or end is None:
        raise bad_request("an Appointment without slot references needs start and end")
    entity_schedules = {s.entity_ref: s.index for s in org.schedules}
    schedules = []
    for ref in participant_refs(resource):
        if ref.startswith("Patient/"):
            continue
        if ref in entity_schedules:
            schedules.append(entity_schedules[ref])
        elif ref not in org.resources:
            raise unprocessable(f"participant {ref} is not known to this EHR")
    if not schedules:
        raise unprocessable(
            "no participant of the Appointment has a schedule "
            "(reference a Practitioner, room Location or Device)"
        )
    chosen = []
    for s in schedules:
        slots = store.overlapping(s, start, end)
        if not _covers(store, slots, start, end):
            raise conflict(
                f"{org.schedules[s].entity_ref} has no slots covering the requested time"
            )
        chosen.extend(slots)
    return chosen


def _covers(store: SlotStore, slots: list[int], start: int, end: int) -> bool:
    """The slots, in start order, cover [start, end) without a gap."""
    if not slots:
        return False
    ordered = sorted(slots, key=lambda i: int(store.start[i]))
    if int(store.start[ordered[0]]) > start:
        return False
    reach = int(store.start[ordered[0]] + store.dur[ordered[0]])
    for i in ordered[1:]:
        if int(store.start[i]) > reach:
            return False
        reach = max(reach, int(store.start[i] + store.dur[i]))
    return reach >= end
