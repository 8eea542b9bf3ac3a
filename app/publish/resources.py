"""The feed's FHIR R4 resources as JSON, from plain data: pure functions.

Shapes follow SMART Scheduling Links' ``specification.md`` (Location, Schedule,
Slot and their extensions) plus the HL7 draft's PractitionerRole. Timestamps are
FHIR instants in UTC with milliseconds (``2026-12-07T14:00:00.000Z``), the form of
the spec's example files. Ids are at most 64 characters of ``[A-Za-z0-9.-]`` and
derived from cache ids only, so a resource keeps its id across refreshes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import msgspec

from app.core.domain import Actor, Schedule, split_token
from app.core.times import millisecond_instant

BOOKING_DEEP_LINK = "http://fhir-registry.smarthealthit.org/StructureDefinition/booking-deep-link"
BOOKING_PHONE = "http://fhir-registry.smarthealthit.org/StructureDefinition/booking-phone"
SERVICE_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/service-type"

_ID = re.compile(r"[A-Za-z0-9.\-]{1,64}")
_STATE = re.compile(r"[A-Z]{2}")
_POSTAL = re.compile(r"\d{5}(-\d{4})?")
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]*")  # base64url: safe in a URL and in JSON


def _hashed(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def plain_id(ref: str) -> str:
    """The id of a reference ``Type/id``; hashed when it is not a valid FHIR id."""
    rid = ref.split("/", 1)[-1]
    return rid if _ID.fullmatch(rid) else _hashed("h", ref)


def schedule_id(ehr_schedule_id: str, visit_type: str) -> str:
    """The feed Schedule of one EHR schedule offering one visit type (a token)."""
    readable = f"{ehr_schedule_id}.{split_token(visit_type)[1]}"
    return readable if _ID.fullmatch(readable) else _hashed("s", ehr_schedule_id, visit_type)


def slot_id(visit_type: str, ehr_schedule_id: str, start: datetime, end: datetime) -> str:
    """One offer's feed Slot: visit type, primary schedule and span make it unique."""
    return _hashed(
        "o", visit_type, ehr_schedule_id, millisecond_instant(start), millisecond_instant(end)
    )


@dataclass(frozen=True, slots=True)
class Address:
    """A postal address as the feed needs it, or just the text when it cannot be read."""

    line: tuple[str, ...] = ()
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    text: str | None = None
    district: str | None = None
    country: str | None = None

    def as_fhir(self) -> dict[str, Any]:
        if not (self.line or self.city or self.state or self.postal_code):
            return {"text": self.text} if self.text else {}
        out: dict[str, Any] = {}
        if self.line:
            out["line"] = list(self.line)
        for key, value in (
            ("city", self.city),
            ("district", self.district),
            ("state", self.state),
            ("postalCode", self.postal_code),
            ("country", self.country),
        ):
            if value:
                out[key] = value
        return out


def parse_address(text: str | None) -> Address:
    """Read the cache's one-line address (``line, city, state, postalCode`` as
    :mod:`app.fhir.parse` writes it) back into parts; the text alone otherwise."""
    if not text:
        return Address()
    parts = [p.strip() for p in text.split(",")]
    if len(parts) >= 3 and _POSTAL.fullmatch(parts[-1]) and _STATE.fullmatch(parts[-2]):
        return Address(tuple(parts[:-3]), parts[-3], parts[-2], parts[-1], text)
    if len(parts) >= 2 and _STATE.fullmatch(parts[-1]):
        return Address(tuple(parts[:-2]), parts[-2], parts[-1], None, text)
    return Address(text=text)


def address_of(actor: Actor) -> Address:
    """A location's address: the parts the EHR states, else read back from its one line."""
    parts = actor.postal_address
    if parts is not None and (parts.line or parts.city or parts.state or parts.postal_code):
        return Address(
            line=parts.line,
            city=parts.city,
            state=parts.state,
            postal_code=parts.postal_code,
            text=actor.address,
            district=parts.district,
            country=parts.country,
        )
    return parse_address(actor.address)


def state_of(actor: Actor | None) -> str:
    """The US state of a location actor's address, "" when unknown."""
    return (address_of(actor).state or "") if actor is not None else ""


@dataclass(frozen=True, slots=True)
class Contact:
    """How the feed's resources point people at the organisation."""

    identifier_system: str  # system of Location.identifier (the EHR's Location ids)
    # Slot booking-phone, and Location.telecom phone where the EHR states none
    phone: str | None = None
    # Location.telecom url where the EHR states none; ``{location_id}`` is filled in
    location_url: str | None = None
    booking_link: str | None = None  # booking-deep-link; ``{slot_id}``, ``{proposal_id}``


# the contact point systems specification.md's Location telecom names
LOCATION_TELECOM = ("phone", "url")


def location(actor: Actor, contact: Contact, last_updated: datetime) -> dict[str, Any]:
    """The EHR's name, address, telecom and position of a location; the configured phone
    and url stand in for a system (phone, url) the EHR gives no contact point of."""
    lid = plain_id(actor.ref)
    telecom = [
        {"system": p.system, "value": p.value}
        for p in actor.telecom
        if p.system in LOCATION_TELECOM
    ]
    stated = {p["system"] for p in telecom}
    if contact.phone and "phone" not in stated:
        telecom.append({"system": "phone", "value": contact.phone})
    if contact.location_url and "url" not in stated:
        url = contact.location_url.replace("{location_id}", quote(lid, safe=""))
        telecom.append({"system": "url", "value": url})
    out: dict[str, Any] = {
        "resourceType": "Location",
        "id": lid,
        "meta": {"lastUpdated": millisecond_instant(last_updated)},
        "identifier": [{"system": contact.identifier_system, "value": actor.ref.split("/", 1)[1]}],
        "name": actor.display or lid,
    }
    if telecom:
        out["telecom"] = telecom
    address = address_of(actor).as_fhir()
    if address:
        out["address"] = address
    if actor.position is not None:
        out["position"] = {
            "latitude": actor.position.latitude,
            "longitude": actor.position.longitude,
        }
    return out


def practitioner_role(
    practitioner: Actor, location_ref: str | None, last_updated: datetime
) -> dict[str, Any]:
    """The HL7 draft's PractitionerRole: the practitioner (by name) at a location."""
    out: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": plain_id(practitioner.ref),
        "meta": {"lastUpdated": millisecond_instant(last_updated)},
        "active": True,
    }
    if practitioner.display:
        out["practitioner"] = {"display": practitioner.display}
    if location_ref is not None:
        out["location"] = [{"reference": f"Location/{plain_id(location_ref)}"}]
    specialties = [_concept(code) for code in practitioner.codes]
    if specialties:
        out["specialty"] = specialties
    return out


def schedule(
    feed_id: str,
    ehr_schedule: Schedule,
    visit_type: str,
    visit_type_display: str | None,
    location: Actor | None,
    practitioners: list[Actor],
    last_updated: datetime,
) -> dict[str, Any]:
    """One EHR schedule offering one visit type: serviceType is the visit type, the
    actors its location and the PractitionerRoles of its practitioners."""
    actors = []
    if location is not None:
        actors.append(_reference("Location", location))
    actors += [_reference("PractitionerRole", p) for p in practitioners]
    out: dict[str, Any] = {
        "resourceType": "Schedule",
        "id": feed_id,
        "meta": {"lastUpdated": millisecond_instant(last_updated)},
        "serviceType": [_concept(visit_type, visit_type_display)],
        "actor": actors,
    }
    if ehr_schedule.specialties:
        out["specialty"] = [_concept(code) for code in ehr_schedule.specialties]
    return out


def _reference(resource_type: str, actor: Actor) -> dict[str, str]:
    ref = {"reference": f"{resource_type}/{plain_id(actor.ref)}"}
    if actor.display:
        ref["display"] = actor.display
    return ref


def _concept(code: str, display: str | None = None) -> dict[str, Any]:
    system, value = split_token(code)
    coding: dict[str, str] = {"code": value}
    if system:
        coding = {"system": system, **coding}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


# A Slot line as text pieces and the fields of its feed row between them: a 1-tuple
# names a ``published_slots`` column (times spelled as instants). The database builds
# the lines from them when a file streams (:func:`app.cache.publish_queries.
# stream_lines`); :meth:`SlotLines.line` renders the same pieces in Python.
Segment = str | tuple[str]
ROW_FIELDS = ("id", "schedule", "start", "end", "status", "proposal_id", "updated_at")


class SlotLines:
    """The text of Slot NDJSON lines for one configuration (booking link and phone):
    everything but the row's values is encoded once.

    Feed ids are ``[A-Za-z0-9.-]`` and proposal ids base64url, so both go into the
    JSON and the link as they are."""

    def __init__(self, contact: Contact):
        extensions: list[list[Segment]] = []
        if contact.booking_link:
            link = msgspec.json.encode(contact.booking_link).decode()
            pieces: list[Segment] = [f'{{"url":"{BOOKING_DEEP_LINK}","valueUrl":']
            for part in re.split(r"(\{slot_id\}|\{proposal_id\})", link):
                if part == "{slot_id}":
                    pieces.append(("id",))
                elif part == "{proposal_id}":
                    pieces.append(("proposal_id",))
                elif part:
                    pieces.append(part)
            pieces.append("}")
            extensions.append(pieces)
        if contact.phone:
            phone = {"url": BOOKING_PHONE, "valueString": contact.phone}
            extensions.append([msgspec.json.encode(phone).decode()])
        free_extension: list[Segment] = []
        if extensions:
            free_extension.append(',"extension":[')
            for n, pieces in enumerate(extensions):
                free_extension += ([","] if n else []) + pieces
            free_extension.append("]")
        head: list[Segment] = [
            '{"resourceType":"Slot","id":"',
            ("id",),
            '","meta":{"lastUpdated":"',
            ("updated_at",),
            '"},"schedule":{"reference":"Schedule/',
            ("schedule",),
            '"},"status":"',
            ("status",),
            '","start":"',
            ("start",),
            '","end":"',
            ("end",),
            '"',
        ]
        self.free: tuple[Segment, ...] = tuple(_merged([*head, *free_extension, "}\n"]))
        self.busy: tuple[Segment, ...] = tuple(_merged([*head, "}\n"]))

    def line(
        self,
        feed_id: str,
        schedule: str,
        start: str,
        end: str,
        status: str,
        proposal_id: str,
        updated_at: str,
    ) -> str:
        """One line; times are instants already (:func:`instant`)."""
        row = (feed_id, schedule, start, end, status, proposal_id, updated_at)
        values = dict(zip(ROW_FIELDS, row, strict=True))
        if not _URL_SAFE.fullmatch(proposal_id) or not _ID.fullmatch(feed_id):
            raise ValueError("feed ids and proposal ids go into lines unescaped")
        segments = self.free if status == "free" else self.busy
        return "".join(s if isinstance(s, str) else values[s[0]] for s in segments)


def _merged(segments: list[Segment]) -> list[Segment]:
    """Adjacent text pieces joined (fewer concatenations for the database)."""
    out: list[Segment] = []
    for segment in segments:
        if isinstance(segment, str) and out and isinstance(out[-1], str):
            out[-1] += segment
        else:
            out.append(segment)
    return out
