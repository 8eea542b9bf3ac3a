"""The avail-bundle (searchset of proposed Appointments) and its parts, as plain dicts.

Hot path of $find: no model validation here (tests validate with fhir.resources).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from hashlib import sha1
from typing import Any

from app.core.domain import Actor, split_token
from app.core.times import second_instant

AVAIL_BUNDLE = "http://fhir.org/guides/argonaut-scheduling/StructureDefinition/avail-bundle"


def outcome_issue(severity: str, code: str, diagnostics: str) -> dict[str, Any]:
    return {"severity": severity, "code": code, "diagnostics": diagnostics}


def actor_resource(actor: Actor) -> dict[str, Any]:
    """A minimal resource for an ``_include``d participant: id, name, codes, and a
    Location's address, telecom and position."""
    rtype, rid = actor.ref.split("/", 1)
    res: dict[str, Any] = {"resourceType": rtype, "id": rid}
    codings = []
    for tok in actor.codes:
        system, code = split_token(tok)
        codings.append({"system": system, "code": code} if system else {"code": code})
    if rtype == "Practitioner":
        if actor.display:
            res["name"] = [{"text": actor.display}]
    elif rtype == "Location":
        if actor.display:
            res["name"] = actor.display
        if codings:
            res["type"] = {"coding": codings}
        address = _address(actor)
        if address:
            res["address"] = address
        if actor.telecom:
            res["telecom"] = [
                {"system": p.system, "value": p.value} | ({"use": p.use} if p.use else {})
                for p in actor.telecom
            ]
        if actor.position is not None:
            res["position"] = {
                "latitude": actor.position.latitude,
                "longitude": actor.position.longitude,
            }
        if actor.part_of:
            res["partOf"] = {"reference": actor.part_of}
    elif rtype == "Device":
        if codings:
            res["type"] = {"coding": codings}
        if actor.part_of:
            res["location"] = {"reference": actor.part_of}
    elif rtype == "HealthcareService" and actor.display:
        res["name"] = actor.display
    return res


def _address(actor: Actor) -> dict[str, Any]:
    """A Location's address: its text, and its parts where the EHR stated them."""
    out: dict[str, Any] = {"text": actor.address} if actor.address else {}
    parts = actor.postal_address
    if parts is not None:
        if parts.line:
            out["line"] = list(parts.line)
        for key, value in (
            ("city", parts.city),
            ("district", parts.district),
            ("state", parts.state),
            ("postalCode", parts.postal_code),
            ("country", parts.country),
        ):
            if value:
                out[key] = value
    return out


# uuid5 namespace of slotsync's proposal ids (a fixed, random UUID)
_PROPOSALS = uuid.UUID("2f0a4c8e-93b1-4d7e-a6f5-5c1e7b9d3a24")


_NAMESPACE = _PROPOSALS.bytes


def proposal_urn(proposal_id: str) -> str:
    """``urn:uuid:`` + ``uuid.uuid5(_PROPOSALS, proposal_id)``, written out: the same
    SHA-1 and bits without building a ``UUID`` object, three times faster, and a
    broad ``$find`` names a hundred proposals."""
    digest = bytearray(sha1(_NAMESPACE + proposal_id.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    x = digest.hex()
    return f"urn:uuid:{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def avail_bundle(
    appointments: Sequence[dict[str, Any]],
    *,
    base_url: str,
    last_updated: datetime | None,
    issues: Sequence[dict[str, Any]] = (),
    included: Iterable[Actor] = (),
    profile: bool = True,
    total: int | None = None,
    links: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    """searchset: Appointments (match), then included actors, then one OperationOutcome.

    ``total`` is how many offers match in all (default: the appointments given, an
    answer of one page); ``links`` are ``self`` and, while more pages remain, ``next``.

    A proposed Appointment exists nowhere to be read back (it is computed per request and
    is no longer offered once its slots are taken), so its ``fullUrl`` is a ``urn:uuid``
    (what FHIR gives resources without a RESTful location), derived from its id: the same
    proposal keeps the same fullUrl across requests. To act on it, send its identifier to
    ``$hold``/``$book``.
    """
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": proposal_urn(str(r["id"])),
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in appointments
    ]
    for actor in included:
        entries.append(
            {
                "fullUrl": f"{base_url}/{actor.ref}",
                "resource": actor_resource(actor),
                "search": {"mode": "include"},
            }
        )
    if issues:
        entries.append(
            {
                "resource": {"resourceType": "OperationOutcome", "issue": list(issues)},
                "search": {"mode": "outcome"},
            }
        )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    meta: dict[str, Any] = {}
    if profile:
        meta["profile"] = [AVAIL_BUNDLE]
    if last_updated is not None:
        meta["lastUpdated"] = second_instant(last_updated)
    if meta:
        bundle["meta"] = meta
    bundle["total"] = len(appointments) if total is None else total
    if links:
        bundle["link"] = list(links)
    bundle["entry"] = entries
    return bundle


def included_actors(
    appointments: Sequence[dict[str, Any]], includes: Sequence[str], actors: Mapping[str, Actor]
) -> list[Actor]:
    """Participants asked for with ``_include=Appointment:actor|practitioner|location``."""
    kinds: set[str] = set()
    for inc in includes:
        target = inc.split(":", 1)[-1] if inc.startswith("Appointment:") else None
        if target in {"actor", "*"}:
            kinds |= {"Practitioner", "Location", "Device", "HealthcareService"}
        elif target == "practitioner":
            kinds.add("Practitioner")
        elif target == "location":
            kinds.add("Location")
    if not kinds:
        return []
    seen: dict[str, Actor] = {}
    for appt in appointments:
        for participant in appt["participant"]:
            ref = participant["actor"].get("reference")
            if ref and ref.split("/", 1)[0] in kinds and ref in actors:
                seen.setdefault(ref, actors[ref])
    return list(seen.values())
