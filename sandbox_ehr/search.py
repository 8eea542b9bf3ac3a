"""Search-parameter parsing shared by ``$prefetch``, Slot and Schedule search.

Turns FHIR parameters (query string pairs or a ``Parameters`` body) into a
:class:`~sandbox_ehr.store.SlotQuery` over schedule indices, following the IG's
combination rule: different actor kinds are ANDed, repeats (and comma-separated
values) of one kind are ORed. A slot matches an actor when its Schedule's own
actors contain it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sandbox_ehr import codes
from sandbox_ehr.errors import bad_request
from sandbox_ehr.fhir_render import statuses_for
from sandbox_ehr.model import FREE, Organisation, slot_index
from sandbox_ehr.store import SlotQuery
from sandbox_ehr.timefmt import BadDateTime, ceil_minute, parse_datetime, to_ms

ACTOR_KINDS = {
    "practitioner": "Practitioner",
    "location-reference": "Location",
    "location": "Location",
    "organization": "Organization",
    "actor": None,
    "schedule.actor": None,
    "schedule": "Schedule",
}
INCLUDE_SCHEDULE = {"Slot:schedule", "Slot:schedule:Schedule", "*"}
INCLUDE_ACTOR_PREFIX = "Schedule:actor"


def parameter_list(body: Any, element: str = "parameter") -> list[dict[str, Any]]:
    """``Parameters.parameter`` (or a parameter's ``part``) checked to be a list of objects."""
    items = body.get(element) or [] if isinstance(body, dict) else None
    if not isinstance(items, list) or not all(isinstance(p, dict) for p in items):
        raise bad_request(f"Parameters {element} must be a list of parameters")
    return items


def parameters_to_pairs(body: dict[str, Any]) -> list[tuple[str, str]]:
    """A FHIR ``Parameters`` resource -> (name, string value) pairs (primitive values only)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise bad_request("body must be a Parameters resource")
    pairs = []
    for p in parameter_list(body):
        name = p.get("name")
        if not isinstance(name, str):
            raise bad_request("every parameter needs a name")
        values = [v for k, v in p.items() if k.startswith("value")]
        if not values:
            continue
        value = values[0]
        if isinstance(value, dict):  # valueReference / valueCoding
            if "reference" in value:
                value = value["reference"]
            elif "code" in value:
                value = f"{value.get('system', '')}|{value['code']}"
            else:
                raise bad_request(f"parameter {name} has an unsupported value type")
        pairs.append((name, str(value)))
    return pairs


def split_values(pairs: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Every value of ``name``, comma-separated values split (FHIR OR semantics)."""
    out: list[str] = []
    for k, v in pairs:
        if k == name:
            out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def first(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    for k, v in pairs:
        if k == name:
            return v
    return None


def normalise_ref(value: str, resource_type: str | None) -> str:
    """``Practitioner/1``, an absolute URL ending in it, or a bare id -> ``Type/id``."""
    parts = value.rstrip("/").split("/")
    if len(parts) >= 2:
        return f"{parts[-2]}/{parts[-1]}"
    return f"{resource_type}/{value}" if resource_type else value


def _token_match(value: str, system: str, code: str) -> bool:
    vs, vc = codes.split_token(value)
    return vc == code and (vs is None or vs == system)


def schedules_matching(
    org: Organisation, pairs: list[tuple[str, str]], ids_are_schedules: bool = True
) -> frozenset[int] | None:
    """Schedule indices allowed by actor/specialty/visit-type filters; None = no filter.

    ``_id`` names schedules only in a Schedule search (``ids_are_schedules``).
    """
    allowed: set[int] | None = None

    def narrow(found: set[int]) -> None:
        nonlocal allowed
        allowed = found if allowed is None else allowed & found

    for param, rtype in ACTOR_KINDS.items():
        values = split_values(pairs, param)
        if not values:
            continue
        found: set[int] = set()
        for v in values:
            ref = normalise_ref(v, rtype)
            if ref.startswith("Schedule/"):
                idx = org.schedule_index.get(ref.split("/", 1)[1])
                if idx is not None:
                    found.add(idx)
            elif ref.startswith("Organization/"):
                found.update(s.index for s in org.schedules if s.organization_ref == ref)
            else:
                found.update(org.schedules_by_actor.get(ref, ()))
        narrow(found)
    strings = [v.lower() for v in split_values(pairs, "location-string")]
    if strings:  # any part of the address (line, city, state, zip), case-insensitive
        narrow(
            {s.index for s in org.schedules if any(q in " ".join(s.address_terms) for q in strings)}
        )
    specialties = split_values(pairs, "specialty")
    if specialties:
        narrow(
            {
                s.index
                for s in org.schedules
                if s.specialty
                and any(_token_match(v, codes.SNOMED, s.specialty) for v in specialties)
            }
        )
    visit_types = split_values(pairs, "visit-type") + split_values(pairs, "service-type")
    if visit_types:
        narrow(
            {
                s.index
                for s in org.schedules
                if any(
                    _token_match(v, codes.VISIT_TYPE_SYSTEM, c)
                    for v in visit_types
                    for c in s.service_types
                )
            }
        )
    for v in split_values(pairs, "_id") if ids_are_schedules else ():
        narrow({org.schedule_index[v]} if v in org.schedule_index else set())
    return frozenset(allowed) if allowed is not None else None


def parse_param_datetime(value: str, param: str) -> tuple[datetime, datetime]:
    """A date/dateTime parameter value as a UTC range; 400 OperationOutcome when malformed."""
    try:
        return parse_datetime(value)
    except BadDateTime as exc:
        raise bad_request(f"{param}: {exc}") from exc


def _floor_minute_after(moment: datetime) -> int:
    """Smallest epoch minute whose instant is strictly after ``moment``."""
    return math.floor(moment.timestamp() / 60) + 1


def date_window(values: list[str], param: str) -> tuple[int | None, int | None]:
    """FHIR date search with prefixes -> [lo, hi) epoch-minute bounds on the slot start."""
    lo: int | None = None
    hi: int | None = None

    def up(x: int) -> None:
        nonlocal lo
        lo = x if lo is None else max(lo, x)

    def down(x: int) -> None:
        nonlocal hi
        hi = x if hi is None else min(hi, x)

    for raw in values:
        prefix, text = (
            (raw[:2], raw[2:]) if raw[:2] in ("ge", "gt", "le", "lt", "eq") else ("eq", raw)
        )
        a, b = parse_param_datetime(text, param)
        instant = a == b
        if prefix == "ge":
            up(ceil_minute(a))
        elif prefix == "gt":
            up(_floor_minute_after(a) if instant else ceil_minute(b))
        elif prefix == "lt":
            down(ceil_minute(a))
        elif prefix == "le":
            down(_floor_minute_after(a) if instant else ceil_minute(b))
        else:
            up(ceil_minute(a))
            down(_floor_minute_after(a) if instant else ceil_minute(b))
    return lo, hi


@dataclass(frozen=True, slots=True)
class Includes:
    schedules: bool = False
    actors: bool = False


def includes(pairs: list[tuple[str, str]]) -> Includes:
    values = [v for k, v in pairs if k.startswith("_include")]
    sched = any(v in INCLUDE_SCHEDULE for v in values)
    actors = any(v == "*" or v.startswith(INCLUDE_ACTOR_PREFIX) for v in values)
    return Includes(schedules=sched or actors, actors=actors)


def page_size(
    pairs: list[tuple[str, str]], default: int, maximum: int, refuse_above: int | None = None
) -> int:
    """``_count`` (else ``default``), capped at ``maximum``; above ``refuse_above`` a 400."""
    raw = first(pairs, "_count")
    if raw is None:
        return default
    try:
        n = int(raw)
    except ValueError as exc:
        raise bad_request(f"_count must be an integer, not {raw!r}") from exc
    if n < 0:
        raise bad_request("_count must not be negative")
    if refuse_above is not None and n > refuse_above:
        raise bad_request(f"_count {n} exceeds the maximum page size of {refuse_above}")
    return min(n, maximum)


def prefetch_query(org: Organisation, pairs: list[tuple[str, str]]) -> SlotQuery:
    """``Slot/$prefetch``: free slots with start in [start, end), filtered by actors/codes."""
    lo = hi = None
    start = first(pairs, "start")
    end = first(pairs, "end")
    if start:
        lo = ceil_minute(parse_param_datetime(start, "start")[0])
    if end:
        hi = ceil_minute(parse_param_datetime(end, "end")[0])
    if lo is not None and hi is not None and hi < lo:
        raise bad_request("end must not be before start")
    return SlotQuery(
        lo=lo,
        hi=hi,
        schedules=schedules_matching(org, pairs, ids_are_schedules=False),
        statuses=frozenset({FREE}),
    )


def updated_after_ms(pairs: list[tuple[str, str]]) -> int | None:
    """``_lastUpdated=gt|ge<instant>``: the epoch millisecond a match must be newer than."""
    updated_after = None
    for raw in split_values(pairs, "_lastUpdated"):
        prefix, text = raw[:2], raw[2:]
        if prefix not in ("gt", "ge"):
            raise bad_request("_lastUpdated supports the gt and ge prefixes")
        a, _ = parse_param_datetime(text, "_lastUpdated")
        ms = to_ms(a) - (1 if prefix == "ge" else 0)
        updated_after = ms if updated_after is None else max(updated_after, ms)
    return updated_after


def slot_search_query(org: Organisation, flavour: str, pairs: list[tuple[str, str]]) -> SlotQuery:
    """``GET Slot?...``: start prefixes, status (all statuses when absent), _lastUpdated."""
    lo, hi = date_window(split_values(pairs, "start"), "start")
    statuses: frozenset[int] | None = None
    status_values = split_values(pairs, "status")
    if status_values:
        found: set[int] = set()
        for v in status_values:
            codes_ = statuses_for(flavour, v)
            if codes_ is None:
                raise bad_request(f"unknown slot status {v!r}")
            found |= codes_
        statuses = frozenset(found)
    updated_after = updated_after_ms(pairs)
    ids = split_values(pairs, "_id")
    slots = frozenset(i for i in map(slot_index, ids) if i is not None) if ids else None
    return SlotQuery(
        lo=lo,
        hi=hi,
        schedules=schedules_matching(org, pairs, ids_are_schedules=False),
        statuses=statuses,
        updated_after_ms=updated_after,
        slots=slots,
    )
