"""Decoding slot search pages straight from bytes (msgspec): the load's hot path.

A page of a thousand slots is about 1 MB of JSON. Building Python dicts for all
of it and walking them (:func:`app.fhir.parse.parse_bundle_page`) costs several
times more than the rest of a load; here typed structs of only the fields we use
are decoded directly, entry by entry, and turned into the same
:class:`~app.fhir.parse.BundlePage`. The non-Slot entries (included Schedules,
actors, OperationOutcomes) go through the dict parser, once per distinct resource:
``_include`` repeats the same Schedules and actors on every page (several hundred
a page on a large organisation, as costly as the page's slots), so each is
remembered by its exact bytes. The rules are those of :mod:`app.fhir.parse`: a
malformed resource is rejected alone, a page that is not a Bundle is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import msgspec

from app.core.domain import Actor, Schedule, Slot

from .parse import (
    ACTOR_TYPES,
    BundlePage,
    FhirParseError,
    parse_actor,
    parse_schedule,
    relative_reference,
)


class _Reference(msgspec.Struct):
    reference: str | None = None


class _Coding(msgspec.Struct):
    system: str | None = None
    code: str | None = None


class _Concept(msgspec.Struct):
    coding: list[_Coding] = []


class _Meta(msgspec.Struct):
    versionId: str | None = None
    lastUpdated: msgspec.Raw = msgspec.Raw()


class _Slot(msgspec.Struct):
    # Times and code lists stay raw JSON: the same few dozen values repeat on every
    # slot of a page, so each distinct one is parsed once (see _instant, _codes).
    resourceType: str
    id: str
    schedule: _Reference
    status: str
    start: msgspec.Raw
    end: msgspec.Raw
    serviceType: msgspec.Raw = msgspec.Raw()  # empty when absent
    specialty: msgspec.Raw = msgspec.Raw()
    appointmentType: msgspec.Raw = msgspec.Raw()
    overbooked: bool = False
    comment: str | None = None
    meta: _Meta | None = None


class _Kind(msgspec.Struct):
    resourceType: str | None = None


class _Entry(msgspec.Struct):
    resource: msgspec.Raw = msgspec.Raw()  # decoded later, by its resourceType


class _Link(msgspec.Struct):
    relation: str | None = None
    url: str | None = None


class _Bundle(msgspec.Struct):
    resourceType: str | None = None
    total: int | None = None
    link: list[_Link] = []
    entry: list[_Entry] = []


_bundle = msgspec.json.Decoder(_Bundle)
_kind = msgspec.json.Decoder(_Kind)
_slot = msgspec.json.Decoder(_Slot)
_concept_list = msgspec.json.Decoder(list[_Concept])
_concept = msgspec.json.Decoder(_Concept)
_text = msgspec.json.Decoder(str)
# Memos: the same few dozen values (codes, times, schedules) repeat on every slot of a
# page; each distinct one is worked out once. Bounded, so odd EHR data cannot grow them.
_MEMO_SIZE = 100_000


@lru_cache(maxsize=_MEMO_SIZE)
def _token(system: str | None, code: str) -> str:
    # one shared string per code
    return f"{system or ''}|{code}"


@lru_cache(maxsize=_MEMO_SIZE)
def _code_tokens(raw: bytes, single: bool) -> tuple[str, ...]:
    """``system|code`` tokens of a CodeableConcept list's JSON (of one concept if ``single``)."""
    if not raw or raw == b"null":
        return ()
    concepts = [_concept.decode(raw)] if single else _concept_list.decode(raw)
    return tuple(_token(c.system, c.code) for concept in concepts for c in concept.coding if c.code)


@lru_cache(maxsize=_MEMO_SIZE)
def _utc_instant(raw: bytes) -> datetime:
    value = _text.decode(raw)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise FhirParseError(f"invalid dateTime {value!r}") from exc
    if parsed.tzinfo is None:
        raise FhirParseError(f"dateTime {value!r} has no offset")
    return parsed.astimezone(UTC)


def _instant(raw: msgspec.Raw | bytes, slot_id: str, element: str) -> datetime:
    """An instant, in UTC (a malformed one is not remembered: it fails every time)."""
    try:
        return _utc_instant(bytes(raw))
    except FhirParseError as exc:
        raise FhirParseError(f"Slot/{slot_id}.{element}: {exc}") from exc


@lru_cache(maxsize=_MEMO_SIZE)
def _schedule_id(reference: str) -> str:
    return relative_reference(reference).split("/", 1)[-1]


def _to_slot(res: _Slot) -> Slot:
    # The load's hottest function (once per slot): the memos are called inline rather
    # than through _instant and _codes, a Python call saved each (a fifth of its time).
    sid = res.id
    if not sid:
        raise FhirParseError("Slot.id: missing")
    reference = res.schedule.reference
    if not reference:
        raise FhirParseError(f"Slot/{sid}.schedule: expected a Reference with a reference string")
    meta = res.meta
    updated = bytes(meta.lastUpdated) if meta else b""
    given = updated and updated != b"null"
    try:
        start = _utc_instant(bytes(res.start))
        end = _utc_instant(bytes(res.end))
        last_updated = _utc_instant(updated) if given else None
    except FhirParseError:  # again, one at a time, to name the element
        start = _instant(res.start, sid, "start")
        end = _instant(res.end, sid, "end")
        last_updated = _instant(updated, sid, "meta.lastUpdated") if given else None
    if end <= start:
        raise FhirParseError(f"Slot/{sid}: end is not after start")
    # positional, in the order of Slot's fields
    return Slot(
        sid,
        _schedule_id(reference),
        start,
        end,
        res.status,
        _code_tokens(bytes(res.serviceType), False),
        _code_tokens(bytes(res.specialty), False),
        _code_tokens(bytes(res.appointmentType), True),
        res.overbooked,
        res.comment,
        meta.versionId if meta else None,
        last_updated,
    )


def _decode_slot(raw: bytes) -> Slot:
    """A Slot entry (its ``resourceType`` known); one that does not fit raises as malformed."""
    return _to_slot(_slot.decode(raw))


@dataclass(frozen=True, slots=True)
class _Included:
    """What a non-Slot entry contributes to a page (one of them, or nothing)."""

    schedule: Schedule | None = None
    actor: Actor | None = None
    warnings: tuple[str, ...] = ()


_SLOT = _Included()  # marker: the entry is a Slot after all (its fields in another order)
# Distinct included resources remembered, by their exact bytes: an organisation's
# schedules and actors (a few KB each); emptied when full, so it never grows further.
_INCLUDED_MEMO = 16_384
_included: dict[bytes, _Included] = {}


def _decode_included(raw: bytes) -> _Included:
    """A non-Slot entry, decoded once per distinct content (a malformed one raises
    every time it occurs, as a malformed slot does)."""
    found = _included.get(raw)
    if found is not None:
        return found
    rtype = _kind.decode(raw).resourceType
    if rtype == "Slot":
        return _SLOT
    found = _Included()
    if rtype == "Schedule":
        found = _Included(schedule=parse_schedule(msgspec.json.decode(raw)))
    elif rtype in ACTOR_TYPES:
        found = _Included(actor=parse_actor(msgspec.json.decode(raw)))
    elif rtype == "OperationOutcome":
        res = msgspec.json.decode(raw)
        found = _Included(
            warnings=tuple(
                str(i.get("diagnostics") or i.get("details", {}).get("text") or i.get("code"))
                for i in res.get("issue") or ()
            )
        )
    if len(_included) >= _INCLUDED_MEMO:
        _included.clear()
    _included[raw] = found
    return found


# How a Slot entry starts when its server writes ``resourceType`` first (most do, the
# sandbox too): those skip the sniffing of the type. Any other entry is sniffed.
_SLOT_HEAD = b'{"resourceType":"Slot",'


def decode_bundle_page(content: bytes) -> BundlePage:
    """A searchset page (bytes) as a :class:`BundlePage`; raises FhirParseError if unusable."""
    try:
        bundle = _bundle.decode(content)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise FhirParseError(f"not a usable Bundle: {exc}") from exc
    if bundle.resourceType != "Bundle":
        raise FhirParseError("expected a Bundle")
    page = BundlePage(total=bundle.total)
    page.next_url = next((lk.url for lk in bundle.link if lk.relation == "next" and lk.url), None)
    # The entries' bytes (a copy each: cheaper to test and to decode than the Raw view),
    # the slots decoded in bulk: this runs for every entry of a load, included ones as
    # many as slots, and a loop of Python per entry was a third of a page's decoding.
    # A malformed slot, or one whose resourceType is not written first, sends the page
    # through the entry-by-entry loop instead, which keeps the Bundle's order.
    head = len(_SLOT_HEAD)
    datas = [bytes(entry.resource) for entry in bundle.entry]
    slots: list[bytes] = []
    others: list[bytes] = []
    for data in datas:
        (slots if data[:head] == _SLOT_HEAD else others).append(data)
    try:
        page.slots = list(map(_to_slot, map(_slot.decode, slots)))
    except _MALFORMED:
        return _in_order(page, datas)
    for data in others:
        if not data or data == b"null":
            raise FhirParseError("Bundle.entry without a resource")
        try:
            included = _decode_included(data)
        except _MALFORMED as exc:
            page.rejected.append(str(exc))
            continue
        if included is _SLOT:
            return _in_order(page, datas)
        _add_included(page, included)
    return page


# What rejects one resource alone: one malformed resource must not block every other
# slot of the window.
_MALFORMED = (FhirParseError, msgspec.DecodeError, RecursionError)


def _add_included(page: BundlePage, included: _Included) -> None:
    if included.schedule is not None:
        page.schedules.append(included.schedule)
    elif included.actor is not None:
        page.actors.append(included.actor)
    else:
        page.warnings.extend(included.warnings)


def _in_order(fast: BundlePage, datas: list[bytes]) -> BundlePage:
    """The page decoded entry by entry, in the Bundle's order."""
    page = BundlePage(total=fast.total, next_url=fast.next_url)
    head = len(_SLOT_HEAD)
    for data in datas:
        if not data or data == b"null":
            raise FhirParseError("Bundle.entry without a resource")
        try:
            included = _SLOT if data[:head] == _SLOT_HEAD else _decode_included(data)
            if included is _SLOT:
                page.slots.append(_decode_slot(data))
            else:
                _add_included(page, included)
        except _MALFORMED as exc:
            page.rejected.append(str(exc))
    return page
