"""``GET Appointment?patient=&status=&date=&practitioner=``: checked, normalised, forwardable.

The IG's "retrieving appointments" search: ``patient`` is required (the EHR's
capability statement makes it the one SHALL parameter), ``status`` a token list,
``date`` repeatable with the ``ge``/``le``/``gt``/``lt`` (and ``eq``) prefixes to
express a range, ``practitioner`` a reference. Unknown parameters are refused
rather than silently ignored, so a typo cannot widen a patient's search.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from app.core.errors import InvalidParameter

from .operation_params import fhir_id

APPOINTMENT_STATUSES = frozenset(
    {
        "proposed",
        "pending",
        "booked",
        "arrived",
        "fulfilled",
        "cancelled",
        "noshow",
        "entered-in-error",
        "checked-in",
        "waitlist",
    }
)
DATE_PREFIXES = ("ge", "le", "gt", "lt", "eq")
_PARTIAL_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
_IGNORED = frozenset({"_format", "_pretty"})


def _check_date(raw: str) -> str:
    prefix, value = (raw[:2], raw[2:]) if raw[:2].isalpha() else ("eq", raw)
    if prefix not in DATE_PREFIXES:
        raise InvalidParameter(
            f"date {raw!r}: prefix {prefix!r} is not supported (use {', '.join(DATE_PREFIXES)})",
            expression="date",
        )
    if _PARTIAL_DATE.match(value):
        return raw
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or "T" not in value or parsed.tzinfo is None:
        raise InvalidParameter(
            f"date {raw!r}: expected YYYY, YYYY-MM, YYYY-MM-DD or a dateTime with a time zone",
            expression="date",
        )
    return raw


def _split(values: Iterable[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def parse_appointment_search(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The query as parameters to forward to the EHR; InvalidParameter names what is wrong."""
    given: dict[str, list[str]] = {}
    for name, value in pairs:
        given.setdefault(name, []).append(value)
    unknown = sorted(set(given) - {"patient", "status", "date", "practitioner"} - _IGNORED)
    if unknown:
        raise InvalidParameter(
            f"unsupported search parameter(s) {', '.join(unknown)}; this server searches "
            "appointments by patient, status, date and practitioner"
        )
    patients = _split(given.get("patient", ()))
    if len(patients) != 1:
        raise InvalidParameter(
            "the patient parameter is required (exactly one Patient reference or id)",
            expression="patient",
        )
    out = [("patient", f"Patient/{fhir_id(patients[0], 'Patient', 'patient')}")]
    statuses = _split(given.get("status", ()))
    bad = [s for s in statuses if s not in APPOINTMENT_STATUSES]
    if bad:
        raise InvalidParameter(
            f"status {', '.join(bad)} is not an appointment status", expression="status"
        )
    if statuses:
        out.append(("status", ",".join(dict.fromkeys(statuses))))
    out += [("date", _check_date(v.strip())) for v in given.get("date", ())]
    practitioners = _split(given.get("practitioner", ()))
    if practitioners:
        refs = [f"Practitioner/{fhir_id(p, 'Practitioner', 'practitioner')}" for p in practitioners]
        out.append(("practitioner", ",".join(refs)))
    return out
