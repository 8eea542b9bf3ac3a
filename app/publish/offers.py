"""Which slots the feed publishes: exactly the offers ``$find`` makes over the horizon.

A published Slot is one proposed appointment of ``$find`` without filters over
``[now, now + longest horizon + 1 day)`` (the span :func:`app.availability.service.warm_offers`
works out): its primary asset's schedule and visit type give the feed Schedule,
its span the Slot's start and end. The rules are not re-implemented: offers come
from :func:`app.availability.service.find_appointments`, a week at a time so that a million slots
are never composed at once.

A week's offers are those of a request spanning the week widened to whole local days
in every zone in use (:func:`rules.hours.whole_local_days`), kept when they start
inside the week: whole local days are then composed as the
horizon-wide request composes them (the per-day cap counts a local day at a time),
whatever the sites' time zones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlalchemy.orm import Session

from app.availability.catalog import Catalog
from app.availability.service import find_appointments
from app.availability.slot_index import SlotIndex
from app.core.domain import Actor, Schedule
from rules.appointment_id import ProposalPayload
from rules.hours import Calendar, whole_local_days
from rules.offer_memo import OfferMemo
from rules.request import FindRequest
from rules.schema import RulesFile, horizon_days

from . import resources

WEEK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class FeedSlot:
    id: str
    schedule: str  # feed Schedule id
    state: str
    week: str
    start: datetime
    end: datetime
    proposal_id: str


@dataclass(frozen=True, slots=True)
class FeedSchedule:
    """A feed Schedule: one EHR schedule offering one visit type, at its location."""

    id: str
    ehr_schedule: Schedule
    visit_type: str
    visit_type_display: str | None
    location: Actor | None
    practitioners: list[Actor]


def horizon(rules: RulesFile, now: datetime) -> tuple[datetime, datetime]:
    """The span the feed covers: what any visit type can book from ``now``."""
    days = horizon_days(rules)
    return now, now + timedelta(days=days + 1)


def week_of(moment: datetime) -> tuple[str, datetime]:
    """The ISO week label (``2026-W49``) of a moment in UTC and the Monday it starts."""
    day = moment.astimezone(UTC).date()
    monday = datetime.combine(day - timedelta(days=day.weekday()), time(0), UTC)
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}", monday


def site_of(schedule: Schedule, actors: dict[str, Actor]) -> Actor | None:
    """The building a schedule's slots are at: its first Location, or the Location a
    room, device or service is part of, up to the top."""
    for ref in schedule.actor_refs:
        actor = actors.get(ref)
        seen = set()
        while actor is not None and ref not in seen:
            seen.add(ref)
            if actor.resource_type == "Location" and not actor.part_of:
                return actor
            ref = actor.part_of or ""
            actor = actors.get(ref)
    return None


def feed_schedules(rules: RulesFile, catalog: Catalog) -> dict[tuple[str, str], FeedSchedule]:
    """(EHR schedule id, visit type) -> feed Schedule, for every pair an offer can have."""
    displays = {vt.code: vt.display for vt in rules.visit_types}
    out: dict[tuple[str, str], FeedSchedule] = {}
    for schedule in catalog.schedules.values():
        site = site_of(schedule, catalog.actors)
        practitioners = [
            catalog.actors[ref]
            for ref in schedule.actor_refs
            if ref.startswith("Practitioner/") and ref in catalog.actors
        ]
        for code, display in displays.items():
            out[schedule.id, code] = FeedSchedule(
                resources.schedule_id(schedule.id, code),
                schedule,
                code,
                display,
                site,
                practitioners,
            )
    return out


def _signing_within(
    sign: Callable[[ProposalPayload], str], start: datetime, end: datetime
) -> Callable[[ProposalPayload], str]:
    """Sign only offers starting in ``[start, end)``: the margins are composed twice."""
    return lambda payload: sign(payload) if start <= payload.start < end else ""


def weekly_offers(
    session: Session,
    *,
    rules: RulesFile,
    catalog: Catalog,
    slot_index: SlotIndex,
    memo: OfferMemo | None,
    sign: Callable[[ProposalPayload], str],
    now: datetime,
) -> Iterator[tuple[datetime, datetime, list[FeedSlot]]]:
    """Each week of the horizon (clipped to it) with the offers starting in it."""
    first, last = horizon(rules, now)
    longest = timedelta(minutes=max(vt.duration_minutes for vt in rules.visit_types))
    schedules = feed_schedules(rules, catalog)
    states = {key: resources.state_of(fs.location) for key, fs in schedules.items()}
    zones = Calendar(rules, catalog.actors).zones()
    label, monday = week_of(first)
    while monday < last:
        start, end = max(monday, first), min(monday + WEEK, last)
        low, high = whole_local_days(start, end, zones)
        request = FindRequest(start=max(low, first), end=min(high + longest, last), count=None)
        offers = []
        if request.start < request.end:
            found = find_appointments(
                session,
                request,
                rules=rules,
                catalog=catalog,
                slot_index=slot_index,
                now=now,
                sign=_signing_within(sign, start, end),
                memo=memo,
            )
            seen: set[str] = set()
            for a in found.appointments:
                if not start <= a.start < end:
                    continue
                visit_type, ehr_schedule = a.service_types[0], a.schedule_ids[0]
                fid = resources.slot_id(visit_type, ehr_schedule, a.start, a.end)
                if fid in seen:  # two variants of a visit type, one primary slot
                    continue
                seen.add(fid)
                key = (ehr_schedule, visit_type)
                offers.append(
                    FeedSlot(fid, schedules[key].id, states[key], label, a.start, a.end, a.id)
                )
        yield start, end, offers
        monday += WEEK
        label, _ = week_of(monday)
