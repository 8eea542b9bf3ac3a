"""Composing proposed appointments from cached free slots and the rules file.

Pure: plain data in, plain data out, no web or database imports, so the API,
the CLI (``rules check``) and tests share one implementation.

An appointment of visit type V at ``[t, t+d)`` is offered when every required
asset of V is free for the whole span: a *primary* asset (the first required
practitioner, else the first required asset) supplies candidate starts (the
start of each of its qualifying slots), and every other asset must have
qualifying free slots covering the same span -- one slot, or contiguous slots
when V allows joining. Opening hours, closures, lead time, horizon, buffers,
eligibility and the per-day cap then filter, and the ``ordering`` picks which
offers survive ``_count``. Each asset's slots are scanned once per visit type and
other assets are found by binary search, so the cost is linear in the slots of
the window (times a log factor).

This runs on every ``$find``, so work that cannot change the answer is skipped:
units sort their slots only when a visit type first needs them and slots are
qualified only where a search reaches them (``rules.assets``); candidates stay
bare tuples until they survive the ordering, the cap and ``_count``; offers in
``earliest`` order are merged lazily and stop at ``_count``; and optional assets
that no required one depends on are looked up only for the offers kept.

This module is the entry point and wires the stages, each in a module of its own:
:mod:`rules.selection` (requested visit types, merged and cut to ``_count`` or a
page), :mod:`rules.candidates` (one visit type's scan of its primary asset's
slots), :mod:`rules.planning` (the same from the offer memo's days),
:mod:`rules.matching` (the units that can fill each asset), :mod:`rules.ordering`
(per-day cap, ordering, ``_count``) and :mod:`rules.building` (signed proposals);
:mod:`rules.offers` holds the shapes they pass on, and contiguous slots are
searched in :mod:`rules.assets`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from app.core.domain import Actor, ProposedAppointment, Schedule, Slot
from rules.appointment_id import ProposalPayload
from rules.assets import AssetIndex, by_schedule_id, covering_slots
from rules.building import Builder, Signer
from rules.offer_memo import Basis, OfferMemo
from rules.planning import MemoUse
from rules.request import ComposeResult, FindRequest, Page, PatientInfo
from rules.schema import RulesFile, effective_rules
from rules.selection import choose, choose_page

__all__ = ["Signer", "compose", "covering_slots", "reconstruct", "slot_fetch_window"]


def compose(
    request: FindRequest,
    rules: RulesFile,
    slots: Sequence[Slot] | Mapping[str, Sequence[Slot]],
    schedules: Mapping[str, Schedule],
    actors: Mapping[str, Actor],
    now: datetime,
    sign: Signer,
    *,
    memo: OfferMemo | None = None,
    basis: Basis | None = None,
    page: Page | None = None,
) -> ComposeResult:
    """Proposed appointments for ``request``, ordered by start, at most ``request.count``.

    With ``page``, every offer is worked out (``request.count`` is not used) so that the
    result can say how many match, and only the page's are built and signed.

    ``slots`` are the cached slots overlapping :func:`slot_fetch_window` (non-free
    ones are ignored), or already the free ones per schedule id, each in start
    order; ``schedules`` maps schedule id and ``actors`` maps reference to the
    cached resources; ``sign`` turns a proposal into its id token.

    With ``memo`` and the ``basis`` the slots were cut from, candidate offers are
    reused from earlier requests (:mod:`rules.offer_memo`); the answer is the same.
    Then ``slots`` need only hold the schedules the memo cannot serve from the
    basis: those not in ``basis.slots`` and those with taken slots (passing every
    schedule's is fine too).
    """
    use = None
    if memo is not None and basis is not None:
        state = memo.state(basis.key, rules, schedules, actors)
        dirty = frozenset(slot.schedule_id for slot in basis.taken)
        window = slots if isinstance(slots, Mapping) else by_schedule_id(slots)
        index, shared = state.index(basis, window, dirty)
        use = MemoUse(state, basis, dirty, shared)
    else:
        index = AssetIndex(slots, schedules, actors)
    builder = Builder(request, index, sign)
    if page is None:
        chosen, notices = choose(request, rules, index, actors, now, use)
        return ComposeResult([builder.build(c) for c in chosen], notices)
    shown, total, next_after, notices = choose_page(request, rules, index, actors, now, use, page)
    return ComposeResult(
        [builder.build(c) for c in shown], notices, total=total, next_after=next_after
    )


def reconstruct(
    token: str,
    payload: ProposalPayload,
    rules: RulesFile,
    slots: Sequence[Slot],
    schedules: Mapping[str, Schedule],
    actors: Mapping[str, Actor],
    now: datetime,
    sign: Signer,
) -> ProposedAppointment | None:
    """The appointment a ``$find`` token names, if it is still offered now; else None.

    ``$hold``/``$book`` with an ``appt-id`` decode the token (which proves we issued
    it) and call this with the current cache: composing again for exactly that
    visit type and span, with the same patient, re-checks every rule (slots still
    free, lead time, hours...) on any replica without stored state. ``slots`` must
    cover :func:`slot_fetch_window` of ``[payload.start, payload.end)``.
    """
    patients = [ref for ref in payload.participants if ref.startswith("Patient/")]
    request = FindRequest(
        start=payload.start,
        end=payload.end,
        visit_types=(payload.visit_type,),
        patient=PatientInfo(ref=patients[0]) if patients else None,
    )
    index = AssetIndex(slots, schedules, actors)
    chosen, _ = choose(request, rules, index, actors, now)
    # The token holds the slot ids, so only an offer on the same slots can have it:
    # sign just those.
    same_slots = (c for c in chosen if c.slot_ids == payload.slot_ids)
    builder = Builder(request, index, sign)
    offers = (builder.build(c) for c in same_slots)
    return next((a for a in offers if a.id == token), None)


def slot_fetch_window(
    request: FindRequest, rules: RulesFile, now: datetime
) -> tuple[datetime, datetime]:
    """The span of cached slots :func:`compose` needs for ``request``.

    Wider than the request by the largest buffers (an asset must be free around
    the appointment) and narrowed to what any visit type could book from ``now``.
    Pass every slot overlapping ``[start, end)``.
    """
    effective = effective_rules(rules)
    lead = min(e.min_lead_minutes for e in effective)
    horizon = max(e.max_horizon_days for e in effective)
    before = max(e.buffer_before_minutes for e in effective)
    after = max(e.buffer_after_minutes for e in effective)
    longest = max(e.rule.duration_minutes for e in effective)
    start = max(request.start, now + timedelta(minutes=lead))
    end = min(request.end, now + timedelta(days=horizon, minutes=longest))
    return start - timedelta(minutes=before), max(end, start) + timedelta(minutes=after)
