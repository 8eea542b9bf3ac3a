"""Control API under ``/_sandbox`` (never faulted, never counted): ground truth,
mutations that create real changes (and notifications), reset, faults, stats.

Ground truth (``GET /_sandbox/truth?schedule=&start=&end=``; every parameter
optional, ``schedule`` repeatable or comma-separated, window on the slot start,
half-open, FHIR date/dateTime values) answers::

    {"count": 2, "slots": [{"id": "sl-00000012", "schedule": "sch-pr-1",
      "start": "2026-11-26T14:00:00Z", "end": "2026-11-26T14:20:00Z",
      "status": "free", "version": "1",
      "serviceType": ["http://fhir.org/.../visit-type|office-visit", ...]}, ...]}

FREE slots only, sorted by (start, id), times in UTC with ``Z`` at whole seconds.
With ``available=true``, only those no active Appointment references (active:
proposed, pending, booked, arrived, checked-in, waitlist), i.e. what a client may
still book; this matters in the plain-r4 profile, where booking leaves slots free.

Appointments per slot (``GET /_sandbox/slot-appointments?slot=``; ``slot``
optional, repeatable or comma-separated, ``sl-...`` or ``Slot/sl-...``) answers::

    {"count": 1, "slots": [{"slot": "sl-00000012", "active": 2,
      "appointments": [{"id": "appt-1", "status": "booked"},
                       {"id": "appt-2", "status": "proposed"}]}],
     "doubleBooked": ["sl-00000012"]}

every slot some Appointment (any status) references via ``Appointment.slot``, or
exactly the slots asked for (zero counts included), sorted by id; ``active``
counts the active ones and ``doubleBooked`` lists the slots where that is 2 or more.

Mutations (``POST /_sandbox/mutate``, one op or ``{"ops": [...]}``)::

    {"op": "book", "slot": "sl-00000012"}       # or "slots": [...]; -> busy
    {"op": "free", "slot": "sl-00000012"}       # -> free
    {"op": "set-status", "slot": ..., "status": "busy-unavailable"}
    {"op": "move", "slot": ..., "minutes": 15}  # shift start and end
    {"op": "delete", "slot": ...}               # gone from searches, reads and truth
    {"op": "remove-schedule", "schedule": "sch-pr-2"}  # gone, and its slots deleted
    {"op": "add-day", "date": "YYYY-MM-DD", "schedules": [...]}  # date default: next new day
    {"op": "random", "count": 500, "seed": 1, "move_fraction": 0.0}

answer ``{"slots": [ids], "schedules": [ids], "changes": [{"schedule", "start",
"end"}]}`` after the notifications are queued.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from sandbox_ehr import codes, search
from sandbox_ehr.appointments import ACTIVE
from sandbox_ehr.errors import bad_request, not_found
from sandbox_ehr.model import BUSY, FREE, HELD, TENTATIVE, UNAVAILABLE, slot_id, slot_index
from sandbox_ehr.store import Change
from sandbox_ehr.timefmt import ceil_minute, utc_iso
from sandbox_ehr.web import json_body, json_response, query_pairs, sandbox

router = APIRouter(prefix="/_sandbox")
STATUS_BY_NAME = {
    "free": FREE,
    "busy": BUSY,
    "busy-tentative": TENTATIVE,
    "busy-unavailable": UNAVAILABLE,
    "held": HELD,
}


@router.get("/truth")
async def truth(request: Request) -> Response:
    sb = sandbox(request)
    pairs = query_pairs(request)
    org = sb.store.org
    schedules = None
    names = search.split_values(pairs, "schedule")
    if names:
        unknown = [n for n in names if n.removeprefix("Schedule/") not in org.schedule_index]
        if unknown:
            raise bad_request(f"unknown schedule(s) {unknown}")
        schedules = [org.schedule_index[n.removeprefix("Schedule/")] for n in names]
    bounds = []
    for name in ("start", "end"):
        value = search.first(pairs, name)
        bounds.append(ceil_minute(search.parse_param_datetime(value, name)[0]) if value else None)
    available = search.first(pairs, "available")
    if available not in (None, "true", "false"):
        raise bad_request("available is true or false")
    store = sb.store
    idx = store.free_slots(schedules, bounds[0], bounds[1])
    if available == "true":
        claimed = {
            slot_index(sid)
            for sid, appts in sb.appointments.slot_appointments().items()
            if any(a.resource.get("status") in ACTIVE for a in appts)
        }
        idx = [i for i in idx if i not in claimed]
    arr = np.asarray(idx, dtype=np.int64)
    starts, durs = store.start[arr].tolist(), store.dur[arr].tolist()
    scheds, versions = store.sched[arr].tolist(), store.version[arr].tolist()
    tokens = [[f"{codes.VISIT_TYPE_SYSTEM}|{c}" for c in s.service_types] for s in org.schedules]
    slots = [
        {
            "id": slot_id(i),
            "schedule": org.schedules[s].id,
            "start": utc_iso(a),
            "end": utc_iso(a + d),
            "status": "free",
            "version": str(v),
            "serviceType": tokens[s],
        }
        for i, a, d, s, v in zip(idx, starts, durs, scheds, versions, strict=True)
    ]
    return json_response({"count": len(slots), "slots": slots})


@router.get("/slot-appointments")
async def slot_appointments(request: Request) -> Response:
    sb = sandbox(request)
    by_slot = sb.appointments.slot_appointments()
    asked = [v.removeprefix("Slot/") for v in search.split_values(query_pairs(request), "slot")]
    slots = []
    double = []
    for sid in sorted(set(asked) if asked else by_slot):
        appts = by_slot.get(sid, [])
        active = sum(a.resource.get("status") in ACTIVE for a in appts)
        if active >= 2:
            double.append(sid)
        slots.append(
            {
                "slot": sid,
                "active": active,
                "appointments": [{"id": a.id, "status": a.resource.get("status")} for a in appts],
            }
        )
    return json_response({"count": len(slots), "slots": slots, "doubleBooked": double})


def _slots(op: dict[str, Any], store: Any) -> list[int]:
    ids = op.get("slots") or ([op["slot"]] if "slot" in op else [])
    if not ids:
        raise bad_request(f"op {op.get('op')!r} needs slot or slots")
    out = []
    for sid in ids:
        i = slot_index(str(sid).removeprefix("Slot/"))
        if i is None or not store.exists(i):
            raise not_found(f"Slot/{sid}")
        out.append(i)
    return out


def _apply(sb: Any, op: dict[str, Any]) -> list[Change]:
    store = sb.store
    kind = op.get("op")
    if kind in ("book", "free", "set-status"):
        status = {"book": BUSY, "free": FREE}.get(str(kind))
        if kind == "set-status":
            status = STATUS_BY_NAME.get(str(op.get("status")))
            if status is None:
                raise bad_request(
                    f"unknown status {op.get('status')!r}; one of {sorted(STATUS_BY_NAME)}"
                )
        slots = _slots(op, store)
        for i in slots:  # the EHR's own staff override whatever an appointment held
            sb.appointments.slot_owner.pop(i, None)
        return store.set_status(slots, status)
    if kind == "move":
        try:
            minutes = int(op["minutes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise bad_request("move needs integer minutes") from exc
        return store.move([(i, minutes) for i in _slots(op, store)])
    if kind == "delete":
        slots = _slots(op, store)
        for i in slots:
            sb.appointments.slot_owner.pop(i, None)
        return store.delete(slots)
    if kind == "remove-schedule":
        index = store.org.schedule_index.get(str(op.get("schedule")))
        if index is None or index in store.removed:
            raise not_found(f"Schedule/{op.get('schedule')}")
        return store.remove_schedule(index)
    if kind == "add-day":
        if op.get("date"):
            try:
                day = date.fromisoformat(str(op["date"]))
            except ValueError as exc:
                raise bad_request(f"bad date {op['date']!r}") from exc
        else:  # the day after the last day generated or added
            day = store.last_day + timedelta(days=1)
        scheds = None
        if op.get("schedules"):
            if not isinstance(op["schedules"], list):
                raise bad_request("add-day schedules is a list of schedule ids")
            try:
                scheds = {store.org.schedule_index[s] for s in op["schedules"]}
            except KeyError as exc:
                raise bad_request(f"unknown schedule {exc}") from exc
        return store.add_day(day, scheds)
    if kind == "random":
        count = op.get("count", 10)
        if not isinstance(count, int) or not 1 <= count <= 100_000:
            raise bad_request("random count must be within 1..100000")
        rng = random.Random(op.get("seed", 0))
        picks = [i for i in rng.sample(range(store.n), min(count, store.n)) if store.exists(i)]
        move_fraction = op.get("move_fraction", 0.0)
        if not isinstance(move_fraction, int | float) or not 0 <= move_fraction <= 1:
            raise bad_request("move_fraction must be within 0..1")
        moves = [i for i in picks if rng.random() < move_fraction]
        moved = set(moves)
        rest = [i for i in picks if i not in moved and i not in sb.appointments.slot_owner]
        to_busy = [i for i in rest if int(store.status[i]) == FREE]
        to_free = [i for i in rest if int(store.status[i]) != FREE]
        changes = store.set_status(to_busy, BUSY) + store.set_status(to_free, FREE)
        if moves:
            changes += store.move([(i, rng.choice((-15, 15, 30))) for i in moves])
        return changes
    raise bad_request(
        f"unknown op {kind!r}; one of book, free, set-status, move, delete, remove-schedule, "
        "add-day, random"
    )


@router.post("/mutate")
async def mutate(request: Request) -> Response:
    sb = sandbox(request)
    body = await json_body(request)
    ops = body.get("ops") if isinstance(body, dict) and "ops" in body else [body]
    if not isinstance(ops, list) or not all(isinstance(o, dict) for o in ops):
        raise bad_request('body is an op object or {"ops": [op, ...]}')
    changes: list[Change] = []
    for op in ops:
        changes += _apply(sb, op)
    org = sb.store.org
    slots = sorted({i for c in changes for i in c.slots})
    return json_response(
        {
            "slots": [slot_id(i) for i in slots],
            "schedules": sorted({org.schedules[c.schedule].id for c in changes}),
            "changes": [
                {
                    "schedule": org.schedules[c.schedule].id,
                    "start": utc_iso(c.start),
                    "end": utc_iso(c.end),
                }
                for c in changes
            ],
        }
    )


@router.post("/reset")
async def reset(request: Request) -> Response:
    changed = sandbox(request).reset()
    return json_response({"schedulesChanged": changed})


@router.get("/faults")
async def list_faults(request: Request) -> Response:
    return json_response({"rules": [r.as_json() for r in sandbox(request).faults.rules]})


@router.post("/faults")
async def add_faults(request: Request) -> Response:
    sb = sandbox(request)
    body = await json_body(request)
    specs = body.get("rules") if isinstance(body, dict) and "rules" in body else body
    specs = specs if isinstance(specs, list) else [specs]
    rules = [sb.faults.add(s) for s in specs]
    return json_response({"rules": [r.as_json() for r in rules]}, 201)


@router.delete("/faults")
async def clear_faults(request: Request) -> Response:
    sandbox(request).faults.clear()
    return Response(status_code=204)


@router.delete("/faults/{rule_id}")
async def delete_fault(request: Request, rule_id: str) -> Response:
    if not sandbox(request).faults.remove(rule_id):
        raise not_found(f"fault rule {rule_id}")
    return Response(status_code=204)


@router.get("/stats")
async def stats(request: Request) -> Response:
    sb = sandbox(request)
    subs = {
        s.id: {
            "status": s.status,
            "events": s.events,
            "endpoint": s.endpoint,
            "error": s.error,
            "queued": s.queue.qsize(),
        }
        for s in sb.notifier.subscriptions.values()
    }
    return json_response({**sb.stats.as_json(), "subscriptions": subs})


@router.delete("/stats")
async def clear_stats(request: Request) -> Response:
    sandbox(request).stats.clear()
    return Response(status_code=204)


@router.get("/config")
async def get_config(request: Request) -> Response:
    sb = sandbox(request)
    cfg = sb.config
    org = sb.store.org
    return json_response(
        {
            "fhirVersion": cfg.fhir_version,
            "profile": cfg.profile,
            "size": cfg.size,
            "seed": cfg.seed,
            "startDate": cfg.start_date.isoformat(),
            "horizonDays": cfg.horizon_days,
            "pageSize": cfg.page_size,
            "maxPageSize": cfg.max_page_size,
            "maxCount": cfg.max_count,
            "holdSeconds": cfg.hold_seconds,
            "heartbeatSeconds": cfg.heartbeat_seconds,
            "slots": sb.store.n,
            "schedules": len(org.schedules),
            "practitioners": len(org.practitioners),
            "clinics": len(org.clinics),
            "rooms": len(org.rooms),
            "devices": len(org.devices),
        }
    )


@router.post("/config")
async def set_config(request: Request) -> Response:
    """Change ``hold_seconds``, ``page_size`` or ``heartbeat_seconds`` at run time."""
    sb = sandbox(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise bad_request("body is a JSON object")
    for key, value in body.items():
        if key not in ("hold_seconds", "page_size", "heartbeat_seconds"):
            raise bad_request(f"{key} cannot be changed at run time")
        if not isinstance(value, int) or value < (0 if key == "heartbeat_seconds" else 1):
            raise bad_request(f"{key} must be a positive integer")
        if key == "page_size" and value > sb.config.max_page_size:
            raise bad_request(f"page_size must be at most {sb.config.max_page_size}")
        setattr(sb.config, key, value)
    return await get_config(request)
