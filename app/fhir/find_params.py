"""Parsing ``Appointment/$find`` parameters (GET query) into a plain request object.

Names follow the IG's OperationDefinition; the IG examples' names (``provider``,
``location``) are accepted as aliases. Errors name the offending parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.errors import InvalidParameter

MAX_WINDOW = timedelta(days=366)
MAX_COUNT = 1000

ALIASES = {"provider": "practitioner", "location": "location-reference"}
REFERENCE_TYPES = {"practitioner": "Practitioner", "location-reference": "Location"}


@dataclass(frozen=True, slots=True)
class FindQuery:
    start: datetime
    end: datetime
    practitioners: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    count: int | None = None


def parse_datetime_param(name: str, value: str) -> datetime:
    """FHIR dateTime: a date (midnight UTC) or a dateTime with a time zone offset."""
    value = value.strip()
    try:
        parsed = datetime.fromisoformat(value)
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


def parse_find_query(items: Iterable[tuple[str, str]]) -> FindQuery:
    values: dict[str, list[str]] = {}
    for raw_name, raw_value in items:
        name = ALIASES.get(raw_name, raw_name)
        # a comma-separated value is an OR list, as in FHIR search
        values.setdefault(name, []).extend(v for v in raw_value.split(",") if v.strip())

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
    return FindQuery(
        start=start,
        end=end,
        practitioners=tuple(
            parse_reference_param("practitioner", v) for v in values.get("practitioner", [])
        ),
        locations=tuple(
            parse_reference_param("location-reference", v)
            for v in values.get("location-reference", [])
        ),
        count=count,
    )
