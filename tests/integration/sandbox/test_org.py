"""The seeded organisation follows the shared contract and is deterministic."""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from sandbox_ehr import codes
from sandbox_ehr.fhir_render import Renderer
from sandbox_ehr.model import BUSY, FREE, TENTATIVE
from sandbox_ehr.names import PLACES
from sandbox_ehr.org import SPREAD_DEGREES, generate, generate_day
from sandbox_ehr.store import SlotQuery, SlotStore

START = date(2026, 11, 26)


def test_same_seed_same_organisation_and_slots() -> None:
    org_a, a = generate(5, 4000, START, 30)
    org_b, b = generate(5, 4000, START, 30)
    _, c = generate(6, 4000, START, 30)
    assert org_a.practitioners == org_b.practitioners and org_a.clinics == org_b.clinics
    assert np.array_equal(a.start, b.start) and np.array_equal(a.status, b.status)
    assert len(c) != len(a) or not np.array_equal(c.start, a.start)


def test_size_is_approximate_from_hundreds_to_a_million() -> None:
    for size in (300, 5000, 100_000):
        _, slots = generate(42, size, START, 90)
        assert 0.75 * size <= len(slots) <= 1.25 * size, (size, len(slots))
    t0 = time.perf_counter()
    _, big = generate(42, 1_000_000, START, 90)
    assert time.perf_counter() - t0 < 10
    assert len(big) >= 1_000_000 * 0.95
    assert big.start.nbytes + big.dur.nbytes + big.sched.nbytes + big.status.nbytes < 20_000_000


def test_contract_ids_codes_and_actors() -> None:
    org, _ = generate(42, 20_000, START, 30)
    assert {p.specialty for p in org.practitioners} == set(codes.SPECIALTIES)
    assert {c.tz for c in org.clinics} <= set(codes.TIME_ZONES) and len(
        {c.tz for c in org.clinics}
    ) >= 2
    assert {r.kind for r in org.rooms} == set(codes.ROOM_KINDS)
    assert {d.kind for d in org.devices} <= set(codes.DEVICE_KINDS)
    for s in org.schedules:
        if s.kind == "pr":
            n = s.id.removeprefix("sch-pr-")
            clinic = next(p.clinic_id for p in org.practitioners if p.id == f"pr-{n}")
            assert s.actor_refs == (f"Practitioner/pr-{n}", f"Location/{clinic}")
            assert s.service_types == codes.SPECIALTY_VISIT_TYPES[s.specialty]
        elif s.kind == "room":
            assert s.id.startswith("sch-room-") and s.actor_refs == (f"Location/{s.id[4:]}",)
        else:
            assert s.id.startswith("sch-dev-") and s.actor_refs == (f"Device/{s.id[4:]}",)


def test_slots_follow_clinic_hours_lengths_and_statuses() -> None:
    org, slots = generate(42, 20_000, START, 30)
    seen_lengths: dict[str, set[int]] = {"pr": set(), "asset": set()}
    for i in range(0, len(slots), 7):
        s = org.schedules[int(slots.sched[i])]
        tz = ZoneInfo(org.clinics[s.clinic_index].tz)
        start = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC")) + timedelta(
            minutes=int(slots.start[i])
        )
        local = start.astimezone(tz)
        end = local + timedelta(minutes=int(slots.dur[i]))
        minutes = (local.hour * 60 + local.minute, end.hour * 60 + end.minute)
        if local.weekday() < 5:
            assert minutes[0] >= 480 and minutes[1] <= 1020
            assert minutes[1] <= 720 or minutes[0] >= 780, "no slot in the lunch break"
        else:
            assert local.weekday() == 5 and minutes[0] >= 540 and minutes[1] <= 720
        seen_lengths["pr" if s.kind == "pr" else "asset"].add(int(slots.dur[i]))
    assert seen_lengths["pr"] <= {15, 20, 30} and len(seen_lengths["pr"]) >= 2
    assert seen_lengths["asset"] <= {10, 15, 30} and len(seen_lengths["asset"]) >= 2
    counts = np.bincount(slots.status, minlength=5)
    assert counts[FREE] > counts[BUSY] > counts[TENTATIVE] > 0


def test_generate_day_is_seeded_and_on_that_day() -> None:
    org, _ = generate(42, 5000, START, 30)
    day = START + timedelta(days=32)  # a Monday after the horizon
    a, b = generate_day(org, day), generate_day(org, day)
    assert len(a) > 0 and np.array_equal(a.start, b.start)
    lo = (day - date(1970, 1, 1)).days * 1440
    assert ((a.start >= lo) & (a.start < lo + 1440 + 600)).all()


def test_rendered_times_follow_daylight_saving_changes() -> None:
    store = SlotStore(1, 3000, date(2027, 3, 1), 30)  # New York moves to -04:00 on 2027-03-14
    renderer = Renderer(store.org, "r4", 0)
    ny = [
        s.index
        for s in store.org.schedules
        if store.org.clinics[s.clinic_index].tz == "America/New_York"
    ]
    indices = store.page(
        SlotQuery(schedules=frozenset(ny)), None, 100_000, want_total=False
    ).indices
    slots = renderer.slot_resources(store, indices)
    before = [s for s in slots if s["start"] < "2027-03-13"]
    after = [s for s in slots if s["start"] > "2027-03-15"]
    assert before and after
    assert all(s["start"].endswith("-05:00") for s in before)
    assert all(s["start"].endswith("-04:00") for s in after)
    assert (
        min(s["start"][11:16] for s in after) >= "08:00"
        and max(s["end"][11:16] for s in after) <= "17:00"
    )


def test_clinics_have_a_seeded_phone_url_email_county_and_position() -> None:
    org, _ = generate(42, 20_000, START, 30)
    other, _ = generate(43, 20_000, START, 30)
    for clinic in org.clinics:
        area_code, county, latitude, longitude = PLACES[clinic.city]
        assert re.fullmatch(rf"{area_code}-555-01\d\d", clinic.phone)
        assert clinic.website.startswith("https://") and clinic.id in clinic.website
        assert clinic.email.endswith(".example") and clinic.county == county
        assert abs(clinic.latitude - latitude) <= SPREAD_DEGREES
        assert abs(clinic.longitude - longitude) <= SPREAD_DEGREES
    assert len({(c.latitude, c.longitude) for c in org.clinics}) == len(org.clinics)
    assert [c.latitude for c in org.clinics] != [c.latitude for c in other.clinics]
    # rendered as the clinic's Location in both versions
    for flavour in ("stu3", "r4"):
        location = Renderer(org, flavour, 0).clinic(org.clinics[0])
        assert location["position"] == {
            "latitude": org.clinics[0].latitude,
            "longitude": org.clinics[0].longitude,
        }
        assert [p["system"] for p in location["telecom"]] == ["phone", "url", "email"]
        assert location["address"]["district"] == org.clinics[0].county
