"""Parsing ``Appointment/$find`` input (GET query or POST Parameters) into a FindRequest.

Names follow the IG's OperationDefinition; the IG examples' names are accepted as
aliases (``provider``, ``location``, ``service-type`` for ``visit-type``).
Errors name the offending parameter so the caller can fix the request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from app.availability import page_cursor
from app.core.errors import InvalidParameter
from rules.request import FindRequest, InvalidFindRequest, PageKey, PatientInfo

MAX_WINDOW = timedelta(days=366)
MAX_COUNT = 1000

ALIASES = {
    "provider": "practitioner",
    "location": "location-reference",
    "service-type": "visit-type",
    "patient": "patient-reference",
}
REFERENCE_TYPES = {
    "practitioner": "Practitioner",
    "location-reference": "Location",
    "organization": "Organization",
    "patient-reference": "Patient",
}
TOKEN_PARAMS = ("specialty", "visit-type", "reason", "appt-type")
STRING_PARAMS = ("location-string",)
RESOURCE_PARAMS = {"patient-resource": "Patient", "coverage": "Coverage"}
EXPLAIN = "_explain"  # admin only: also say why cached slots were not offered
KNOWN = {
    "start", "end", "_count", page_cursor.NAME, "_include", EXPLAIN, *REFERENCE_TYPES,
    *TOKEN_PARAMS, *STRING_PARAMS, *RESOURCE_PARAMS,
}  # fmt: skip
# Result-shaping parameters every FHIR server may receive; not ours to warn about.
GENERAL = {"_format", "_pretty", "_summary", "_elements"}
# Accepted and answered with a warning: we cannot act on them (see warnings()).
IGNORED = {"organization", "reason", "coverage", "appt-type"}
GENDERS = {"male", "female", "other", "unknown"}


@dataclass(frozen=True, slots=True)
class ParsedFind:
    request: FindRequest
    ignored: tuple[str, ...] = ()  # parameter names given but not acted upon
    includes: tuple[str, ...] = ()  # _include values
    after: PageKey | None = None  # _cursor: the page starts after this offer
    explain: bool = False  # _explain=true: reasons for what is not offered (admin only)


def parse_datetime_param(name: str, value: str) -> datetime:
    """FHIR dateTime: a date (midnight UTC) or a dateTime with a time zone offset."""
    value = value.strip()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(
            f"parameter '{name}' is not a FHIR dateTime: {value!r}", expression=name
        ) from None
    if parsed.tzinfo is None:
        if "T" in value:
            raise InvalidParameter(
                f"parameter '{name}' has a time but no time zone offset: {value!r}",
                expression=name,
            )
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_reference_param(name: str, value: str) -> str:
    """``Practitioner/123`` or an absolute URL ending in it; the type must fit the parameter."""
    expected = REFERENCE_TYPES[name]
    parts = value.strip().rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] != expected or not parts[-1]:
        raise InvalidParameter(
            f"parameter '{name}' must reference a {expected} (e.g. {expected}/123): {value!r}",
            expression=name,
        )
    return f"{expected}/{parts[-1]}"


def parse_token_param(name: str, value: str) -> str:
    """``system|code``: the $find definition says both SHALL be present."""
    system, sep, code = value.strip().rpartition("|")
    if not sep or not system or not code or " " in code:
        raise InvalidParameter(
            f"parameter '{name}' must be a token 'system|code' with both parts: {value!r}",
            expression=name,
        )
    return f"{system}|{code}"


def _patient_from_resource(resource: Any) -> PatientInfo:
    """What eligibility needs from a (US Core) Patient given as ``patient-resource``."""
    if not isinstance(resource, Mapping) or resource.get("resourceType") != "Patient":
        raise InvalidParameter(
            "parameter 'patient-resource' must be a Patient resource", expression="patient-resource"
        )
    birth: date | None = None
    if resource.get("birthDate") is not None:
        try:
            birth = date.fromisoformat(str(resource["birthDate"]))
        except ValueError:
            raise InvalidParameter(
                f"patient-resource.birthDate is not a date: {resource['birthDate']!r}",
                expression="patient-resource.birthDate",
            ) from None
    gender = resource.get("gender")
    if gender is not None and gender not in GENDERS:
        raise InvalidParameter(
            f"patient-resource.gender must be one of {sorted(GENDERS)}",
            expression="patient-resource.gender",
        )
    rid = resource.get("id")
    return PatientInfo(
        ref=f"Patient/{rid}" if isinstance(rid, str) and rid else None,
        birth_date=birth,
        gender=gender,
        new_patient=not rid,
    )


def split_values(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Query items by canonical name; a comma-separated value is an OR list, as in FHIR."""
    values: dict[str, list[str]] = {}
    for raw_name, raw_value in items:
        name = ALIASES.get(raw_name, raw_name)
        parts = [raw_value] if name in STRING_PARAMS else raw_value.split(",")
        values.setdefault(name, []).extend(v for v in parts if v.strip())
    return values


def build_find_request(
    values: Mapping[str, list[str]], resources: Mapping[str, list[Any]] | None = None
) -> ParsedFind:
    resources = resources or {}

    def single(name: str) -> str:
        got = values.get(name) or []
        if not got:
            raise InvalidParameter(f"parameter '{name}' is required", expression=name)
        if len(got) > 1:
            raise InvalidParameter(f"parameter '{name}' may appear only once", expression=name)
        return got[0]

    start = parse_datetime_param("start", single("start"))
    end = parse_datetime_param("end", single("end"))
    if end <= start:
        raise InvalidParameter("parameter 'end' must be after 'start'", expression="end")
    if end - start > MAX_WINDOW:
        raise InvalidParameter(
            f"the window from 'start' to 'end' may span at most {MAX_WINDOW.days} days",
            expression="end",
        )
    count: int | None = None
    if values.get("_count"):
        raw = single("_count")
        # isascii: str.isdigit() also accepts "²" and other digits int() refuses
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_COUNT:
            raise InvalidParameter(
                f"parameter '_count' must be an integer from 1 to {MAX_COUNT}", expression="_count"
            )
        count = int(raw)

    def refs(name: str) -> tuple[str, ...]:
        return tuple(parse_reference_param(name, v) for v in values.get(name, []))

    def tokens(name: str) -> tuple[str, ...]:
        return tuple(parse_token_param(name, v) for v in values.get(name, []))

    patients = refs("patient-reference")
    patient: PatientInfo | None = None
    if resources.get("patient-resource"):
        patient = _patient_from_resource(resources["patient-resource"][0])
    elif patients:
        patient = PatientInfo(ref=patients[0], new_patient=False)
    for name in TOKEN_PARAMS:
        tokens(name)  # validate even those we only acknowledge
    refs("organization")
    ignored = tuple(
        sorted(n for n in IGNORED if values.get(n) or resources.get(n))
        + sorted(f"{n} (unknown)" for n in values if n not in KNOWN and n not in GENERAL)
        + (["patient-reference (group appointments)"] if len(patients) > 1 else [])
    )
    try:
        request = FindRequest(
            start=start,
            end=end,
            visit_types=tokens("visit-type"),
            specialties=tokens("specialty"),
            practitioners=refs("practitioner"),
            locations=refs("location-reference"),
            location_strings=tuple(v.strip() for v in values.get("location-string", [])),
            patient=patient,
            count=count,
        )
    except InvalidFindRequest as exc:
        raise InvalidParameter(str(exc)) from exc
    cursor = single(page_cursor.NAME) if values.get(page_cursor.NAME) else None
    explain = False
    if values.get(EXPLAIN):
        raw = single(EXPLAIN).strip()
        if raw not in ("true", "false"):
            raise InvalidParameter(
                f"parameter '{EXPLAIN}' must be true or false", expression=EXPLAIN
            )
        explain = raw == "true"
    return ParsedFind(
        request=request,
        ignored=ignored,
        includes=tuple(values.get("_include", [])),
        after=page_cursor.decode(cursor) if cursor is not None else None,
        explain=explain,
    )


def parse_find_query(items: Iterable[tuple[str, str]]) -> ParsedFind:
    """GET ``$find``: every parameter is a query string value."""
    values = split_values(items)
    for name in RESOURCE_PARAMS:
        if name in values:
            raise InvalidParameter(
                f"parameter '{name}' is a resource and can only be sent with POST",
                expression=name,
            )
    return build_find_request(values)


def parse_find_parameters(body: Any, query: Iterable[tuple[str, str]] = ()) -> ParsedFind:
    """POST ``$find``: a Parameters resource (``_count`` may also come in the URL)."""
    if not isinstance(body, Mapping) or body.get("resourceType") != "Parameters":
        raise InvalidParameter("the body of POST $find must be a Parameters resource")
    params = body.get("parameter") or []
    if not isinstance(params, list):
        raise InvalidParameter("Parameters.parameter must be a list", expression="parameter")
    items: list[tuple[str, str]] = list(query)
    resources: dict[str, list[Any]] = {}
    for i, param in enumerate(params):
        where = f"Parameters.parameter[{i}]"
        if not isinstance(param, Mapping) or not isinstance(param.get("name"), str):
            raise InvalidParameter(f"{where} needs a name", expression=where)
        raw_name: str = param["name"]  # checked to be a str above
        name = ALIASES.get(raw_name, raw_name)
        if "resource" in param:
            if name not in RESOURCE_PARAMS:
                raise InvalidParameter(
                    f"parameter '{name}' does not take a resource", expression=where
                )
            resources.setdefault(name, []).append(param["resource"])
            continue
        value = _token_value(param, name, where)
        items.append((name, value))
    return build_find_request(split_values(items), resources)


def _token_value(param: Mapping[str, Any], name: str, where: str) -> str:
    """A parameter's value as the GET form has it. The IG's OperationDefinition types the
    coded parameters as token strings (``system|code``); typed R4 clients (and IHE's
    ``$find``) send a ``valueCoding`` or ``valueCodeableConcept`` (its codings are
    alternatives, as a comma list), and references as ``valueReference``."""
    keys = [k for k in param if k.startswith("value")]
    if len(keys) != 1:
        raise InvalidParameter(f"parameter '{name}' needs one value[x]", expression=where)
    kind, value = keys[0], param[keys[0]]
    if kind == "valueBoolean" and isinstance(value, bool):  # _explain
        return "true" if value else "false"
    if kind == "valueCoding":
        return _coding_token(value, name, where)
    if kind == "valueCodeableConcept":
        codings = value.get("coding") if isinstance(value, Mapping) else None
        if not isinstance(codings, list) or not codings:
            raise InvalidParameter(
                f"parameter '{name}': valueCodeableConcept needs a coding", expression=where
            )
        return ",".join(_coding_token(c, name, where) for c in codings)
    if kind == "valueReference":
        ref = value.get("reference") if isinstance(value, Mapping) else None
        if not isinstance(ref, str) or not ref:
            raise InvalidParameter(
                f"parameter '{name}': valueReference needs a reference", expression=where
            )
        return ref
    if isinstance(value, (dict, list, bool)) or value is None:
        raise InvalidParameter(
            f"parameter '{name}' needs a primitive value[x], a Coding, a CodeableConcept"
            " or a Reference",
            expression=where,
        )
    return str(value)


def _coding_token(coding: Any, name: str, where: str) -> str:
    code = coding.get("code") if isinstance(coding, Mapping) else None
    system = coding.get("system") if isinstance(coding, Mapping) else None
    if not isinstance(code, str) or not code or not isinstance(system, str | None):
        raise InvalidParameter(
            f"parameter '{name}': a Coding needs a code (and may have a system)",
            expression=where,
        )
    if "," in code or "|" in code or (system and ("," in system or "|" in system)):
        raise InvalidParameter(f"parameter '{name}': invalid Coding", expression=where)
    return f"{system}|{code}" if system else code
