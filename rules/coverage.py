"""Which cached schedules no rule covers, and why (``rules check``, sync status).

A rules file written for one EHR offers little against another, and the composer
alone only says "no offers". This walks each schedule through the same steps the
composer takes (its asset, the asset requirements of each visit type, the slots
that qualify, their length, the bookable window, opening hours, the other assets
a visit type needs) and names the step at which the last candidate visit type
dropped out: that is what to change in the rules file.

Pure: plain data in (schedules, actors, a per-schedule summary of free slots,
the rules), plain data out. It is a diagnosis, not a second composer: covered
means some visit type can use the schedule's slots, not that every offer exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from app.core.domain import Actor, Schedule, Slot, split_token
from rules.assets import AssetIndex, Qualifier, Unit
from rules.bookable import first_start, last_start
from rules.hours import Calendar
from rules.schema import (
    KIND_RESOURCE_TYPE,
    AssetRequirement,
    RulesFile,
    VisitTypeRule,
    effective_rules,
    horizon_days,
)
from rules.tokens import TokenSet

Reason = Literal[
    "no-free-slots",
    "no-actor",
    "actor-kind",
    "actor-not-matched",
    "location",
    "service-type",
    "appointment-type",
    "specialty",
    "duration",
    "bookable-window",
    "hours",
    "missing-asset",
]


@dataclass(frozen=True, slots=True)
class ScheduleSlots:
    """What coverage needs of one schedule's free slots: how many, and one slot per
    distinct shape (codes, length, UTC weekday and time of day)."""

    free: int
    samples: tuple[Slot, ...]


@dataclass(frozen=True, slots=True)
class Uncovered:
    """A schedule no visit type can use, with the step that ruled out the last one."""

    schedule_id: str
    actor: str | None  # the schedule's asset (practitioner, device, room...)
    code: Reason
    reason: str

    def as_json(self) -> dict[str, str | None]:
        return {
            "id": self.schedule_id,
            "actor": self.actor,
            "reason_code": self.code,
            "reason": self.reason,
        }


def summarise_slots(slots: Iterable[Slot]) -> dict[str, ScheduleSlots]:
    """Free ``slots`` per schedule id, reduced to a count and one slot per shape."""
    counts: dict[str, int] = {}
    shapes: dict[str, dict[tuple[object, ...], Slot]] = {}
    for slot in slots:
        if slot.status != "free":
            continue
        sid = slot.schedule_id
        counts[sid] = counts.get(sid, 0) + 1
        key = (
            slot.service_types,
            slot.appointment_types,
            slot.specialties,
            slot.end - slot.start,
            slot.start.weekday(),
            slot.start.time(),
        )
        shapes.setdefault(sid, {}).setdefault(key, slot)
    return {
        sid: ScheduleSlots(free=n, samples=tuple(shapes[sid].values())) for sid, n in counts.items()
    }


def uncovered_schedules(
    rules: RulesFile,
    schedules: Mapping[str, Schedule],
    actors: Mapping[str, Actor],
    slots: Mapping[str, ScheduleSlots],
    now: datetime,
) -> list[Uncovered]:
    """Every schedule in ``schedules`` that no visit type of ``rules`` covers, by id.

    ``slots`` summarises the free slots cached from ``now`` over the rules' horizon
    (:func:`summarise_slots`); a schedule absent from it has none.
    """
    index = AssetIndex({sid: list(s.samples) for sid, s in slots.items()}, schedules, actors)
    check = _Check(rules, index, Calendar(rules, actors), now)
    out = []
    for sid in sorted(schedules):
        found = check.schedule(schedules[sid], slots.get(sid))
        if found is not None:
            out.append(found)
    return out


_KIND_OF_TYPE = {"Practitioner": "practitioner", "Device": "device", "HealthcareService": "service"}


def asset_kind(actor: Actor) -> str | None:
    """The rules-file asset kind of an actor: a Location inside another is a room."""
    rtype = actor.resource_type
    if rtype == "Location":
        return "room" if actor.part_of else "location"
    return _KIND_OF_TYPE.get(rtype)


# One way a schedule could be used: as asset ``index`` of a visit type.
_Use = tuple[VisitTypeRule, int, AssetRequirement]
_Out = Callable[[Reason, str], Uncovered]
# The steps a (use, slot) pair passes, in order: the furthest one names the reason.
_SERVICE, _APPOINTMENT, _SPECIALTY, _DURATION, _WINDOW, _HOURS, _ASSETS = range(7)


class _Check:
    def __init__(self, rules: RulesFile, index: AssetIndex, calendar: Calendar, now: datetime):
        self.rules = rules
        self.index = index
        self.calendar = calendar
        self.now = now
        # each visit type's effective rule, by the visit type's identity
        self._effectives = {id(e.rule): e for e in effective_rules(rules)}
        self._lacks: dict[tuple[int, int, str], str | None] = {}

    def schedule(self, schedule: Schedule, summary: ScheduleSlots | None) -> Uncovered | None:
        sid = schedule.id
        if summary is None or summary.free == 0:
            days = horizon_days(self.rules)
            return Uncovered(
                sid, None, "no-free-slots", f"no free slots cached in the next {days} days"
            )
        unit = self.index.unit(schedule, list(summary.samples))
        if unit is None:
            return Uncovered(sid, None, "no-actor", "the schedule names no actor")

        def out(code: Reason, reason: str) -> Uncovered:
            return Uncovered(sid, unit.ref, code, reason)

        rtype = unit.actor.resource_type
        uses = [
            (vt, i, a)
            for vt in self.rules.visit_types
            for i, a in enumerate(vt.assets)
            if KIND_RESOURCE_TYPE[a.kind] == rtype
        ]
        if not uses:
            kinds = " or ".join(k for k, t in KIND_RESOURCE_TYPE.items() if t == rtype)
            hint = f" (kind {kinds})" if kinds else " (the rules file has no kind for it)"
            return out("actor-kind", f"actor kind {rtype} not matched by any asset{hint}")
        matched = [u for u in uses if _fills(u[2], unit)]
        if not matched:
            codes = ", ".join(_short(c) for c in unit.codes) or "none"
            return out(
                "actor-not-matched",
                f"{unit.ref} (codes: {codes}) not matched by the ids or codes of any {rtype} asset",
            )
        placed = [u for u in matched if not u[0].locations or unit.site in u[0].locations]
        if not placed:
            return out(
                "location",
                f"its clinic {unit.site or '(none)'} is not among the locations of any visit "
                "type it could serve",
            )
        return self._slots(unit, placed, summary.samples, out)

    def _slots(
        self, unit: Unit, uses: list[_Use], samples: tuple[Slot, ...], out: _Out
    ) -> Uncovered | None:
        """Covered as soon as one (use, slot) pair passes every step; else the reason of
        the furthest step any pair reached. The usual covered schedule costs a few pairs."""
        hours = self.calendar.site(unit.site)
        best = _SERVICE
        lengths: set[int] = set()
        need: list[int] = []
        lacking = ""
        for use in uses:
            vt, _, asset = use
            eff = self._effectives[id(vt)]
            wanted = asset.slot_service_types
            service = Qualifier(service_types=eff.slot_service_types if wanted is None else wanted)
            appointment = Qualifier(appointment_types=vt.slot_appointment_types)
            specialty = Qualifier(specialties=asset.codes if asset.kind == "practitioner" else ())
            duration = timedelta(minutes=vt.duration_minutes)
            earliest, latest = first_start(eff, self.now), last_start(eff, self.now)
            for slot in samples:
                if not service.accepts(slot):
                    continue
                best = max(best, _APPOINTMENT)
                if not appointment.accepts(slot):
                    continue
                best = max(best, _SPECIALTY)
                if not specialty.accepts(slot):
                    continue
                best = max(best, _DURATION)
                if not eff.join_contiguous and slot.end - slot.start < duration:
                    lengths.add(_minutes(slot))
                    need.append(vt.duration_minutes)
                    continue
                best = max(best, _WINDOW)
                if not earliest <= slot.start <= latest:
                    continue
                best = max(best, _HOURS)
                if hours.open_day(slot.start, slot.start + duration) is None:
                    continue
                best = _ASSETS
                missing = self._lacking(use, unit)
                if missing is None:
                    return None
                lacking = lacking or missing
                break  # the other assets do not depend on the slot
        if best == _SERVICE:
            types = _codes(s.service_types for s in samples)
            return out(
                "service-type", f"{_plural('service type', types)} not offered by any visit type"
            )
        if best == _APPOINTMENT:
            types = _codes(s.appointment_types for s in samples)
            return out(
                "appointment-type", f"slot {_plural('appointment type', types)} not accepted"
            )
        if best == _SPECIALTY:
            types = _codes(s.specialties for s in samples)
            return out(
                "specialty",
                f"slot {_plural('specialty', types)} not matched by any practitioner asset",
            )
        if best == _DURATION:
            return out(
                "duration",
                f"slots of {_list(sorted(lengths))} min are shorter than {min(need)} min and "
                "joining contiguous slots is off",
            )
        if best == _WINDOW:
            return out(
                "bookable-window",
                "no free slots inside the bookable window (min_lead_minutes, max_horizon_days)",
            )
        if best == _HOURS:
            return out(
                "hours",
                f"no slots inside opening hours ({unit.site or 'organisation'}, {hours.zone.key})",
            )
        return out("missing-asset", lacking)

    def _lacking(self, use: _Use, unit: Unit) -> str | None:
        """Which other required asset of the visit type has no candidate; None if all do."""
        key = (id(use[0]), use[1], unit.ref)
        if key not in self._lacks:
            self._lacks[key] = self._find_lacking(use, unit)
        return self._lacks[key]

    def _find_lacking(self, use: _Use, unit: Unit) -> str | None:
        vt, mine, _ = use
        for i, asset in enumerate(vt.assets):
            if i == mine or asset.optional:
                continue
            rtype = KIND_RESOURCE_TYPE[asset.kind]
            candidates = [
                other
                for other in self.index.by_type.get(rtype, [])
                if other.ref != unit.ref
                and _fills(asset, other)
                and (not asset.same_location_as_practitioner or other.site == unit.site)
            ]
            if not candidates:
                label = vt.display or vt.name or _short(vt.code)
                where = f" at {unit.site}" if asset.same_location_as_practitioner else ""
                return f"{label} also needs a {asset.kind}{where}: none has free slots"
        return None


def _fills(asset: AssetRequirement, unit: Unit) -> bool:
    if asset.ids and unit.ref not in asset.ids:
        return False
    return not asset.codes or TokenSet(asset.codes).any_of(unit.codes)


def _minutes(slot: Slot) -> int:
    return int((slot.end - slot.start).total_seconds() // 60)


def _short(token: str) -> str:
    return split_token(token)[1]


def _codes(groups: Iterable[tuple[str, ...]]) -> list[str]:
    return sorted({_short(code) for group in groups for code in group})


def _plural(noun: str, items: list[str]) -> str:
    if len(items) == 1:
        return f"{noun} {items[0]}"
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{plural} {_list(items)}"


def _list(items: list[int] | list[str]) -> str:
    return ", ".join(str(i) for i in items)


def format_uncovered(uncovered: list[Uncovered], total: int, *, limit: int = 200) -> str:
    """Plain-text lines for ``rules check``: one per uncovered schedule, with its reason."""
    if not uncovered:
        return f"every cached schedule ({total}) is covered by a visit type\n"
    lines = [f"{len(uncovered)} of {total} cached schedule(s) no visit type covers:"]
    for item in uncovered[:limit]:
        who = f" ({item.actor})" if item.actor else ""
        lines.append(f"  {item.schedule_id}{who}: {item.reason}")
    if len(uncovered) > limit:
        lines.append(f"  ... and {len(uncovered) - limit} more")
    return "\n".join(lines) + "\n"
