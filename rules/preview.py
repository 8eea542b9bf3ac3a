"""What a rules change does to the offers: the pure half of ``slotsync rules diff``.

The offers themselves come from ``$find``'s own code (:mod:`app.availability.preview`
runs it exhaustively under each rules file); this module holds what needs no cache:

- :func:`diff_rules`, the structural difference of two rules files as paths in the
  file (the same paths :mod:`rules.explain` names rules by), so that an explained
  offer can be tied to the edit that caused it (:func:`cause_of`);
- :func:`cohorts`, the patients the preview composes for. Eligibility depends on the
  patient and an unknown patient is never excluded, so a preview without a patient
  would hide every eligibility change: when a visit type's eligibility differs
  between the files, one patient per side of each changed boundary (age, gender,
  new or existing) is previewed too, for the visit types whose eligibility changed;
- :class:`Tally`, the counts per schedule, visit type and day with a few examples,
  filled one offer at a time so that a million slots never sit in memory at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from app.core.domain import Actor, Schedule, Slot
from app.core.slot_columns import SlotColumns
from rules.assets import AssetIndex
from rules.loader import format_loc
from rules.offer_memo import Basis, OfferMemo
from rules.offers import Offer
from rules.planning import MemoUse
from rules.request import FindRequest, PatientInfo
from rules.schema import AssetRequirement, Eligibility, RulesFile
from rules.selection import selections

GAINED, LOST = "gained", "lost"
EXAMPLES = 5  # per direction and cohort
MAX_AGE = 130
FHIR_GENDERS = ("female", "male", "other", "unknown")


class OfferKey(NamedTuple):
    """One offer of ``$find`` as the preview compares them: the visit type, the primary
    asset's schedule and reference, the span, and the slots of the primary and every
    required asset. Optional assets are not part of it: they are listed when free but
    never decide whether an offer exists (and resolving them for every offer of a
    horizon would cost more than composing it)."""

    visit_type: str
    schedule_id: str
    actor: str | None
    start: datetime
    end: datetime
    slot_ids: tuple[str, ...]


def offer_keys(
    request: FindRequest,
    rules: RulesFile,
    slots: Mapping[str, Sequence[Slot]],
    schedules: Mapping[str, Schedule],
    actors: Mapping[str, Actor],
    now: datetime,
    *,
    memo: OfferMemo | None = None,
    basis: Basis | None = None,
    keep: tuple[datetime, datetime] | None = None,
) -> dict[Place, Where]:
    """Every offer :func:`rules.composer.compose` makes for ``request`` (no ``_count``),
    by :data:`Place`, with where to read its slot ids (:func:`full_key`): the
    composer's own selection (:func:`rules.selection.selections`), each selected offer
    read off as it is selected, none resolved or built. ``slots`` as ``compose`` takes
    them (free ones per schedule id, in start order); with ``memo`` and ``basis``, the
    candidate offers it remembers are reused as ``compose`` reuses them (for the rules
    in force, whose memo ``$find`` keeps warm). ``keep``: only the offers starting in
    this span (default: the request's)."""
    use = None
    if memo is not None and basis is not None:
        state = memo.state(basis.key, rules, schedules, actors)
        dirty = frozenset(slot.schedule_id for slot in basis.taken)
        index, shared = state.index(basis, slots, dirty)
        use = MemoUse(state, basis, dirty, shared)
    else:
        index = AssetIndex(slots, schedules, actors)
    out: dict[Place, Where] = {}
    low, high = keep if keep is not None else (request.start, request.end)
    for plan, offers, _optional in selections(
        request, rules, index, actors, now, use, ordered=False
    ):
        code, duration, assets = plan.rule.code, plan.duration, plan.rule.assets
        for offer in offers:
            start = offer[0]
            if not low <= start < high:
                continue
            others = offer[6]
            assigned = None
            if others:
                assigned = tuple(
                    (other.ref, other.schedule.id)
                    for i, other, _, _ in others
                    if not assets[i].optional
                )
            out[code, offer[2].schedule.id, offer[1], start, duration, assigned] = (offer, assets)
    return out


def full_key(place: Place, where: Where) -> Key:
    """The :data:`Key` of the offer at ``place``: its slot ids read where
    :func:`offer_keys` found it."""
    offer, assets = where
    ids = _ids(offer[2].free.slots, offer[4], offer[5])
    others = offer[6]
    if others:
        parts = [ids] if isinstance(ids, str) else list(ids)
        for i, other, a, b in others:
            if not assets[i].optional:
                more = _ids(other.free.slots, a, b)
                parts += [more] if isinstance(more, str) else more
        ids = tuple(parts)
    return (*place[:5], ids)  # type: ignore[return-value]


def _ids(held: Sequence[Slot], first: int, stop: int) -> str | tuple[str, ...]:
    """The ids of ``held[first:stop]`` (one slot: its id alone), read straight from
    the columns when the slots are held so (no slot object made to read its id)."""
    if isinstance(held, SlotColumns):
        return held.id_at(first) if stop - first == 1 else held.ids_between(first, stop)
    return held[first].id if stop - first == 1 else tuple(s.id for s in held[first:stop])


def composing(old: RulesFile, new: RulesFile) -> tuple[str, ...] | None:
    """The visit type codes whose offers can differ between the files (None: all of
    them). A code's offers depend on its entries (with the defaults they inherit) and
    the organisation (hours, closures, sites, zone), so when neither changed its
    offers are the same under both files and need not be composed."""
    if old.organization != new.organization:
        return None
    before, after = _effective(old), _effective(new)
    return tuple(sorted(c for c in before.keys() | after.keys() if before.get(c) != after.get(c)))


def _effective(rules: RulesFile) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for vt in rules.visit_types:
        out.setdefault(vt.code, []).append((vt, rules.effective(vt)))
    return out


# An OfferKey's fields as a plain tuple (cheaper to make and hold by the million), but
# with the length (the plan's own timedelta) for the end, and an offer on one slot
# holding that slot's id rather than a 1-tuple; see as_offer_key.
Key = tuple[str, str, str | None, datetime, timedelta, str | tuple[str, ...]]

# What tells two offers apart, cheaper than their Key: the same fields but, for the
# slot ids, which other required assets (reference, schedule) it was assigned.
# Within one reading of the cache, an asset's slots for a span are the ones covering
# it on its schedule, so the primary's and the others' slot ids follow from these;
# they are read (full_key) only for the offers that differ, a fraction of the
# millions compared. (A key per offer with its ids cost a quarter of a preview.)
Place = tuple[str, str, str | None, datetime, timedelta, tuple[tuple[str, str], ...] | None]
# An offer as the selection gave it, and its visit type's assets (which are optional)
Where = tuple[Offer, Sequence[AssetRequirement]]


def as_offer_key(key: Key) -> OfferKey:
    code, schedule_id, ref, start, length, ids = key
    slot_ids = (ids,) if isinstance(ids, str) else ids
    return OfferKey(code, schedule_id, ref, start, start + length, slot_ids)


@dataclass(frozen=True, slots=True)
class Change:
    """One structural difference: ``path`` in the rules file, ``added`` / ``removed`` /
    ``changed``, and the values on either side (None when absent)."""

    path: str
    kind: str
    old: Any = None
    new: Any = None

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "old": self.old, "new": self.new}


def diff_rules(old: RulesFile, new: RulesFile) -> list[Change]:
    """Every path whose value differs between the two files (lists item by item)."""
    out: list[Change] = []
    _diff(old.model_dump(mode="json"), new.model_dump(mode="json"), (), out)
    return out


def _diff(old: Any, new: Any, loc: tuple[str | int, ...], out: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            if key not in new:
                out.append(Change(format_loc((*loc, key)), "removed", old[key], None))
            elif key not in old:
                out.append(Change(format_loc((*loc, key)), "added", None, new[key]))
            else:
                _diff(old[key], new[key], (*loc, key), out)
    elif isinstance(old, list) and isinstance(new, list) and _is_records(old, new):
        for n in range(max(len(old), len(new))):
            if n >= len(new):
                out.append(Change(format_loc((*loc, n)), "removed", old[n], None))
            elif n >= len(old):
                out.append(Change(format_loc((*loc, n)), "added", None, new[n]))
            else:
                _diff(old[n], new[n], (*loc, n), out)
    elif old != new:
        out.append(Change(format_loc(loc), "changed", old, new))


def _is_records(old: list[Any], new: list[Any]) -> bool:
    """Lists of mappings (visit types, assets, closures) are compared item by item;
    lists of values (opening hours, codes) as one value."""
    return any(isinstance(x, dict) for x in [*old, *new])


def cause_of(rule: str | None, changes: Iterable[Change]) -> Change | None:
    """The change at ``rule`` (a path :mod:`rules.explain` names), or the closest one
    above or below it in the file; None when the edit did not touch that rule."""
    if rule is None:
        return None
    best: Change | None = None
    for change in changes:
        if change.path == rule:
            return change
        related = _under(change.path, rule) or _under(rule, change.path)
        if related and (best is None or len(change.path) > len(best.path)):
            best = change
    return best


def _under(path: str, parent: str) -> bool:
    return path.startswith(parent) and path[len(parent) : len(parent) + 1] in (".", "[")


@dataclass(frozen=True, slots=True)
class Cohort:
    """A patient the preview composes for: ``patient`` None is an unknown patient (every
    eligibility passes); ``visit_types`` limits the passes to those codes (None = all)."""

    label: str
    patient: PatientInfo | None
    visit_types: tuple[str, ...] | None = None

    def as_json(self) -> dict[str, Any]:
        p = self.patient
        return {
            "label": self.label,
            "patient": None
            if p is None
            else {
                "birth_date": p.birth_date.isoformat() if p.birth_date else None,
                "gender": p.gender,
                "new_patient": p.new_patient,
            },
            "visit_types": list(self.visit_types) if self.visit_types is not None else None,
        }


def birth_date_for(age: int, today: date) -> date:
    """A birth date at which the patient is ``age`` from today for a year."""
    try:
        return today.replace(year=today.year - age)
    except ValueError:  # 29 February
        return today.replace(year=today.year - age, day=28)


def patient_of(
    today: date, age: int | None = None, gender: str | None = None, new: bool | None = None
) -> PatientInfo:
    """The patient of a preview request (age in completed years)."""
    birth = birth_date_for(age, today) if age is not None else None
    return PatientInfo(birth_date=birth, gender=gender, new_patient=new)


def cohorts(
    old: RulesFile, new: RulesFile, today: date, patient: PatientInfo | None = None
) -> list[Cohort]:
    """The patients to preview: the one given; else an unknown patient, plus one per
    side of every eligibility boundary that differs between the files, limited to the
    visit types whose eligibility changed (the others' offers are the same for every
    patient under both files, so their difference is the unknown patient's)."""
    if patient is not None:
        return [Cohort("the given patient", patient)]
    out = [Cohort("any patient", None)]
    changed = _eligibility_changes(old, new)
    if not changed:
        return out
    codes = tuple(sorted({code for code, _ in changed}))
    rules = [rule for _, rule in changed]
    ages: set[int] = set()
    for rule in rules:
        for bound in (rule.min_age_years, rule.max_age_years):
            if bound is not None:
                ages.update({bound - 1, bound, bound + 1})
    genders: list[str] = sorted({g for rule in rules for g in rule.genders})
    if genders:  # and one the rules do not name, which a gender rule excludes
        genders += [g for g in FHIR_GENDERS if g not in genders][:1]
    statuses = {rule.patient_status for rule in rules} - {"any"}
    for age in sorted(a for a in ages if 0 <= a <= MAX_AGE):
        out.append(Cohort(f"aged {age}", patient_of(today, age=age), codes))
    for gender in genders:
        out.append(Cohort(f"gender {gender}", patient_of(today, gender=gender), codes))
    if statuses:
        out.append(Cohort("new patient", patient_of(today, new=True), codes))
        out.append(Cohort("existing patient", patient_of(today, new=False), codes))
    return out


def _eligibility_changes(old: RulesFile, new: RulesFile) -> list[tuple[str, Eligibility]]:
    """(visit type code, eligibility) on either side, for codes whose eligibility differs."""
    before = _eligibilities(old)
    after = _eligibilities(new)
    out: list[tuple[str, Eligibility]] = []
    for code in before.keys() | after.keys():
        a, b = before.get(code, []), after.get(code, [])
        if a != b:
            out += [(code, rule) for rule in [*a, *b]]
    return out


def _eligibilities(rules: RulesFile) -> dict[str, list[Eligibility]]:
    out: dict[str, list[Eligibility]] = {}
    for vt in rules.visit_types:
        out.setdefault(vt.code, []).append(vt.eligibility)
    return out


@dataclass(slots=True)
class Example:
    """A gained or lost offer, with why the other rules file does not offer it."""

    offer: OfferKey
    reason: str | None = None  # a code of rules.explain.NOT_OFFERED_SYSTEM
    rule: str | None = None  # the path the explanation names
    detail: str = ""
    cause: Change | None = None  # the edit at (or around) that path

    def as_json(self) -> dict[str, Any]:
        o = self.offer
        return {
            "visit_type": o.visit_type,
            "schedule": o.schedule_id,
            "actor": o.actor,
            "start": o.start.isoformat(),
            "end": o.end.isoformat(),
            "slot_ids": list(o.slot_ids),
            "reason": self.reason,
            "rule": self.rule,
            "detail": self.detail,
            "cause": self.cause.as_json() if self.cause else None,
        }


@dataclass(slots=True)
class Tally:
    """Gained and lost offers of one cohort, counted as they arrive: per schedule, per
    visit type and per local day (of the organisation's time zone), with the first
    :data:`EXAMPLES` of each direction kept."""

    cohort: Cohort
    zone: ZoneInfo
    examples_wanted: int = EXAMPLES
    offers_before: int = 0  # offers under the live rules (this cohort's passes)
    offers_after: int = 0  # under the new rules
    totals: Counter[str] = field(default_factory=Counter)
    schedules: dict[str, Counter[str]] = field(default_factory=dict)
    visit_types: dict[str, Counter[str]] = field(default_factory=dict)
    days: dict[str, Counter[str]] = field(default_factory=dict)
    examples: dict[str, list[Example]] = field(default_factory=lambda: {GAINED: [], LOST: []})
    _last_day: tuple[datetime, str] | None = None  # the last start counted, and its day

    def add(self, direction: str, offer: Key) -> None:
        self.totals[direction] += 1
        code, schedule_id, _, start = offer[:4]
        last = self._last_day  # offers come in start order, many at each start
        if last is not None and last[0] == start:
            day = last[1]
        else:
            day = start.astimezone(self.zone).date().isoformat()
            self._last_day = (start, day)
        for table, key in (
            (self.schedules, schedule_id),
            (self.visit_types, code),
            (self.days, day),
        ):
            counter = table.get(key)
            if counter is None:
                counter = table[key] = Counter()
            counter[direction] += 1
        kept = self.examples[direction]
        if len(kept) < self.examples_wanted:
            kept.append(Example(as_offer_key(offer)))

    @property
    def gained(self) -> int:
        return self.totals[GAINED]

    @property
    def lost(self) -> int:
        return self.totals[LOST]

    def as_json(self) -> dict[str, Any]:
        return {
            "cohort": self.cohort.as_json(),
            "offers_before": self.offers_before,
            "offers_after": self.offers_after,
            "gained": self.gained,
            "lost": self.lost,
            "by_schedule": _rows(self.schedules),
            "by_visit_type": _rows(self.visit_types),
            "by_day": _rows(self.days),
            "examples": {d: [e.as_json() for e in self.examples[d]] for d in (GAINED, LOST)},
        }


def _rows(table: Mapping[str, Counter[str]]) -> list[dict[str, Any]]:
    return [
        {"key": key, GAINED: counts[GAINED], LOST: counts[LOST]}
        for key, counts in sorted(table.items())
    ]


def set_difference(
    old: Mapping[Place, Where], new: Mapping[Place, Where]
) -> Iterator[tuple[str, Key]]:
    """``(GAINED, offer)`` for offers only ``new`` has and ``(LOST, offer)`` for those only
    ``old`` has (as :func:`offer_keys` gives them), in start order, with their slot ids."""
    changes = [(LOST, p, old[p]) for p in old.keys() - new.keys()]
    changes += [(GAINED, p, new[p]) for p in new.keys() - old.keys()]
    changes.sort(key=lambda c: (c[1][3], c[1][1], c[1][0], c[0]))
    return ((direction, full_key(place, where)) for direction, place, where in changes)
