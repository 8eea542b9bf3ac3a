"""A starter rules file from what an EHR has (``slotsync rules init``).

Onboarding a new EHR starts from its schedules, not from another organisation's
rules: after a first load, this writes one visit type per service type found
(one entry per kind of asset offering it), a duration from the most common slot
length, opening hours that cover the slots found and the time zone the EHR's
locations state, with comments that say where each value came from and what to
adjust. The file loads as it is and offers every schedule that has free slots;
the comments name every schedule, actor and service type found.

Pure: plain data in (schedules, actors, free slots), YAML text out.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from app.core.domain import Actor, Schedule, Slot, split_token
from app.core.errors import SlotsyncError
from rules.assets import AssetIndex
from rules.coverage import asset_kind
from rules.schema import WEEKDAYS

DEFAULT_HORIZON_DAYS = 30
MAX_HORIZON_DAYS = 730
DEFAULT_MINUTES = 15
UNTYPED_CODE = "|appointment"  # a local code for slots that carry no service type
LISTED = 8  # schedules named per visit type before "and N more"
_DAY = 24 * 60


class EmptyCache(SlotsyncError):
    """The cache holds no schedules: there is nothing to start the rules from."""


@dataclass
class _Entry:
    """One visit type entry: a service type offered by one kind of asset."""

    code: str
    kind: str
    schedules: list[str] = field(default_factory=list)
    actors: dict[str, str | None] = field(default_factory=dict)
    lengths: Counter[int] = field(default_factory=Counter)
    codes: dict[str, None] = field(default_factory=dict)  # of the assets, in order found


def starter_rules(
    schedules: Mapping[str, Schedule],
    actors: Mapping[str, Actor],
    slots: Sequence[Slot],
    now: datetime,
) -> str:
    """The starter rules file as YAML text; ``slots`` are the cached free slots from
    ``now`` on. Raises :class:`EmptyCache` when there are no schedules."""
    if not schedules:
        raise EmptyCache("the cache holds no schedules")
    free = [s for s in slots if s.status == "free" and s.end > s.start and s.start >= now]
    by_schedule: dict[str, list[Slot]] = defaultdict(list)
    for slot in free:
        by_schedule[slot.schedule_id].append(slot)
    index = AssetIndex({}, schedules, actors)
    units = {sid: index.unit(s, by_schedule.get(sid, [])) for sid, s in sorted(schedules.items())}

    zone, zone_note = _organisation_zone(actors)
    entries: dict[tuple[str, str], _Entry] = {}
    unusable: list[str] = []
    for sid, unit in units.items():
        kind = asset_kind(unit.actor) if unit is not None else None
        if unit is None or kind is None:
            what = unit.ref if unit is not None else "no actor"
            unusable.append(f"{sid} ({what}): no asset kind in the rules format can use it")
            continue
        schedule = schedules[sid]
        own = by_schedule.get(sid, [])
        codes = list(dict.fromkeys((*schedule.service_types, *_slot_types(own))))
        if not codes or any(not s.service_types for s in own):
            codes.append(UNTYPED_CODE)
        for code in codes:
            entry = entries.setdefault((code, kind), _Entry(code, kind))
            entry.schedules.append(sid)
            entry.actors[unit.ref] = unit.actor.display
            entry.codes.update(dict.fromkeys(unit.codes))
            entry.lengths.update(
                _minutes(s) for s in own if code in s.service_types or not s.service_types
            )
    _drop_needless_untyped(entries)
    overall = Counter(_minutes(s) for s in free)
    sites = {sid: unit.site for sid, unit in units.items() if unit is not None}
    out = _Writer()
    _header(out, schedules, actors, free, entries, now)
    _organisation(out, zone, zone_note, actors, free, sites)
    _defaults(out, free, now)
    _visit_types(out, entries, overall)
    _catalogue(out, schedules, actors, by_schedule, unusable)
    return out.text()


def _slot_types(slots: Sequence[Slot]) -> list[str]:
    return list(dict.fromkeys(code for slot in slots for code in slot.service_types))


def _drop_needless_untyped(entries: dict[tuple[str, str], _Entry]) -> None:
    """Slots without a service type qualify for every visit type: the catch-all entry
    is needed only for kinds no other entry serves."""
    served = {kind for code, kind in entries if code != UNTYPED_CODE}
    for key in [k for k in entries if k[0] == UNTYPED_CODE and k[1] in served]:
        del entries[key]


def _minutes(slot: Slot) -> int:
    return int((slot.end - slot.start).total_seconds() // 60)


def _organisation_zone(actors: Mapping[str, Actor]) -> tuple[str, str]:
    """The zone most clinics state (rooms count with their clinic), else UTC."""
    zones: Counter[str] = Counter()
    for actor in actors.values():
        if actor.resource_type == "Location" and actor.timezone and _valid_zone(actor.timezone):
            zones[actor.timezone] += 1
    if not zones:
        return "UTC", "no location in the cache states a time zone: UTC. Adjust it."
    zone, n = zones.most_common(1)[0]
    total = sum(zones.values())
    note = f"the time zone {n} of {total} locations state in the EHR"
    if len(zones) > 1:
        others = ", ".join(z for z in sorted(zones) if z != zone)
        note += f" (others: {others}; their clinics keep their own zone)"
    return zone, note


def _valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class _Writer:
    def __init__(self) -> None:
        self._lines: list[str] = []

    def line(self, text: str = "", indent: int = 0) -> None:
        self._lines.append(" " * indent + text if text else "")

    def comment(self, text: str, indent: int = 0) -> None:
        self._lines.append(" " * indent + "# " + text)

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar: plain when it reads back the same, else JSON-quoted."""
    plain = value and "#" not in value and not value.startswith(("&", "*", "!", "'", '"'))
    if plain:
        try:
            if yaml.safe_load(f"k: {value}") == {"k": value}:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)


def _header(
    out: _Writer,
    schedules: Mapping[str, Schedule],
    actors: Mapping[str, Actor],
    free: Sequence[Slot],
    entries: Mapping[tuple[str, str], _Entry],
    now: datetime,
) -> None:
    kinds = Counter(a.resource_type for a in actors.values())
    census = ", ".join(f"{n} {t}" for t, n in sorted(kinds.items())) or "none"
    services = {code for code, _ in entries if code != UNTYPED_CODE}
    out.comment(f"Starter rules written by `slotsync rules init` at {now:%Y-%m-%d %H:%M} UTC")
    out.comment(
        f"from the cache: {len(schedules)} schedules, actors {census}, "
        f"{len(services)} service types, {len(free)} free slots."
    )
    out.comment("Every value comes from those; the comments say where from and what to adjust.")
    out.comment("Next: `slotsync rules check THIS_FILE`, then `slotsync sync-status` lists the")
    out.comment("schedules no rule covers, with the reason. The list of schedules is at the end.")
    out.line("version: 1")
    out.line()


def _organisation(
    out: _Writer,
    zone: str,
    zone_note: str,
    actors: Mapping[str, Actor],
    free: Sequence[Slot],
    sites: Mapping[str, str | None],
) -> None:
    out.line("organization:")
    out.comment("Adjust: the EHR's Organization is not cached; put your name here.", 2)
    out.line("name: My organisation", 2)
    out.comment(f"From {zone_note}.", 2)
    out.line(f"timezone: {_scalar(zone)}", 2)
    hours, note = _opening_hours(actors, free, sites, zone)
    for text in note:
        out.comment(text, 2)
    out.line("opening_hours:", 2)
    for day in WEEKDAYS:
        ranges = hours.get(day)
        value = json.dumps(ranges) if ranges else "[]"
        suffix = "" if ranges else "  # closed: no free slot starts on this weekday"
        out.line(f"{day}: {value}{suffix}", 4)
    out.comment("Adjust: add holidays, e.g. - {date: 2026-12-25, name: Christmas}", 2)
    out.line("closures: []", 2)
    clinics = sorted({s for s in sites.values() if s})
    if clinics:
        out.comment("Clinics found (a clinic's zone comes from the EHR when stated, else the", 2)
        out.comment("organisation's); add a `sites:` entry to pin a zone or change hours:", 2)
        for ref in clinics:
            actor = actors.get(ref)
            label = actor.display if actor and actor.display else ""
            tz = actor.timezone if actor and actor.timezone else f"no zone stated: {zone}"
            out.comment(f"  {ref}  {label} ({tz})".rstrip(), 2)
    out.line("sites: []", 2)
    out.line()


def _opening_hours(
    actors: Mapping[str, Actor],
    free: Sequence[Slot],
    sites: Mapping[str, str | None],
    org_zone: str,
) -> tuple[dict[str, list[str]], list[str]]:
    """Per weekday, from the earliest start to the latest end of the free slots, each
    in its clinic's zone, to the hour."""
    if not free:
        office = ["08:00-17:00"]
        return {day: office for day in WEEKDAYS[:5]}, [
            "No free slots cached: Monday to Friday office hours. Adjust them."
        ]
    zones: dict[str | None, ZoneInfo] = {}
    span: dict[int, tuple[int, int]] = {}
    for slot in free:
        site = sites.get(slot.schedule_id)
        zone = zones.get(site)
        if zone is None:
            actor = actors.get(site) if site else None
            stated = actor.timezone if actor and actor.timezone else None
            zone = zones[site] = ZoneInfo(stated if stated and _valid_zone(stated) else org_zone)
        start, end = slot.start.astimezone(zone), slot.end.astimezone(zone)
        first = start.hour * 60 + start.minute
        last = _DAY if end.date() > start.date() else end.hour * 60 + end.minute
        low, high = span.get(start.weekday(), (first, last))
        span[start.weekday()] = (min(low, first), max(high, last))
    hours: dict[str, list[str]] = {}
    for weekday, (earliest, latest) in span.items():
        opens = earliest // 60 * 60
        closes = min(_DAY, math.ceil(latest / 60) * 60)
        hours[WEEKDAYS[weekday]] = [f"{_hhmm(opens)}-{_hhmm(closes)}"]
    return hours, [
        "From the free slots cached: per weekday, the earliest start to the latest end",
        "(to the hour, each clinic in its own zone). Adjust: add breaks, e.g.",
        '["08:00-12:00", "13:00-17:00"]; a range covering no slot offers nothing.',
    ]


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _defaults(out: _Writer, free: Sequence[Slot], now: datetime) -> None:
    horizon = DEFAULT_HORIZON_DAYS
    note = f"{DEFAULT_HORIZON_DAYS} days, the usual booking horizon"
    if free:
        last = max(s.start for s in free)
        days = math.ceil((last - now).total_seconds() / 86400) + 1
        if days > horizon:
            horizon = min(days, MAX_HORIZON_DAYS)
            note = f"reaches the last free slot cached ({last:%Y-%m-%d})"
    out.line("defaults:")
    out.comment("Joining lets an appointment span back-to-back slots shorter than itself.", 2)
    out.line("join_contiguous: true", 2)
    out.comment("Adjust: e.g. 120 to keep the next two hours unbookable.", 2)
    out.line("min_lead_minutes: 0", 2)
    out.line(f"max_horizon_days: {horizon}  # {note}", 2)
    out.line("ordering: earliest", 2)
    out.line()


def _visit_types(
    out: _Writer, entries: Mapping[tuple[str, str], _Entry], overall: Counter[int]
) -> None:
    out.line("visit_types:")
    out.comment("One visit type per service type found on the schedules and their slots; a", 2)
    out.comment("service type that several kinds of asset offer has one entry per kind", 2)
    out.comment("(`name` tells them apart). Where a visit needs two assets at once (e.g. a", 2)
    out.comment("practitioner and a device), merge the entries: list both under `assets`.", 2)
    kinds_per_code = Counter(code for code, _ in entries)
    for (code, kind), entry in sorted(entries.items()):
        out.line()
        minutes, length_note = _duration(entry, overall)
        shown = ", ".join(entry.schedules[:LISTED])
        more = len(entry.schedules) - LISTED
        shown += f" and {more} more" if more > 0 else ""
        if code == UNTYPED_CODE:
            out.comment(f"Slots that carry no service type, on schedules of {kind}s:", 2)
            out.comment("a local code; adjust it to the visit type they are for.", 2)
        else:
            out.comment(f"Service type {code}", 2)
        out.comment(f"offered by {len(entry.schedules)} {kind} schedule(s): {shown}", 2)
        out.line(f"- code: {_scalar(code)}", 2)
        if kinds_per_code[code] > 1:
            out.line(f"name: {kind}", 4)
        out.line(f"display: {_scalar(_display(code))}", 4)
        out.line(f"duration_minutes: {minutes}  # {length_note}", 4)
        if code == UNTYPED_CODE:
            out.line("slot_service_types: []  # any slot", 4)
        out.line("assets:", 4)
        out.comment(f"Any {kind} whose slots qualify. Adjust: narrow with `codes:` (e.g.", 6)
        out.comment("specialties) or `ids:`; found:", 6)
        for ref, display in list(entry.actors.items())[:LISTED]:
            out.comment(f"  {ref}" + (f"  {display}" if display else ""), 6)
        if len(entry.actors) > LISTED:
            out.comment(f"  and {len(entry.actors) - LISTED} more", 6)
        if entry.codes:
            out.comment(f"Codes they carry ({_CODE_KINDS.get(kind, 'codes')}):", 6)
            out.comment(f"  {', '.join(entry.codes)}", 6)
        out.line(f"- kind: {kind}", 6)


_CODE_KINDS = {
    "practitioner": "specialties",
    "room": "room kinds, physical types",
    "location": "physical types",
    "device": "device kinds",
}


def _duration(entry: _Entry, overall: Counter[int]) -> tuple[int, str]:
    lengths = entry.lengths or overall
    if not lengths:
        return DEFAULT_MINUTES, "no free slots cached: a guess, adjust it"
    minutes = lengths.most_common(1)[0][0]
    where = "its slots" if entry.lengths else "all slots (none of its own cached)"
    seen = ", ".join(f"{m} min x{c}" for m, c in sorted(lengths.items()))
    return minutes, f"most common length of {where}: {seen}"


def _display(code: str) -> str:
    bare = split_token(code)[1].replace("-", " ").replace("_", " ").strip()
    return bare[:1].upper() + bare[1:] if bare else code


def _catalogue(
    out: _Writer,
    schedules: Mapping[str, Schedule],
    actors: Mapping[str, Actor],
    by_schedule: Mapping[str, list[Slot]],
    unusable: Sequence[str],
) -> None:
    out.line()
    out.comment("Schedules found (id: actors; service types; specialties; free slots cached):")
    for sid, schedule in sorted(schedules.items()):
        refs = ", ".join(
            ref + (f" ({actors[ref].display})" if ref in actors and actors[ref].display else "")
            for ref in schedule.actor_refs
        )
        types = ", ".join(split_token(t)[1] for t in schedule.service_types) or "-"
        specialties = ", ".join(schedule.specialties) or "-"
        free = len(by_schedule.get(sid, []))
        out.comment(f"  {sid}: {refs or 'no actor'}; {types}; {specialties}; {free}")
    if unusable:
        out.comment("Schedules no rule can offer as the rules format stands:")
        for text in unusable:
            out.comment(f"  {text}")
