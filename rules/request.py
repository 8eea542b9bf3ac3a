"""What a caller asks the composer for, and what it gets back besides appointments.

These are plain data so that the API (``$find`` parameters), the CLI
(``rules check``) and tests can build them without any web types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from app.core.domain import ProposedAppointment
from app.core.errors import SlotsyncError


class InvalidFindRequest(SlotsyncError, ValueError):
    """The request itself is unusable (naive times, empty window...): a 400, not a 500."""


@dataclass(frozen=True, slots=True)
class PatientInfo:
    """What is known about the patient; ``None`` means unknown and never excludes."""

    ref: str | None = None  # "Patient/123" when the patient exists (patient-reference)
    display: str | None = None
    birth_date: date | None = None
    gender: str | None = None  # FHIR administrative gender
    new_patient: bool | None = None  # True for patient-resource without a record


# Where an offer sits in a paged answer: its start, the visit type's preference in the
# request, the primary asset (practitioner) and that asset's schedule. A total order (an
# asset's schedule has one free slot at a time), so a page can start after any offer.
PageKey = tuple[datetime, int, str, str]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the whole answer: the first ``size`` offers after ``after``.

    Positioned by key rather than by offset, so an offer that is taken between two
    pages does not shift the next page over one the client has not seen."""

    size: int
    after: PageKey | None = None


@dataclass(frozen=True, slots=True)
class FindRequest:
    """A ``$find`` query in internal terms.

    Repeated values of one kind are alternatives in preference order; different
    kinds are all applied (AND), as the ``$find`` operation definition says.
    """

    start: datetime
    end: datetime
    visit_types: tuple[str, ...] = ()  # tokens; empty = every visit type in the rules
    specialties: tuple[str, ...] = ()  # tokens; practitioner specialty
    practitioners: tuple[str, ...] = ()  # "Practitioner/pr-1"
    locations: tuple[str, ...] = ()  # "Location/clinic-1" (clinic or room)
    location_strings: tuple[str, ...] = ()  # part of a clinic address: city, state, zip
    patient: PatientInfo | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InvalidFindRequest("start and end must carry a time zone offset")
        if self.end <= self.start:
            raise InvalidFindRequest("end must be after start")
        if self.count is not None and self.count < 0:
            raise InvalidFindRequest("_count must not be negative")


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the caller should tell the client (an OperationOutcome issue).

    ``code``: ``unknown-visit-type`` | ``ineligible`` | ``outside-bookable-window``.
    """

    code: str
    message: str
    visit_type: str | None = None


LISTED_VISIT_TYPES = 5


def summarise_notices(notices: list[Notice]) -> list[str]:
    """One message per distinct cause, not one per visit type: a request over every
    visit type must not come back with a warning for each of them. A cause shared by
    several visit types names them (the first few, and how many more) and gives the
    first one's detail as an example."""
    by_code: dict[str, list[Notice]] = {}
    for notice in notices:
        by_code.setdefault(notice.code, []).append(notice)
    out = []
    for code, group in by_code.items():
        if len(group) == 1:
            out.append(group[0].message)
            continue
        names = [n.visit_type or "?" for n in group]
        listed = ", ".join(names[:LISTED_VISIT_TYPES])
        if len(names) > LISTED_VISIT_TYPES:
            listed += f" and {len(names) - LISTED_VISIT_TYPES} more"
        out.append(
            f"{_CAUSES.get(code, code)} for {len(group)} visit types ({listed}), e.g. "
            f"{group[0].message}"
        )
    return out


_CAUSES = {
    "unknown-visit-type": "not offered",
    "ineligible": "the patient is not eligible",
    "outside-bookable-window": "nothing can be booked in the requested window",
}


@dataclass(frozen=True, slots=True)
class ComposeResult:
    appointments: list[ProposedAppointment]
    notices: list[Notice] = field(default_factory=list)
    total: int | None = None  # paged: how many offers match in all
    next_after: PageKey | None = None  # paged: where the next page starts; None = last page
