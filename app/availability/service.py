"""The $find service: read the relevant free slots and let the rules compose offers.

Plain functions over a session and plain data, called by the API (and usable from
tests and the CLI). Which slots to read is decided here, conservatively: only
schedules that could contribute to a requested visit type, in the span the
composer asks for; the composer then applies every rule itself.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy.orm import Session

from app.availability.catalog import Catalog
from app.availability.slot_index import SlotIndex
from app.core.domain import Actor, ProposedAppointment, Schedule, Slot
from app.core.errors import InvalidParameter
from rules.appointment_id import ProposalPayload
from rules.bookable import NextStart
from rules.composer import compose, slot_fetch_window
from rules.offer_memo import Basis, OfferMemo
from rules.request import FindRequest, Notice, Page, PageKey
from rules.schema import RulesFile, horizon_days

# Slots are found by start time; a slot that began this long before the span can
# still overlap it. Longer slots than this are not offered.
MAX_SLOT_LENGTH = timedelta(hours=12)


@dataclass(frozen=True, slots=True)
class FindResult:
    appointments: list[ProposedAppointment]
    notices: list[Notice]
    actors: dict[str, Actor]
    oldest_confirmation: datetime | None
    failed_schedules: list[str] = field(default_factory=list)  # searched, last sync failed
    total: int | None = None  # paged: offers matching in all
    next_after: PageKey | None = None  # paged: where the next page starts
    # the first start of a slot read later than an instant (and before the request's
    # end): how long the answer holds while a horizon narrows it (same_answer_until)
    next_start: NextStart | None = None


def check_visit_types(request: FindRequest, rules: RulesFile) -> None:
    """An unknown visit type is a client error (400), not an empty answer. Visit types
    are alternatives (a comma list, or the codings of one CodeableConcept): one known
    is enough, and the unknown others are named in a warning by the composer."""
    if request.visit_types and not any(rules.visit_types_for(c) for c in request.visit_types):
        listed = ", ".join(repr(c) for c in request.visit_types)
        raise InvalidParameter(
            f"visit-type {listed} is not offered by this organisation's rules",
            expression="visit-type",
        )


def qualifying_service_types(request: FindRequest, rules: RulesFile) -> set[str] | None:
    """Slot service types that can serve the request; None when any slot may."""
    wanted = (
        [vt for code in request.visit_types for vt in rules.visit_types_for(code)]
        if request.visit_types
        else list(rules.visit_types)
    )
    out: set[str] = set()
    for vt in wanted:
        eff = rules.effective(vt)
        groups = [eff.slot_service_types] + [
            a.slot_service_types for a in vt.assets if a.slot_service_types is not None
        ]
        for group in groups:
            if not group:  # [] = any slot qualifies
                return None
            out.update(group)
    return out


def relevant_schedules(
    request: FindRequest, schedules: Iterable[Schedule], service_types: set[str] | None
) -> list[str]:
    """Schedules whose slots could be part of an answer (a superset; never too few)."""
    chosen: list[str] = []
    wanted_practitioners = set(request.practitioners)
    wanted_specialties = set(request.specialties)
    for schedule in schedules:
        if (
            service_types is not None
            and schedule.service_types
            and service_types.isdisjoint(schedule.service_types)
        ):
            continue
        practitioners = [r for r in schedule.actor_refs if r.startswith("Practitioner/")]
        if (
            practitioners
            and wanted_practitioners
            and wanted_practitioners.isdisjoint(practitioners)
        ):
            continue
        if (
            practitioners
            and wanted_specialties
            and schedule.specialties
            and wanted_specialties.isdisjoint(schedule.specialties)
        ):
            continue
        chosen.append(schedule.id)
    return chosen


def _relevant_schedules(request: FindRequest, rules: RulesFile, catalog: Catalog) -> list[str]:
    """:func:`relevant_schedules` of the catalog, worked out once per catalog and kind
    of request (they repeat: thousands of requests, a handful of filters)."""
    key = ("relevant-schedules", request.visit_types, request.practitioners, request.specialties)
    found = catalog.derived.get(key)
    if found is not None and found[0] is rules:
        return found[1]
    schedule_ids = relevant_schedules(
        request, catalog.schedules.values(), qualifying_service_types(request, rules)
    )
    if len(catalog.derived) >= 1024:
        catalog.derived.clear()
    catalog.derived[key] = (rules, schedule_ids)
    return schedule_ids


def find_appointments(
    session: Session,
    request: FindRequest,
    *,
    rules: RulesFile,
    catalog: Catalog,
    slot_index: SlotIndex,
    now: datetime,
    sign: Callable[[ProposalPayload], str],
    memo: OfferMemo | None = None,
    page: Page | None = None,
    state: tuple[int, Collection[str]] | None = None,
) -> FindResult:
    """Offers for ``request`` from the slot index; with ``memo``, candidate offers
    are reused across requests while the rules and the catalog stay the same
    (:mod:`rules.offer_memo`); the answer is the same. ``state``: the slot index's
    :meth:`~SlotIndex.state` of the request's :func:`slot_fetch_window`, if read."""
    check_visit_types(request, rules)
    span_start, span_end = slot_fetch_window(request, rules, now)
    schedule_ids = _relevant_schedules(request, rules, catalog)
    slots: Mapping[str, Sequence[Slot]] = {}
    basis = None
    if span_end > span_start and schedule_ids:
        read = slot_index.read(session, schedule_ids, span_start, span_end, now, state)
        if memo is None:
            slots = read.slots
        else:
            # The memo cuts the full lists itself; it needs the window only of the
            # schedules that are not tidy or have claimed slots. No key beyond rules
            # and catalog: the memo serves a day only while the slot lists it came
            # from are the very same objects, and the index replaces just the lists
            # of schedules a sync changed, so a notification about one schedule
            # leaves every other schedule's remembered offers warm.
            slots = read.cut
            basis = Basis(None, read.full, read.taken)
    result = compose(
        request,
        rules,
        slots,
        catalog.schedules,
        catalog.actors,
        now,
        sign,
        memo=memo,
        basis=basis,
        page=page,
    )
    return FindResult(
        appointments=result.appointments,
        notices=result.notices,
        actors=catalog.actors,
        oldest_confirmation=_oldest_confirmation(result.appointments, catalog.confirmations),
        failed_schedules=[sid for sid in schedule_ids if sid in catalog.errors],
        total=result.total,
        next_after=result.next_after,
        next_start=partial(slot_index.first_start_after, schedule_ids, before=request.end),
    )


def composable_slots(
    session: Session,
    request: FindRequest,
    *,
    rules: RulesFile,
    catalog: Catalog,
    slot_index: SlotIndex,
    now: datetime,
    memo: bool = False,
) -> tuple[Mapping[str, Sequence[Slot]], Basis | None]:
    """The free slots :func:`find_appointments` composes ``request`` from, read the same
    way, and with ``memo`` the basis the offer memo needs (then the slots are only
    those the memo cannot serve): for callers composing offers in bulk that need every
    offer's identity but no proposal (the rules preview)."""
    check_visit_types(request, rules)
    span_start, span_end = slot_fetch_window(request, rules, now)
    schedule_ids = _relevant_schedules(request, rules, catalog)
    if span_end <= span_start or not schedule_ids:
        return {}, None
    read = slot_index.read(session, schedule_ids, span_start, span_end, now)
    if not memo:
        return read.slots, None
    return read.cut, Basis(None, read.full, read.taken)


def warm_offers(
    session: Session,
    *,
    rules: RulesFile,
    catalog: Catalog,
    slot_index: SlotIndex,
    memo: OfferMemo,
    now: datetime,
) -> None:
    """Work out every visit type's candidate offers over the whole booking horizon
    into ``memo`` (at start-up, off the request path): with a million slots, the first
    broad request otherwise spends seconds on it, and requests with filters reuse the
    same days. Asks for no offers, so nothing is built or signed."""
    horizon = horizon_days(rules)
    request = FindRequest(start=now, end=now + timedelta(days=horizon + 1), count=0)
    find_appointments(
        session,
        request,
        rules=rules,
        catalog=catalog,
        slot_index=slot_index,
        now=now,
        sign=lambda payload: "",
        memo=memo,
    )


def _oldest_confirmation(
    appointments: Collection[ProposedAppointment], confirmations: Mapping[str, datetime]
) -> datetime | None:
    """meta.lastUpdated: the oldest sync confirmation among the schedules used."""
    used = [
        confirmations[sid] for a in appointments for sid in a.schedule_ids if sid in confirmations
    ]
    return min(used) if used else None
