"""Slim parsing of EHR FHIR JSON (STU3 Argonaut and R4) into the domain model.

The load path reads hundreds of thousands of slots, and full fhir.resources
validation runs at ~10k resources/s (see DESIGN.md), so here we read only the
fields we use from plain dicts, checking what we rely on; tests validate the
sandbox's output with fhir.resources. STU3 and R4 agree on every field read here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.core.domain import Actor, ContactPoint, Position, PostalAddress, Schedule, Slot, token
from app.core.errors import SlotsyncError

TIMEZONE_EXTENSIONS = (
    "http://hl7.org/fhir/StructureDefinition/timezone",
    "http://hl7.org/fhir/StructureDefinition/tz-code",
)


class FhirParseError(SlotsyncError, ValueError):
    """The EHR sent a resource we cannot use; names the resource and field."""


def parse_instant(value: Any, where: str) -> datetime:
    """A FHIR dateTime/instant/date as an aware UTC datetime (date-only = midnight UTC)."""
    if not isinstance(value, str) or not value:
        raise FhirParseError(f"{where}: expected a dateTime string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise FhirParseError(f"{where}: invalid dateTime {value!r}") from exc
    if parsed.tzinfo is None:
        if "T" in value:
            raise FhirParseError(f"{where}: dateTime {value!r} has a time but no offset")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def codeable_tokens(concepts: Any) -> tuple[str, ...]:
    """Tokens of every coding of a CodeableConcept or a list of them."""
    if not concepts:
        return ()
    if isinstance(concepts, dict):
        concepts = [concepts]
    out: list[str] = []
    for concept in concepts:
        for coding in (concept or {}).get("coding") or ():
            code = coding.get("code")
            if code:
                out.append(token(coding.get("system"), code))
    return tuple(out)


def reference_of(ref: Any, where: str) -> str:
    if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
        raise FhirParseError(f"{where}: expected a Reference with a reference string")
    return relative_reference(ref["reference"])


def relative_reference(reference: str) -> str:
    """``https://ehr/fhir/Practitioner/1`` and ``Practitioner/1`` -> ``Practitioner/1``."""
    parts = reference.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference


def parse_slot(res: dict[str, Any]) -> Slot:
    slot_id = res.get("id")
    if not isinstance(slot_id, str) or not slot_id:
        raise FhirParseError("Slot.id: missing")
    where = f"Slot/{slot_id}"
    schedule_ref = reference_of(res.get("schedule"), f"{where}.schedule")
    start = parse_instant(res.get("start"), f"{where}.start")
    end = parse_instant(res.get("end"), f"{where}.end")
    if end <= start:
        raise FhirParseError(f"{where}: end is not after start")
    status = res.get("status")
    if not isinstance(status, str):
        raise FhirParseError(f"{where}.status: missing")
    meta = res.get("meta") or {}
    last_updated = meta.get("lastUpdated")
    return Slot(
        id=slot_id,
        schedule_id=schedule_ref.split("/", 1)[-1],
        start=start,
        end=end,
        status=status,
        service_types=codeable_tokens(res.get("serviceType")),
        specialties=codeable_tokens(res.get("specialty")),
        appointment_types=codeable_tokens(res.get("appointmentType")),
        overbooked=bool(res.get("overbooked", False)),
        comment=res.get("comment"),
        version_id=meta.get("versionId"),
        last_updated=parse_instant(last_updated, f"{where}.meta.lastUpdated")
        if last_updated
        else None,
    )


def parse_schedule(res: dict[str, Any]) -> Schedule:
    schedule_id = res.get("id")
    if not isinstance(schedule_id, str) or not schedule_id:
        raise FhirParseError("Schedule.id: missing")
    where = f"Schedule/{schedule_id}"
    actors = res.get("actor") or []
    refs = tuple(reference_of(a, f"{where}.actor") for a in actors)
    if not refs:
        raise FhirParseError(f"{where}.actor: at least one actor is required")
    horizon = res.get("planningHorizon") or {}
    return Schedule(
        id=schedule_id,
        actor_refs=refs,
        service_types=codeable_tokens(res.get("serviceType")),
        specialties=codeable_tokens(res.get("specialty")),
        horizon_start=parse_instant(horizon["start"], f"{where}.planningHorizon.start")
        if horizon.get("start")
        else None,
        horizon_end=parse_instant(horizon["end"], f"{where}.planningHorizon.end")
        if horizon.get("end")
        else None,
    )


def _human_name(names: Any) -> str | None:
    for name in names or ():
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("prefix") or ()), *(name.get("given") or ())]
        if name.get("family"):
            parts.append(name["family"])
        if parts:
            return " ".join(parts)
    return None


# A Location's address, telecom and position are for directories, not for booking: a
# part the EHR states in an unusable form is left out rather than losing the Location.


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _postal_address(address: Any) -> PostalAddress | None:
    """The parts of a Location's address; None when it states none (absent or text only)."""
    if not isinstance(address, dict):
        return None
    lines = address.get("line")
    parts = PostalAddress(
        line=tuple(x for x in lines if _text(x)) if isinstance(lines, list) else (),
        city=_text(address.get("city")),
        district=_text(address.get("district")),
        state=_text(address.get("state")),
        postal_code=_text(address.get("postalCode")),
        country=_text(address.get("country")),
    )
    return None if parts == PostalAddress() else parts


def _telecom(points: Any) -> tuple[ContactPoint, ...]:
    """The contact points in use (``use: old`` is one the EHR says no longer works)."""
    if not isinstance(points, list):
        return ()
    return tuple(
        ContactPoint(p["system"], p["value"], _text(p.get("use")))
        for p in points
        if isinstance(p, dict)
        and _text(p.get("system"))
        and _text(p.get("value"))
        and p.get("use") != "old"
    )


def _degrees(value: Any, limit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if -limit <= value <= limit else None


def _position(position: Any) -> Position | None:
    if not isinstance(position, dict):
        return None
    latitude = _degrees(position.get("latitude"), 90)
    longitude = _degrees(position.get("longitude"), 180)
    if latitude is None or longitude is None:
        return None
    return Position(latitude, longitude)


def _address_text(address: Any) -> str | None:
    """One line: ``line, city, district, state, postalCode``, or the address's text."""
    if isinstance(address, list):
        address = address[0] if address else None
    if not isinstance(address, dict):
        return None
    parts = _postal_address(address) or PostalAddress()
    words = [*parts.line, parts.city, parts.district, parts.state, parts.postal_code]
    return ", ".join(w for w in words if w) or _text(address.get("text"))


def _timezone(res: dict[str, Any]) -> str | None:
    for ext in res.get("extension") or ():
        if ext.get("url") in TIMEZONE_EXTENSIONS:
            return ext.get("valueCode") or ext.get("valueString")
    return None


ACTOR_TYPES = ("Practitioner", "Location", "Device", "HealthcareService", "PractitionerRole")


def parse_actor(res: dict[str, Any]) -> Actor:
    rtype = res.get("resourceType")
    rid = res.get("id")
    if rtype not in ACTOR_TYPES or not isinstance(rid, str):
        raise FhirParseError(f"{rtype}: not an actor resource with an id")
    codes: tuple[str, ...] = ()
    display: str | None = None
    part_of: str | None = None
    address: str | None = None
    postal_address: PostalAddress | None = None
    telecom: tuple[ContactPoint, ...] = ()
    position: Position | None = None
    if rtype == "Practitioner":
        display = _human_name(res.get("name"))
        codes = codeable_tokens([q.get("code") for q in res.get("qualification") or ()])
        address = _address_text(res.get("address"))
    elif rtype == "Location":
        display = res.get("name")
        codes = codeable_tokens(res.get("type")) + codeable_tokens(res.get("physicalType"))
        address = _address_text(res.get("address"))
        postal_address = _postal_address(res.get("address"))
        telecom = _telecom(res.get("telecom"))
        position = _position(res.get("position"))
        if res.get("partOf"):
            part_of = reference_of(res["partOf"], f"Location/{rid}.partOf")
    elif rtype == "Device":
        names = res.get("deviceName") or ()
        display = (names[0].get("name") if names else None) or res.get("model")
        codes = codeable_tokens(res.get("type"))
        if res.get("location"):
            part_of = reference_of(res["location"], f"Device/{rid}.location")
    else:
        display = res.get("name")
        codes = codeable_tokens(res.get("specialty")) + codeable_tokens(res.get("type"))
        if res.get("location"):
            part_of = reference_of(res["location"][0], f"{rtype}/{rid}.location")
    return Actor(
        ref=f"{rtype}/{rid}",
        display=display,
        codes=codes,
        address=address,
        part_of=part_of,
        timezone=_timezone(res),
        postal_address=postal_address,
        telecom=telecom,
        position=position,
    )


@dataclass(slots=True)
class BundlePage:
    """One page of a slot search / $prefetch answer, split by resource type."""

    slots: list[Slot] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    actors: list[Actor] = field(default_factory=list)
    total: int | None = None
    next_url: str | None = None
    warnings: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # resources skipped, with the reason


def next_link(bundle: dict[str, Any]) -> str | None:
    """The URL of a searchset Bundle's next page; None on the last page."""
    for link in bundle.get("link") or ():
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return str(link["url"])
    return None


def parse_bundle_page(bundle: Any) -> BundlePage:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirParseError("expected a Bundle")
    page = BundlePage(total=bundle.get("total"), next_url=next_link(bundle))
    for entry in _entries(bundle.get("entry")):
        res = entry.get("resource")
        if not isinstance(res, dict):
            raise FhirParseError("Bundle.entry without a resource")
        rtype = res.get("resourceType")
        try:
            if rtype == "Slot":
                page.slots.append(parse_slot(res))
            elif rtype == "Schedule":
                page.schedules.append(parse_schedule(res))
            elif rtype in ACTOR_TYPES:
                page.actors.append(parse_actor(res))
        except FhirParseError as exc:
            # One malformed resource must not block every other slot of the window;
            # it is reported (sync run warnings) and left out of the cache.
            page.rejected.append(str(exc))
            continue
        if rtype == "OperationOutcome":
            page.warnings.extend(
                str(i.get("diagnostics") or i.get("details", {}).get("text") or i.get("code"))
                for i in res.get("issue") or ()
            )
    return page


def _entries(entries: Any) -> Iterable[dict[str, Any]]:
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise FhirParseError("Bundle.entry must be a list")
    return entries
