"""FHIR media types, defined once for the API, the webhook and the EHR client.

We speak FHIR JSON: ``application/fhir+json`` is what we send and answer. On input we
also take the STU3-era ``application/json+fhir`` (Argonaut EHRs and their clients still
send it) and plain ``application/json``.
"""

from __future__ import annotations

FHIR_JSON = "application/fhir+json"
LEGACY_FHIR_JSON = "application/json+fhir"
PLAIN_JSON = "application/json"
JSON_PATCH = "application/json-patch+json"
FORM = "application/x-www-form-urlencoded"

# Request bodies holding a FHIR resource as JSON.
JSON_TYPES = (FHIR_JSON, LEGACY_FHIR_JSON, PLAIN_JSON)


def accepted_types(accept: str) -> set[str]:
    """The media types an ``Accept`` header allows, lower case, parameters aside; a type
    given ``q=0`` is refused, so it is not among them."""
    kinds = set()
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        kinds.add(media.lower())
    return kinds


def media_type(content_type: str | None) -> str:
    """``type/subtype`` of a Content-Type header, lower case, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()
