"""Rules preview: the offers gained and lost if a new rules file replaced the live one.

The offers are ``$find``'s own: :func:`app.availability.service.find_appointments`
without ``_count``, from the slot index, under each rules file, a day (or a week) at
a time, as :mod:`app.publish.offers` publishes them: a request spanning the part
widened to whole local days in every zone in use (:func:`rules.hours.whole_local_days`),
so the per-day cap and the ``spread`` ordering see the days a horizon-wide request
sees. Nothing about the rules is re-implemented here: a part's offers under the live
rules and under the new rules are compared as sets and only their difference is kept,
counted in a :class:`rules.preview.Tally`, so memory holds one part's offers, never
the horizon's.

Each example is explained with the explain engine (:func:`app.availability.
explain.explain_find`): a lost offer under the new rules, a gained one under the
live rules, which names the rule (its path in the file) that removes it there;
:func:`rules.preview.cause_of` ties that path to the edit.

Eligibility depends on the patient: see :func:`rules.preview.cohorts`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from app.availability.catalog import Catalog
from app.availability.explain import explain_find
from app.availability.service import composable_slots
from app.availability.slot_index import SlotIndex
from app.core.gc_pause import collector_paused
from rules.hours import Calendar, whole_local_days
from rules.offer_memo import OfferMemo
from rules.preview import (
    LOST,
    Change,
    Cohort,
    Example,
    Key,
    Place,
    Tally,
    Where,
    cause_of,
    cohorts,
    composing,
    diff_rules,
    offer_keys,
    patient_of,
    set_difference,
)
from rules.request import FindRequest, PatientInfo
from rules.schema import RulesFile

# A preview-only reason: the other rules offer this start too, on other slots or for
# another length (a duration, join or asset change), so no rule removes it there.
OFFERED_DIFFERENTLY = "offered-differently"


@dataclass(slots=True)
class Preview:
    """The structural edit and, per cohort, the offers it gains and loses."""

    start: datetime
    end: datetime
    changes: list[Change]
    tallies: list[Tally]

    def as_json(self) -> dict[str, Any]:
        return {
            "horizon": {"start": self.start.isoformat(), "end": self.end.isoformat()},
            "changes": [c.as_json() for c in self.changes],
            "cohorts": [t.as_json() for t in self.tallies],
        }


def preview_horizon(old: RulesFile, new: RulesFile, now: datetime) -> tuple[datetime, datetime]:
    """What either file can book from ``now`` (the span ``warm_offers`` composes)."""
    days = max(r.effective(vt).max_horizon_days for r in (old, new) for vt in r.visit_types)
    return now, now + timedelta(days=days + 1)


def exhaustive_offers(
    session: Session,
    rules: RulesFile,
    *,
    catalog: Catalog,
    slot_index: SlotIndex,
    now: datetime,
    start: datetime,
    end: datetime,
    patient: PatientInfo | None = None,
    visit_types: tuple[str, ...] | None = None,
    memo: OfferMemo | None = None,
    keep: tuple[datetime, datetime] | None = None,
) -> dict[Place, Where]:
    """Every offer ``$find`` makes for ``[start, end)`` (no ``_count``), by place
    (:func:`rules.preview.offer_keys`): the slots ``find_appointments`` reads and the
    composer's own selection, each offer read off as it is selected rather than built.
    With ``visit_types``, only those codes the file has (none: no offer); with ``keep``,
    only the offers starting in that span. ``memo``: the
    offer memo ``$find`` keeps for these rules, whose remembered offers are reused."""
    if visit_types is not None:
        visit_types = tuple(c for c in visit_types if rules.visit_types_for(c))
        if not visit_types:
            return {}
    request = FindRequest(
        start=start, end=end, visit_types=visit_types or (), patient=patient, count=None
    )
    slots, basis = composable_slots(
        session,
        request,
        rules=rules,
        catalog=catalog,
        slot_index=slot_index,
        now=now,
        memo=memo is not None,
    )
    return offer_keys(
        request,
        rules,
        slots,
        catalog.schedules,
        catalog.actors,
        now,
        memo=memo,
        basis=basis,
        keep=keep,
    )


def changes_by_part(
    session: Session,
    *,
    old: RulesFile,
    new: RulesFile,
    catalog: Catalog,
    slot_index: SlotIndex,
    now: datetime,
    cohort: Cohort,
    sizes: Counter[str] | None = None,
    memo: OfferMemo | None = None,
) -> Iterator[tuple[str, Key]]:
    """``(GAINED | LOST, offer)`` over the horizon, a part at a time, in start order;
    ``sizes`` counts the offers under each file (``"old"``, ``"new"``). ``memo``: the
    offer memo of ``$find`` for ``old`` (the rules in force), used for ``old`` only: the
    new rules must not take its place."""
    first, last = preview_horizon(old, new, now)
    longest = timedelta(
        minutes=max(vt.duration_minutes for r in (old, new) for vt in r.visit_types)
    )
    codes = composing(old, new)  # codes whose offers can differ (None: every one)
    if cohort.visit_types is not None:
        codes = tuple(c for c in cohort.visit_types if codes is None or c in codes)
    # Parts start at the organisation's local midnights. Where every site keeps its
    # hours, a part is whole local days already and is composed without a margin, so
    # a part is one day: at 1M slots that held 77 MB and took 8.7 s, a week 399 MB and
    # 11.1 s. Sites in other zones widen each part by up to a day on either side: then
    # a week, composed 9 days for 7 kept rather than 3 for 1.
    zones = Calendar(old, catalog.actors).zones() | Calendar(new, catalog.actors).zones()
    org_zone = ZoneInfo(old.organization.timezone)
    part = timedelta(days=1) if len(zones) == 1 else timedelta(days=7)
    day = first.astimezone(org_zone).date()
    while (start := max(_local_midnight(day, org_zone), first)) < last:
        day += part
        end = min(_local_midnight(day, org_zone), last)
        low, high = whole_local_days(start, end, zones)
        window = (max(low, first), min(high + longest, last))
        sides = []
        for rules in (old, new):
            offers = exhaustive_offers(
                session,
                rules,
                catalog=catalog,
                slot_index=slot_index,
                now=now,
                start=window[0],
                end=window[1],
                patient=cohort.patient,
                visit_types=codes,
                memo=memo if rules is old else None,
                keep=(start, end),
            )
            sides.append(offers)
        before, after = sides
        if sizes is not None:
            sizes["old"] += len(before)
            sizes["new"] += len(after)
        yield from set_difference(before, after)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), zone).astimezone(UTC)


def preview_rules(
    session: Session,
    *,
    old: RulesFile,
    new: RulesFile,
    catalog: Catalog,
    slot_index: SlotIndex,
    now: datetime,
    patient: PatientInfo | None = None,
    examples: int = 5,
    memo: OfferMemo | None = None,
) -> Preview:
    """What replacing ``old`` by ``new`` gains and loses over the horizon, per cohort
    (:func:`rules.preview.cohorts`; ``patient`` previews just that patient). ``memo``:
    the offer memo ``$find`` keeps for ``old`` in this process, if any."""
    with collector_paused():  # see app.core.gc_pause: 45 % of a preview at 1M slots
        changes = diff_rules(old, new)
        zone = ZoneInfo(old.organization.timezone)
        tallies = []
        for cohort in cohorts(old, new, now.date(), patient):
            tally = Tally(cohort, zone, examples)
            sizes: Counter[str] = Counter()
            for direction, offer in changes_by_part(
                session,
                old=old,
                new=new,
                catalog=catalog,
                slot_index=slot_index,
                now=now,
                cohort=cohort,
                sizes=sizes,
                memo=memo,
            ):
                tally.add(direction, offer)
            tally.offers_before, tally.offers_after = sizes["old"], sizes["new"]
            for direction, kept in tally.examples.items():
                other = new if direction == LOST else old
                for example in kept:
                    _explain(session, example, other, catalog, now, cohort.patient, changes)
            tallies.append(tally)
        start, end = preview_horizon(old, new, now)
        return Preview(start, end, changes, tallies)


def _explain(
    session: Session,
    example: Example,
    rules: RulesFile,
    catalog: Catalog,
    now: datetime,
    patient: PatientInfo | None,
    changes: list[Change],
) -> None:
    """Why ``rules`` (the other file) does not offer the example: the reason the explain
    engine gives for its first slot, and the edit at the rule it names."""
    offer = example.offer
    actor = offer.actor or ""
    practitioners = (actor,) if actor.startswith("Practitioner/") else ()
    known = bool(rules.visit_types_for(offer.visit_type))
    if known:
        request = FindRequest(
            start=offer.start,
            end=offer.start + timedelta(days=1),
            visit_types=(offer.visit_type,),
            practitioners=practitioners,
            patient=patient,
        )
        reasons = explain_find(
            session,
            request,
            rules=rules,
            catalog=catalog,
            offered=(),
            now=now,
            stale_after=timedelta.max,
        )
        first = offer.slot_ids[0]
        for reason in reasons:
            if first in reason.slot_ids and reason.code not in ("stale", "count-cap"):
                example.reason, example.rule, example.detail = (
                    reason.code,
                    reason.rule,
                    reason.detail,
                )
                example.cause = cause_of(reason.rule, changes)
                break
    if example.reason is None:
        example.reason = "service-type" if not known else OFFERED_DIFFERENTLY
        example.detail = (
            f"the visit type {offer.visit_type} is not in that rules file"
            if not known
            else "that rules file offers this start on other slots or for another length"
        )
    if example.cause is None:
        example.cause = _visit_type_change(offer.visit_type, rules, changes)
        if example.rule is None and example.cause is not None:
            example.rule = example.cause.path


def _visit_type_change(code: str, rules: RulesFile, changes: list[Change]) -> Change | None:
    """The first edit inside an entry of visit type ``code`` (or of the list itself)."""
    entries = [f"visit_types[{n}]" for n, vt in enumerate(rules.visit_types) if vt.code == code]
    for change in changes:
        for entry in entries:
            if change.path == entry or change.path.startswith((entry + ".", entry + "[")):
                return change
    return next((c for c in changes if c.path.startswith("visit_types[")), None)


def request_patient(today: date, age: int | None, gender: str | None) -> PatientInfo | None:
    """The optional patient of a preview request (age in years, FHIR gender)."""
    if age is None and gender is None:
        return None
    return patient_of(today, age=age, gender=gender)


__all__ = [
    "OFFERED_DIFFERENTLY",
    "Preview",
    "changes_by_part",
    "exhaustive_offers",
    "preview_horizon",
    "preview_rules",
    "request_patient",
]
