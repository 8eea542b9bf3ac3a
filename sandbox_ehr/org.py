"""The generator: a deterministic synthetic organisation and its slots, from a seed.

Only :mod:`sandbox_ehr.store` calls it; the types it builds (entities, schedules,
slot columns, status codes, slot ids) live in :mod:`sandbox_ehr.model`, its
vocabulary (cities, streets, names) in :mod:`sandbox_ehr.names`.

The organisation follows the shared contract (see ``codes``): organisations own
clinics (``Location/clinic-<n>``) in four US time zones; each clinic has
practitioners (``pr-<n>``) of the five contract specialties, rooms
(``Location/room-<n>``, kinds exam/procedure/imaging) and equipment
(``Device/dev-<n>``). Every lowest schedulable entity has one Schedule
(``sch-pr-<n>`` with actors [Practitioner, its clinic], ``sch-room-<n>``,
``sch-dev-<n>``).

Slots are generated per *session* (08:00-12:00 and 13:00-17:00 local on weekdays,
09:00-12:00 on Saturdays in some clinics) from a small set of seeded session
layouts that mix slot lengths (15/20/30 min for practitioners, 10/15/30 for rooms
and devices). Each schedule works a seeded subset of the sessions so that the
total number of slots lands near the requested size; near days are busier than
far ones. Slots live in flat numpy arrays (start in UTC minutes since the epoch,
duration, schedule index, status) so that a million of them take ~15 MB and a
second to build. Same seed + size + start date + horizon => same organisation and
slots (given the same numpy version).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from sandbox_ehr import codes
from sandbox_ehr.model import (
    ASSET_LENGTHS,
    BUSY,
    FREE,
    PRACTITIONER_LENGTHS,
    TENTATIVE,
    UNAVAILABLE,
    Clinic,
    Device,
    Organisation,
    Organization,
    Practitioner,
    Room,
    ScheduleDef,
    SlotArrays,
    epoch_minutes,
)
from sandbox_ehr.names import CITIES, FAMILY, GIVEN_F, GIVEN_M, PLACES, STREETS

# (local start minute, length) of the daily sessions.
WEEKDAY_SESSIONS = ((8 * 60, 240), (13 * 60, 240))
SATURDAY_SESSIONS = ((9 * 60, 180),)
LAYOUTS_PER_KIND = 16
MAX_WORK_PROBABILITY = 0.92
PRACTITIONERS_PER_CLINIC = 8
# Clinic contact details and map positions come from their own seeded stream, so that
# adding them left every other seeded draw (names, sessions, slots) as it was.
CONTACT_STREAM = 1
# how far (degrees) a clinic lies from its city's centre, at most
SPREAD_DEGREES = 0.05

# Specialty mix of practitioners beyond the first five of a clinic.
_SPECIALTY_WEIGHTS = (
    (codes.FAMILY_PRACTICE, 0.40),
    (codes.PAEDIATRICS, 0.15),
    (codes.DERMATOLOGY, 0.15),
    (codes.CARDIOLOGY, 0.15),
    (codes.RADIOLOGY, 0.15),
)


def _layouts(rng: np.random.Generator) -> dict[tuple[str, int], list[tuple[tuple[int, int], ...]]]:
    """Seeded session layouts: (offset, length) lists that mostly repeat one base length."""
    out: dict[tuple[str, int], list[tuple[tuple[int, int], ...]]] = {}
    for kind, lengths, weights in (
        ("pr", PRACTITIONER_LENGTHS, (0.4, 0.35, 0.25)),
        ("asset", ASSET_LENGTHS, (0.3, 0.45, 0.25)),
    ):
        for session_len in sorted({n for _, n in WEEKDAY_SESSIONS + SATURDAY_SESSIONS}):
            layouts = []
            for _ in range(LAYOUTS_PER_KIND):
                base = int(rng.choice(lengths, p=weights))
                slots, t = [], 0
                while True:
                    length = base if rng.random() < 0.85 else int(rng.choice(lengths))
                    if t + length > session_len:
                        length = max((n for n in lengths if t + n <= session_len), default=0)
                        if not length:
                            break
                    slots.append((t, length))
                    t += length
                layouts.append(tuple(slots))
            out[(kind, session_len)] = layouts
    return out


def _layout_kind(kind: str) -> str:
    return "pr" if kind == "pr" else "asset"


def _build_entities(
    rng: np.random.Generator, contact_rng: np.random.Generator, n_clinics: int
) -> tuple[
    list[Organization],
    list[Clinic],
    list[Practitioner],
    list[Room],
    list[Device],
    list[ScheduleDef],
]:
    organizations = [
        Organization("org-1", "Acme Health East"),
        Organization("org-2", "Acme Health West"),
    ]
    clinics: list[Clinic] = []
    practitioners: list[Practitioner] = []
    rooms: list[Room] = []
    devices: list[Device] = []
    specialties = list(codes.SPECIALTIES)
    for k in range(n_clinics):
        tz = codes.TIME_ZONES[k % len(codes.TIME_ZONES)]
        city, state, zip_prefix = CITIES[tz][(k // len(codes.TIME_ZONES)) % len(CITIES[tz])]
        east = tz in ("America/New_York", "America/Chicago")
        area_code, county, latitude, longitude = PLACES[city]
        north, east_offset = contact_rng.uniform(-SPREAD_DEGREES, SPREAD_DEGREES, 2)
        clinic = Clinic(
            id=f"clinic-{k + 1}",
            name=f"{city} {'Family Health Center' if k % 2 == 0 else 'Medical Clinic'} {k + 1}",
            line=f"{int(rng.integers(100, 9999))} {STREETS[int(rng.integers(len(STREETS)))]}",
            city=city,
            state=state,
            postal_code=f"{zip_prefix}{int(rng.integers(0, 100)):02d}",
            tz=tz,
            organization_id="org-1" if east else "org-2",
            saturday=k == 0 or bool(rng.random() < 0.4),
            # 555-0100..555-0199: the numbers kept for fiction
            phone=f"{area_code}-555-{int(contact_rng.integers(100, 200)):04d}",
            website=f"https://www.acme-health.example/clinics/clinic-{k + 1}",
            email=f"frontdesk.clinic-{k + 1}@acme-health.example",
            county=county,
            latitude=round(latitude + float(north), 6),
            longitude=round(longitude + float(east_offset), 6),
        )
        clinics.append(clinic)
        n_pr = PRACTITIONERS_PER_CLINIC + int(rng.integers(-2, 3))
        for j in range(n_pr):
            if j < len(specialties):  # every clinic covers every specialty
                specialty = specialties[(j + k) % len(specialties)]
            else:
                specialty = str(
                    rng.choice(
                        [s for s, _ in _SPECIALTY_WEIGHTS], p=[w for _, w in _SPECIALTY_WEIGHTS]
                    )
                )
            female = bool(rng.random() < 0.5)
            n = len(practitioners) + 1
            practitioners.append(
                Practitioner(
                    id=f"pr-{n}",
                    given=(GIVEN_F if female else GIVEN_M)[int(rng.integers(10))],
                    family=FAMILY[int(rng.integers(len(FAMILY)))],
                    gender="female" if female else "male",
                    specialty=specialty,
                    clinic_id=clinic.id,
                    npi=f"{1000000000 + n * 7919 % 899999999:010d}",
                )
            )
        for kind in ("exam", "exam", "procedure", "imaging"):
            n = len(rooms) + 1
            rooms.append(Room(f"room-{n}", f"{codes.ROOM_KINDS[kind]} {n}", kind, clinic.id))
        kinds = (
            ["ekg", "ultrasound"] + (["xray"] if k % 2 else []) + (["mri"] if k % 3 == 2 else [])
        )
        for kind in kinds:
            n = len(devices) + 1
            devices.append(
                Device(
                    f"dev-{n}", f"{codes.DEVICE_KINDS[kind]} {n}", kind, clinic.id, f"SN-{n:06d}"
                )
            )
    clinic_pos = {c.id: i for i, c in enumerate(clinics)}
    schedules: list[ScheduleDef] = []

    def add(
        kind: str,
        entity_ref: str,
        actors: tuple[str, ...],
        clinic_id: str,
        services: tuple[str, ...],
        specialty: str | None,
    ) -> None:
        clinic = clinics[clinic_pos[clinic_id]]
        schedules.append(
            ScheduleDef(
                index=len(schedules),
                id=f"sch-{entity_ref.split('/', 1)[1]}",
                kind=kind,
                entity_ref=entity_ref,
                actor_refs=actors,
                clinic_index=clinic_pos[clinic_id],
                service_types=services,
                specialty=specialty,
                organization_ref=f"Organization/{clinic.organization_id}",
                address_terms=tuple(t.lower() for t in clinic.address_terms),
            )
        )

    for p in practitioners:
        ref = f"Practitioner/{p.id}"
        add(
            "pr",
            ref,
            (ref, f"Location/{p.clinic_id}"),
            p.clinic_id,
            codes.SPECIALTY_VISIT_TYPES[p.specialty],
            p.specialty,
        )
    for r in rooms:
        ref = f"Location/{r.id}"
        add("room", ref, (ref,), r.clinic_id, codes.ROOM_VISIT_TYPES[r.kind], None)
    for d in devices:
        ref = f"Device/{d.id}"
        add("dev", ref, (ref,), d.clinic_id, codes.DEVICE_VISIT_TYPES[d.kind], None)
    return organizations, clinics, practitioners, rooms, devices, schedules


def _clinic_sessions(clinic: Clinic, days: list[date]) -> list[tuple[int, int, int]]:
    """(UTC start minute, session length, day offset) of every session the clinic opens."""
    zone = ZoneInfo(clinic.tz)
    out = []
    for day_offset, day in enumerate(days):
        weekday = day.weekday()
        sessions: tuple[tuple[int, int], ...]
        if weekday < 5:
            sessions = WEEKDAY_SESSIONS
        elif weekday == 5 and clinic.saturday:
            sessions = SATURDAY_SESSIONS
        else:
            continue
        midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
        for local_start, length in sessions:
            moment = midnight + timedelta(minutes=local_start)  # wall clock; DST-safe (no 2am)
            out.append((epoch_minutes(moment.astimezone(UTC)), length, day_offset))
    return out


def _mean_layout_size(layouts: dict, kind: str, length: int) -> float:
    variants = layouts[(_layout_kind(kind), length)]
    return sum(len(v) for v in variants) / len(variants)


def _expand(
    org_schedules: list[ScheduleDef],
    clinics: list[Clinic],
    layouts: dict,
    days: list[date],
    day_base: int,
    work_probability: float,
    rng: np.random.Generator,
    only: set[int] | None = None,
) -> SlotArrays:
    """Pick worked sessions, lay slots out in them and draw statuses, vectorised."""
    per_clinic = [
        np.array(_clinic_sessions(c, days), dtype=np.int64).reshape(-1, 3) for c in clinics
    ]
    sess_sched, sess_start, sess_len, sess_day, sess_kind = [], [], [], [], []
    for s in org_schedules:
        if only is not None and s.index not in only:
            continue
        table = per_clinic[s.clinic_index]
        sess_sched.append(np.full(len(table), s.index, dtype=np.int32))
        sess_start.append(table[:, 0])
        sess_len.append(table[:, 1])
        sess_day.append(table[:, 2])
        sess_kind.append(np.full(len(table), 0 if s.kind == "pr" else 1, dtype=np.int8))
    if not sess_sched:
        return empty_arrays()
    sched = np.concatenate(sess_sched)
    start = np.concatenate(sess_start)
    length = np.concatenate(sess_len)
    day = np.concatenate(sess_day)
    kind = np.concatenate(sess_kind)
    worked = rng.random(len(sched)) < work_probability
    sched, start, length, day, kind = (
        sched[worked],
        start[worked],
        length[worked],
        day[worked],
        kind[worked],
    )
    choice = rng.integers(0, LAYOUTS_PER_KIND, len(sched))

    # One flat table of every layout; a session points at (first row, row count).
    table_keys = sorted(layouts)
    flat_off: list[int] = []
    flat_len: list[int] = []
    first: dict[tuple[str, int, int], tuple[int, int]] = {}
    for key in table_keys:
        for v, layout in enumerate(layouts[key]):
            first[(key[0], key[1], v)] = (len(flat_off), len(layout))
            flat_off.extend(o for o, _ in layout)
            flat_len.extend(n for _, n in layout)
    offs_arr = np.array(flat_off, dtype=np.int64)
    lens_arr = np.array(flat_len, dtype=np.int16)
    lookup_first = np.zeros((2, 256, LAYOUTS_PER_KIND), dtype=np.int64)
    lookup_count = np.zeros((2, 256, LAYOUTS_PER_KIND), dtype=np.int64)
    for (k, session_len, v), (f, c) in first.items():
        ki = 0 if k == "pr" else 1
        lookup_first[ki, session_len % 256, v] = f
        lookup_count[ki, session_len % 256, v] = c
    row_first = lookup_first[kind, length % 256, choice]
    row_count = lookup_count[kind, length % 256, choice]
    total = int(row_count.sum())
    session_of_slot = np.repeat(np.arange(len(sched)), row_count)
    within = np.arange(total) - np.repeat(np.cumsum(row_count) - row_count, row_count)
    rows = row_first[session_of_slot] + within
    slot_start = start[session_of_slot] + offs_arr[rows]
    slot_dur = lens_arr[rows]
    slot_sched = sched[session_of_slot]

    # Near days are busier; a few slots are tentatively held or blocked by the EHR.
    slot_day = (day[session_of_slot] + day_base).astype(np.float64)
    p_busy = 0.12 + 0.5 * np.exp(-slot_day / 7.0)
    draw = rng.random(total)
    status = np.full(total, FREE, dtype=np.int8)
    status[draw < p_busy + 0.03] = UNAVAILABLE
    status[draw < p_busy + 0.02] = TENTATIVE
    status[draw < p_busy] = BUSY
    return SlotArrays(slot_start.astype(np.int64), slot_dur, slot_sched.astype(np.int32), status)


def empty_arrays() -> SlotArrays:
    return SlotArrays(
        np.zeros(0, np.int64), np.zeros(0, np.int16), np.zeros(0, np.int32), np.zeros(0, np.int8)
    )


def generate(
    seed: int, size: int, start_date: date, horizon_days: int
) -> tuple[Organisation, SlotArrays]:
    """The organisation and about ``size`` slots over ``horizon_days`` from ``start_date``."""
    rng = np.random.default_rng(seed)
    layouts = _layouts(rng)
    days = [start_date + timedelta(days=i) for i in range(horizon_days)]
    weekdays = sum(1 for d in days if d.weekday() < 5)
    per_weekday_pr = sum(_mean_layout_size(layouts, "pr", n) for _, n in WEEKDAY_SESSIONS)
    per_weekday_asset = sum(_mean_layout_size(layouts, "room", n) for _, n in WEEKDAY_SESSIONS)
    per_clinic = weekdays * (PRACTITIONERS_PER_CLINIC * per_weekday_pr + 6.5 * per_weekday_asset)
    n_clinics = max(2, math.ceil(size / (MAX_WORK_PROBABILITY * max(per_clinic, 1.0))))
    organizations, clinics, practitioners, rooms, devices, schedules = _build_entities(
        rng, np.random.default_rng([seed, CONTACT_STREAM]), n_clinics
    )

    full = 0.0
    for s in schedules:
        for _, length, _ in _clinic_sessions(clinics[s.clinic_index], days):
            full += _mean_layout_size(layouts, s.kind, length)
    work_probability = min(MAX_WORK_PROBABILITY, size / max(full, 1.0))
    org = Organisation(
        seed=seed,
        start_date=start_date,
        horizon_days=horizon_days,
        work_probability=work_probability,
        organizations=organizations,
        clinics=clinics,
        practitioners=practitioners,
        rooms=rooms,
        devices=devices,
        schedules=schedules,
        layouts=layouts,
    )
    slots = _expand(schedules, clinics, layouts, days, 0, work_probability, rng)
    return org, slots


def generate_day(org: Organisation, day: date, schedules: set[int] | None = None) -> SlotArrays:
    """Slots of one more day (``add-day``), seeded by the organisation seed and the date."""
    rng = np.random.default_rng([org.seed, day.toordinal()])
    day_base = (day - org.start_date).days
    return _expand(
        org.schedules,
        org.clinics,
        org.layouts,
        [day],
        day_base,
        org.work_probability,
        rng,
        schedules,
    )
