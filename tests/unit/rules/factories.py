"""Small builders for rules-engine tests: an organisation, its slots, and rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.core.domain import VISIT_TYPE_SYSTEM, Actor, Schedule, Slot
from rules.appointment_id import encode
from rules.composer import compose
from rules.request import ComposeResult, FindRequest, PatientInfo
from rules.schema import WEEKDAYS, RulesFile

SECRET = b"test-secret"
UTC = ZoneInfo("UTC")
NY = ZoneInfo("America/New_York")
FAMILY = "http://snomed.info/sct|419772000"
DERM = "http://snomed.info/sct|394582007"
CARDIO = "http://snomed.info/sct|394579002"
PAEDS = "http://snomed.info/sct|394537008"
RADIOLOGY = "http://snomed.info/sct|394914008"
ROOM_KIND = "http://slotsync.example/fhir/CodeSystem/room-kind"
DEVICE_KIND = "http://slotsync.example/fhir/CodeSystem/device-kind"
ALL_DAY = {day: ["00:00-24:00"] for day in WEEKDAYS}


def vt(code: str) -> str:
    return f"{VISIT_TYPE_SYSTEM}|{code}"


def at(text: str, zone: ZoneInfo = NY) -> datetime:
    """``"2026-03-09 08:00"`` local wall clock -> aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=zone).astimezone(UTC)


def sign(payload: Any) -> str:
    return encode(payload, SECRET)


def make_rules(
    visit_types: list[dict[str, Any]],
    *,
    hours: dict[str, list[str]] | None = None,
    timezone: str = "America/New_York",
    closures: list[dict[str, Any]] | None = None,
    sites: list[dict[str, Any]] | None = None,
    defaults: dict[str, Any] | None = None,
) -> RulesFile:
    return RulesFile.model_validate(
        {
            "version": 1,
            "organization": {
                "name": "Test Org",
                "timezone": timezone,
                "opening_hours": ALL_DAY if hours is None else hours,
                "closures": closures or [],
                "sites": sites or [],
            },
            "defaults": {"max_horizon_days": 60, **(defaults or {})},
            "visit_types": visit_types,
        }
    )


def visit(code: str = "office-visit", minutes: int = 20, **extra: Any) -> dict[str, Any]:
    """A visit type needing one family-practice practitioner unless ``assets`` given."""
    return {
        "code": vt(code),
        "duration_minutes": minutes,
        "assets": [{"kind": "practitioner", "codes": [FAMILY]}],
        **extra,
    }


@dataclass
class World:
    """Actors, schedules and slots of a test organisation."""

    actors: dict[str, Actor] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    slots: list[Slot] = field(default_factory=list)

    def clinic(self, n: int, *, tz: str | None = None, address: str | None = None) -> str:
        ref = f"Location/clinic-{n}"
        self.actors[ref] = Actor(ref, display=f"Clinic {n}", timezone=tz, address=address)
        return ref

    def practitioner(
        self, n: int, *, clinic: int = 1, specialty: str = FAMILY, services: tuple[str, ...] = ()
    ) -> str:
        ref = f"Practitioner/pr-{n}"
        self.actors[ref] = Actor(ref, display=f"Dr {n}", codes=(specialty,))
        if f"Location/clinic-{clinic}" not in self.actors:
            self.clinic(clinic)
        sid = f"sch-pr-{n}-c{clinic}"
        self.schedules[sid] = Schedule(
            sid,
            (ref, f"Location/clinic-{clinic}"),
            service_types=services,
            specialties=(specialty,),
        )
        return sid

    def room(self, n: int, *, clinic: int = 1, kind: str = "exam") -> str:
        ref = f"Location/room-{n}"
        if f"Location/clinic-{clinic}" not in self.actors:
            self.clinic(clinic)
        self.actors[ref] = Actor(
            ref,
            display=f"Room {n}",
            codes=(f"{ROOM_KIND}|{kind}",),
            part_of=f"Location/clinic-{clinic}",
        )
        sid = f"sch-room-{n}"
        self.schedules[sid] = Schedule(sid, (ref,))
        return sid

    def device(self, n: int, *, at_ref: str = "Location/clinic-1", kind: str = "ekg") -> str:
        ref = f"Device/dev-{n}"
        self.actors[ref] = Actor(
            ref, display=f"Device {n}", codes=(f"{DEVICE_KIND}|{kind}",), part_of=at_ref
        )
        sid = f"sch-dev-{n}"
        self.schedules[sid] = Schedule(sid, (ref,))
        return sid

    def add_slots(
        self,
        schedule_id: str,
        start: datetime,
        lengths: list[int] | int,
        *,
        count: int = 1,
        status: str = "free",
        service_types: tuple[str, ...] = (vt("office-visit"),),
        statuses: list[str] | None = None,
    ) -> list[Slot]:
        """Back-to-back slots from ``start``; ``lengths`` in minutes (one per slot, or
        one length repeated ``count`` times)."""
        if isinstance(lengths, int):
            lengths = [lengths] * count
        out = []
        t = start
        for i, minutes in enumerate(lengths):
            end = t + timedelta(minutes=minutes)
            slot = Slot(
                id=f"{schedule_id}-{t.strftime('%Y%m%dT%H%M')}",
                schedule_id=schedule_id,
                start=t,
                end=end,
                status=statuses[i] if statuses else status,
                service_types=service_types,
            )
            out.append(slot)
            t = end
        self.slots.extend(out)
        return out

    def find(
        self,
        rules: RulesFile,
        start: datetime,
        end: datetime,
        *,
        now: datetime | None = None,
        patient: PatientInfo | None = None,
        **request: Any,
    ) -> ComposeResult:
        req = FindRequest(start=start, end=end, patient=patient, **request)
        return compose(
            req,
            rules,
            self.slots,
            self.schedules,
            self.actors,
            now or start - timedelta(days=1),
            sign,
        )


def starts(result: ComposeResult, zone: ZoneInfo = NY) -> list[str]:
    """Offer starts as local ``HH:MM`` strings, for readable assertions."""
    return [a.start.astimezone(zone).strftime("%H:%M") for a in result.appointments]


def example_world() -> World:
    """A small organisation matching the shared contract, one weekday of slots."""
    world = World()
    world.clinic(1, tz="America/New_York", address="1 Main St, Albany, NY 12207")
    day = "2026-03-10"
    specialties = {1: FAMILY, 2: PAEDS, 3: DERM, 4: CARDIO, 5: RADIOLOGY}
    services = {
        FAMILY: ("office-visit", "follow-up", "new-patient", "physical"),
        PAEDS: ("office-visit", "well-child", "vaccine"),
        DERM: ("office-visit", "consult", "minor-surgery"),
        CARDIO: ("consult", "follow-up", "ekg", "echo"),
        RADIOLOGY: ("x-ray", "ultrasound", "mri"),
    }
    for n, specialty in specialties.items():
        sid = world.practitioner(n, specialty=specialty)
        types = tuple(vt(c) for c in services[specialty])
        world.add_slots(sid, at(f"{day} 08:00"), 15, count=16, service_types=types)
    for n, kind in enumerate(("exam", "procedure", "imaging"), start=1):
        world.add_slots(
            world.room(n, kind=kind), at(f"{day} 08:00"), 10, count=24, service_types=()
        )
    for n, kind in enumerate(("ekg", "ultrasound", "xray", "mri"), start=1):
        sid = world.device(n, at_ref="Location/room-3", kind=kind)
        world.add_slots(sid, at(f"{day} 08:00"), 30, count=8, service_types=())
    assert f"{DEVICE_KIND}|mri" in world.actors["Device/dev-4"].codes
    return world
