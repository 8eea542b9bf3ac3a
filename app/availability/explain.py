"""``$find`` explain mode: why the cached slots of a request's window were not offered.

A pass of its own, run only when a request asks for it (``_explain=true``, admin
only) and after the answer is composed: the normal ``$find`` does no extra work.
It reads every cached slot of the window (busy ones too, which the slot index
does not hold), the live claims and the schedules' sync state, and hands them to
the pure :func:`rules.explain.explain` with the slots the answer offered.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.availability.catalog import Catalog
from app.availability.service import MAX_SLOT_LENGTH, relevant_schedules
from app.cache import claims
from app.cache import repository as repo
from app.core.domain import Slot
from rules.appointment_id import ProposalPayload
from rules.composer import compose, slot_fetch_window
from rules.explain import Reason, coverable, explain
from rules.request import FindRequest, Page
from rules.schema import RulesFile


def explain_find(
    session: Session,
    request: FindRequest,
    *,
    rules: RulesFile,
    catalog: Catalog,
    offered: Collection[str],
    now: datetime,
    stale_after: timedelta,
) -> list[Reason]:
    """The reasons why cached slots starting in the request's window are not among
    ``offered`` (the slot ids of the answer's offers). Schedules whose last sync
    confirmation is older than ``stale_after``, or whose last sync failed, are
    reported as stale."""
    slots, claimed = _window(session, request, rules, catalog, now)
    return explain(
        request,
        rules,
        slots,
        catalog.schedules,
        catalog.actors,
        now,
        claimed=claimed,
        offered=offered,
        stale=stale_schedules(catalog.confirmations, catalog.errors, now, stale_after),
    )


@dataclass(frozen=True, slots=True)
class Explained:
    """What ``slotsync explain`` shows: how many offers, and why the rest are not."""

    offers: int
    offered_slots: int
    reasons: list[Reason]


def explain_offline(
    session: Session,
    request: FindRequest,
    *,
    rules: RulesFile,
    catalog: Catalog,
    now: datetime,
    page_size: int,
    stale_after: timedelta,
) -> Explained:
    """:func:`explain_find` without an API process: the offers are composed here, from
    the cache as ``$find`` would (its first page of ``page_size``), then explained."""
    slots, claimed = _window(session, request, rules, catalog, now)
    free = [s for s in slots if s.status == "free" and s.id not in claimed]
    page = Page(size=request.count or page_size)
    composed = compose(
        request, rules, free, catalog.schedules, catalog.actors, now, _unsigned, page=page
    )
    offered = {slot_id for a in composed.appointments for slot_id in a.slot_ids}
    reasons = explain(
        request,
        rules,
        slots,
        catalog.schedules,
        catalog.actors,
        now,
        claimed=claimed,
        offered=offered,
        stale=stale_schedules(catalog.confirmations, catalog.errors, now, stale_after),
    )
    return Explained(composed.total or 0, len(offered), reasons)


def _unsigned(payload: ProposalPayload) -> str:
    """No proposal leaves the command: its id need not be signed."""
    return ""


def _window(
    session: Session, request: FindRequest, rules: RulesFile, catalog: Catalog, now: datetime
) -> tuple[list[Slot], set[str]]:
    """Every cached slot the explanation may look at (buffers reach outside the window)
    of the schedules the request's practitioner and specialty filters leave (rooms and
    devices all stay), and the ids of those a live claim holds. Of a schedule no
    requested visit type can use only the times are read: it is only "not covered"."""
    span_start, span_end = slot_fetch_window(request, rules, now)
    start = min(request.start, span_start) - MAX_SLOT_LENGTH
    end = max(request.end, span_end)
    # no service-type narrowing: a schedule of the wrong service type is a reason to give
    scope = relevant_schedules(request, catalog.schedules.values(), None)
    # the slots of a schedule no requested visit type can use are only "not covered":
    # their times suffice (most of a window's slots are rooms' and devices')
    usable = coverable(request, rules, scope, catalog.schedules, catalog.actors, now)
    full = [sid for sid in scope if sid in usable]
    slots = repo.cached_window_slots(session, full, start, end)
    slots += repo.cached_slot_spans(
        session, [sid for sid in scope if sid not in usable], start, end
    )
    slots.sort(key=_by_start)
    _, claimed = claims.generation_and_claimed(session, start, end, now)
    return slots, claimed


def _by_start(slot: Slot) -> tuple[datetime, str]:
    return slot.start, slot.id


def stale_schedules(
    confirmations: Mapping[str, datetime],
    errors: Mapping[str, str],
    now: datetime,
    stale_after: timedelta,
) -> dict[str, str]:
    """Schedule id -> why its cached availability may differ from the EHR's."""
    out = {
        sid: f"availability last confirmed {int((now - at).total_seconds())} s ago"
        for sid, at in confirmations.items()
        if now - at > stale_after
    }
    out.update({sid: f"the last sync failed: {error}" for sid, error in errors.items()})
    return out
