"""What a rules file would offer against the current cache (``slotsync rules check``).

Operations staff check a rules file before deploying it; a file that validates
but offers nothing for a visit type (a typo in a code, a service type no slot
carries) is the usual mistake, so the report counts bookable starts per visit
type over each visit type's horizon and flags the empty ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from app.core.domain import Actor, Schedule, Slot
from rules.appointment_id import ProposalPayload
from rules.composer import compose
from rules.request import FindRequest
from rules.schema import RulesFile


@dataclass(frozen=True, slots=True)
class VisitTypeSummary:
    code: str
    name: str | None
    display: str | None
    duration_minutes: int
    horizon_days: int
    offers: int  # bookable (start, primary asset) pairs over the horizon
    distinct_starts: int
    practitioners: int  # distinct primary assets (usually practitioners) offering it
    first_start: datetime | None
    last_start: datetime | None


def summarise(
    rules: RulesFile,
    slots: Sequence[Slot],
    schedules: Mapping[str, Schedule],
    actors: Mapping[str, Actor],
    now: datetime,
) -> list[VisitTypeSummary]:
    """One summary per visit type, in file order; no patient, no ``_count``."""
    out = []
    for vt in rules.visit_types:
        eff = rules.effective(vt)
        request = FindRequest(
            start=now,
            end=now + timedelta(days=eff.max_horizon_days, minutes=vt.duration_minutes),
            visit_types=(vt.code,),
        )
        alone = rules.model_copy(update={"visit_types": [vt]})  # this entry, not its siblings
        offers = compose(request, alone, slots, schedules, actors, now, _no_signature).appointments
        starts = sorted({a.start for a in offers})
        primaries = {a.participants[0].ref for a in offers}
        out.append(
            VisitTypeSummary(
                code=vt.code,
                name=vt.name,
                display=vt.display,
                duration_minutes=vt.duration_minutes,
                horizon_days=eff.max_horizon_days,
                offers=len(offers),
                distinct_starts=len(starts),
                practitioners=len(primaries),
                first_start=starts[0] if starts else None,
                last_start=starts[-1] if starts else None,
            )
        )
    return out


def format_report(
    rules: RulesFile, summaries: Sequence[VisitTypeSummary], *, source: str | None = None
) -> str:
    """A plain-text report: the file's headline facts and one line per visit type."""
    org = rules.organization
    zone = ZoneInfo(org.timezone)
    lines = [
        f"rules file {source + ' ' if source else ''}is valid (version {rules.version})",
        f"organization: {org.name} ({org.timezone}), {len(org.sites)} clinic override(s), "
        f"{len(org.closures)} closure(s), {len(rules.visit_types)} visit type(s)",
        "",
        f"{'visit type':<34} {'min':>4} {'days':>4} {'offers':>7} {'starts':>7} "
        f"{'staff':>6}  first .. last ({org.timezone})",
    ]
    empty = []
    for s in summaries:
        name = (s.display or s.name or s.code.rpartition("|")[2])[:34]
        span = (
            f"{_short(s.first_start, zone)} .. {_short(s.last_start, zone)}"
            if s.first_start and s.last_start
            else "-"
        )
        lines.append(
            f"{name:<34} {s.duration_minutes:>4} {s.horizon_days:>4} {s.offers:>7} "
            f"{s.distinct_starts:>7} {s.practitioners:>6}  {span}"
        )
        if s.offers == 0:
            empty.append(s.code + (f" ({s.name})" if s.name else ""))
    if empty:
        lines.append("")
        lines.append(
            "warning: no bookable start for: "
            + ", ".join(empty)
            + " (check asset codes/ids and slot_service_types against the cached slots)"
        )
    return "\n".join(lines) + "\n"


def _short(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _no_signature(payload: ProposalPayload) -> str:
    """Counting needs no ids; skipping the HMAC keeps the check fast."""
    return ""
