"""The rules file: the organisation's business rules for composing appointments.

In Argonaut Use Case 3 the organisation shares, out of band, which assets an
appointment of each visit type needs and when it may be offered. This module is
the one definition of that file (YAML or JSON): pydantic models that validate it
and from which ``rules/rules.schema.json`` is generated (``python -m rules.schema``),
so the published JSON Schema can never drift from what the loader accepts.

Cross-field checks (duplicate visit types, unknown clinic overrides...) raise
:class:`RuleProblems`, which carries one field path per problem so that the
loader can point at the offending line.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.core.errors import SlotsyncError
from app.core.ids import FHIR_ID_PATTERN

SCHEMA_PATH = Path(__file__).with_name("rules.schema.json")
SCHEMA_ID = "https://slotsync.example/schemas/rules.schema.json"

_HHMM = r"(?:[01]\d|2[0-3]):[0-5]\d"


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {value!r}") from exc
    return value


def _check_hours(value: str) -> str:
    start, end = parse_hours(value)
    if start >= end:
        raise ValueError(f"opening range {value!r} ends before it starts")
    return value


TimeZoneName = Annotated[
    str,
    Field(description="IANA time zone name, e.g. America/New_York", examples=["America/Chicago"]),
    AfterValidator(_check_zone),
]
Token = Annotated[
    str,
    Field(
        pattern=r"^[^|\s]*\|[^|\s]+$",
        description='A coded value as a FHIR token "system|code" (system may be empty: "|code")',
        examples=["http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type|office-visit"],
    ),
]
Reference = Annotated[
    str,
    Field(
        pattern=rf"^[A-Z][A-Za-z]+/{FHIR_ID_PATTERN}$",
        description='A relative FHIR reference "Type/id"',
        examples=["Practitioner/pr-1", "Location/clinic-1"],
    ),
]
HoursRange = Annotated[
    str,
    Field(
        pattern=rf"^{_HHMM}-(?:{_HHMM}|24:00)$",
        description="Local wall-clock range HH:MM-HH:MM (end exclusive, 24:00 allowed)",
        examples=["08:00-12:00"],
    ),
    AfterValidator(_check_hours),
]
Ordering = Literal["earliest", "spread", "practitioner-preference"]
AssetKind = Literal["practitioner", "location", "room", "device", "service"]
Gender = Literal["male", "female", "other", "unknown"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KIND_RESOURCE_TYPE: dict[str, str] = {
    "practitioner": "Practitioner",
    "location": "Location",
    "room": "Location",
    "device": "Device",
    "service": "HealthcareService",
}


def parse_hours(value: str) -> tuple[int, int]:
    """``"08:00-12:30"`` -> minutes since local midnight ``(480, 750)``."""
    start, end = value.split("-")
    return _minutes(start), _minutes(end)


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


class RuleProblems(SlotsyncError, ValueError):
    """Cross-field problems, each with the field path (as a pydantic loc) it concerns."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]):
        self.problems = problems
        super().__init__("; ".join(message for _, message in problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WeeklyHours(_Model):
    """Opening hours per weekday; a day that is absent or empty is closed."""

    mon: list[HoursRange] = Field(default_factory=list)
    tue: list[HoursRange] = Field(default_factory=list)
    wed: list[HoursRange] = Field(default_factory=list)
    thu: list[HoursRange] = Field(default_factory=list)
    fri: list[HoursRange] = Field(default_factory=list)
    sat: list[HoursRange] = Field(default_factory=list)
    sun: list[HoursRange] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_overlaps(self) -> WeeklyHours:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for day in WEEKDAYS:
            ranges = sorted((parse_hours(r), i) for i, r in enumerate(getattr(self, day)))
            for (prev, _), (cur, index) in pairwise(ranges):
                if cur[0] < prev[1]:
                    problems.append(((day, index), "opening ranges of one day overlap"))
        if problems:
            raise RuleProblems(problems)
        return self

    def intervals(self, weekday: int) -> list[tuple[int, int]]:
        """Opening ranges of ``weekday`` (0 = Monday) as sorted minute pairs."""
        return sorted(parse_hours(r) for r in getattr(self, WEEKDAYS[weekday]))


class Closure(_Model):
    """A holiday or closure: whole local days on which nothing is offered."""

    date: dt.date = Field(description="first closed day (local date)")
    end_date: dt.date | None = Field(default=None, description="last closed day, inclusive")
    name: str | None = None
    locations: list[Reference] = Field(
        default_factory=list, description="clinics concerned; empty = the whole organisation"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Closure:
        if self.end_date is not None and self.end_date < self.date:
            raise RuleProblems([(("end_date",), "end_date is before date")])
        return self

    def covers(self, day: dt.date, site: str | None) -> bool:
        last = self.end_date or self.date
        if not self.date <= day <= last:
            return False
        return not self.locations or site in self.locations


class SiteOverride(_Model):
    """Per-clinic time zone and opening hours that differ from the organisation's."""

    ref: Reference = Field(description="the clinic, e.g. Location/clinic-2")
    name: str | None = None
    timezone: TimeZoneName | None = None
    opening_hours: WeeklyHours | None = None


class Organization(_Model):
    name: str = Field(min_length=1)
    timezone: TimeZoneName
    opening_hours: WeeklyHours
    closures: list[Closure] = Field(default_factory=list)
    sites: list[SiteOverride] = Field(
        default_factory=list, description="clinics whose zone or hours differ"
    )


class Defaults(_Model):
    """Values a visit type inherits when it does not state its own."""

    join_contiguous: bool = False
    min_lead_minutes: int = Field(default=0, ge=0)
    max_horizon_days: int = Field(default=30, ge=1, le=730)
    buffer_before_minutes: int = Field(default=0, ge=0, le=240)
    buffer_after_minutes: int = Field(default=0, ge=0, le=240)
    max_offers_per_day_per_practitioner: int | None = Field(default=None, ge=1)
    ordering: Ordering = "earliest"


class AssetRequirement(_Model):
    """One asset an appointment needs, chosen by explicit ids and/or codes.

    An actor satisfies the requirement when its resource type matches ``kind``,
    it is listed in ``ids`` (if given) and carries one of ``codes`` (if given):
    specialties for practitioners, room kinds for rooms, device kinds for devices.
    """

    kind: AssetKind
    ids: list[Reference] = Field(
        default_factory=list, description="explicit candidates in preference order"
    )
    codes: list[Token] = Field(default_factory=list)
    optional: bool = Field(
        default=False, description="offered without this asset when none is free"
    )
    same_location_as_practitioner: bool = Field(
        default=True,
        description="the asset must be at the clinic where the appointment takes place",
    )
    slot_service_types: list[Token] | None = Field(
        default=None,
        description="overrides the visit type's slot_service_types for this asset's slots",
    )

    @model_validator(mode="after")
    def _ids_match_kind(self) -> AssetRequirement:
        expected = KIND_RESOURCE_TYPE[self.kind]
        problems: list[tuple[tuple[str | int, ...], str]] = [
            (("ids", i), f"a {self.kind} must be a {expected} reference, not {ref!r}")
            for i, ref in enumerate(self.ids)
            if ref.split("/", 1)[0] != expected
        ]
        if problems:
            raise RuleProblems(problems)
        return self


class Eligibility(_Model):
    """Who may book; unknown patient facts never exclude (checked again at booking)."""

    patient_status: Literal["any", "new", "existing"] = "any"
    min_age_years: int | None = Field(default=None, ge=0, le=150)
    max_age_years: int | None = Field(
        default=None, ge=0, le=150, description="inclusive: 17 admits a 17-year-old"
    )
    genders: list[Gender] = Field(default_factory=list, description="empty = any")

    @model_validator(mode="after")
    def _range(self) -> Eligibility:
        low, high = self.min_age_years, self.max_age_years
        if low is not None and high is not None and low > high:
            raise RuleProblems([(("max_age_years",), "max_age_years is below min_age_years")])
        return self


class VisitTypeRule(_Model):
    """How to compose appointments of one visit type."""

    code: Token = Field(description="IG visit-type code or a local code, as system|code")
    name: str | None = Field(
        default=None,
        description="tells apart entries sharing a code (e.g. office-visit in paediatrics "
        "and in family practice); such entries are alternatives for that visit type",
    )
    display: str | None = None
    duration_minutes: int = Field(gt=0, le=24 * 60)
    assets: list[AssetRequirement] = Field(min_length=1)
    slot_service_types: list[Token] | None = Field(
        default=None,
        description=(
            "slot serviceTypes that qualify a slot; omitted = the visit type's own code; "
            "[] = any slot. Slots without any serviceType always qualify."
        ),
    )
    slot_appointment_types: list[Token] = Field(
        default_factory=list, description="if given, a slot's appointmentType must be one of these"
    )
    appointment_type: Token | None = None
    specialties: list[Token] = Field(
        default_factory=list,
        description="Appointment.specialty; empty = the practitioner's matching specialties",
    )
    locations: list[Reference] = Field(
        default_factory=list, description="clinics that offer this visit type; empty = all"
    )
    join_contiguous: bool | None = None
    min_lead_minutes: int | None = Field(default=None, ge=0)
    max_horizon_days: int | None = Field(default=None, ge=1, le=730)
    buffer_before_minutes: int | None = Field(default=None, ge=0, le=240)
    buffer_after_minutes: int | None = Field(default=None, ge=0, le=240)
    eligibility: Eligibility = Field(default_factory=Eligibility)
    max_offers_per_day_per_practitioner: int | None = Field(default=None, ge=1)
    ordering: Ordering | None = None

    @model_validator(mode="after")
    def _one_required_asset(self) -> VisitTypeRule:
        if all(asset.optional for asset in self.assets):
            raise RuleProblems([(("assets",), "at least one asset must be required")])
        return self


class RulesFile(_Model):
    """Root of the rules file."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    version: Literal[1] = Field(description="format version of this file")
    organization: Organization
    defaults: Defaults = Field(default_factory=Defaults)
    visit_types: list[VisitTypeRule] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> RulesFile:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        seen: dict[tuple[str, str | None], int] = {}
        for i, vt in enumerate(self.visit_types):
            key = (vt.code, vt.name)
            if key in seen:
                problems.append(
                    (
                        ("visit_types", i, "name" if vt.name else "code"),
                        f"duplicate visit type (also item {seen[key]}); entries sharing "
                        "a code need distinct names",
                    )
                )
            seen.setdefault(key, i)
        refs: dict[str, int] = {}
        for i, site in enumerate(self.organization.sites):
            if site.ref in refs:
                problems.append(
                    (
                        ("organization", "sites", i, "ref"),
                        f"duplicate site (also item {refs[site.ref]})",
                    )
                )
            refs.setdefault(site.ref, i)
            if re.match(r"^Location/", site.ref) is None:
                problems.append((("organization", "sites", i, "ref"), "a site must be a Location"))
        if problems:
            raise RuleProblems(problems)
        return self

    def visit_types_for(self, code: str) -> list[VisitTypeRule]:
        """Every entry for a visit-type token; a token without system matches by code."""
        exact = [vt for vt in self.visit_types if vt.code == code]
        system, _, bare = code.rpartition("|")
        if exact or system:
            return exact
        return [vt for vt in self.visit_types if vt.code.rpartition("|")[2] == bare]

    def effective(self, vt: VisitTypeRule) -> EffectiveRule:
        """``vt`` with every inherited value resolved against :attr:`defaults`."""
        d = self.defaults

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        return EffectiveRule(
            rule=vt,
            join_contiguous=pick(vt.join_contiguous, d.join_contiguous),
            min_lead_minutes=pick(vt.min_lead_minutes, d.min_lead_minutes),
            max_horizon_days=pick(vt.max_horizon_days, d.max_horizon_days),
            buffer_before_minutes=pick(vt.buffer_before_minutes, d.buffer_before_minutes),
            buffer_after_minutes=pick(vt.buffer_after_minutes, d.buffer_after_minutes),
            max_offers_per_day_per_practitioner=pick(
                vt.max_offers_per_day_per_practitioner, d.max_offers_per_day_per_practitioner
            ),
            ordering=pick(vt.ordering, d.ordering),
            slot_service_types=tuple(
                [vt.code] if vt.slot_service_types is None else vt.slot_service_types
            ),
        )

    def site(self, ref: str | None) -> SiteOverride | None:
        for site in self.organization.sites:
            if site.ref == ref:
                return site
        return None


@dataclass(frozen=True, slots=True)
class EffectiveRule:
    """A visit type with defaults applied: what the composer actually uses."""

    rule: VisitTypeRule
    join_contiguous: bool
    min_lead_minutes: int
    max_horizon_days: int
    buffer_before_minutes: int
    buffer_after_minutes: int
    max_offers_per_day_per_practitioner: int | None
    ordering: Ordering
    slot_service_types: tuple[str, ...]


# The last rules file asked of effective_rules, and its answer. A file is frozen and
# replaced whole when it is reloaded (a copy with changes is a new object), so its
# identity says the answer still holds; it is held here so that a new file can never
# take a freed one's id.
_last_effective: tuple[RulesFile, tuple[EffectiveRule, ...]] | None = None


def effective_rules(rules: RulesFile) -> tuple[EffectiveRule, ...]:
    """Every visit type of ``rules`` with its defaults applied, in file order.

    Every ``$find`` needs them all (the span of slots to read, how long the answer
    holds), served from the answer memo or not: worked out once per rules file
    rather than on every request, where it was 5 % of a served answer's time."""
    global _last_effective
    last = _last_effective
    if last is not None and last[0] is rules:
        return last[1]
    effective = tuple(rules.effective(vt) for vt in rules.visit_types)
    _last_effective = (rules, effective)
    return effective


def horizon_days(rules: RulesFile) -> int:
    """How far ahead any visit type of ``rules`` can be booked, in days: the span of
    slots the cache keeps and the console, the feed and coverage look at."""
    return max(e.max_horizon_days for e in effective_rules(rules))


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of the rules file."""
    schema = RulesFile.model_json_schema(mode="validation")
    schema["$id"] = SCHEMA_ID
    schema["title"] = "slotsync rules file"
    return schema


def render_json_schema() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(render_json_schema(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
