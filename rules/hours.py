"""Opening hours and closures of each clinic as UTC instants.

Hours are wall-clock times in the clinic's zone, so on DST change days the UTC
offset of 08:00 and 17:00 differ from the day before; converting each local day's
ranges to aware instants once (and caching them) keeps every comparison in UTC
and correct across the change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.core.domain import Actor
from rules.schema import Closure, RulesFile, WeeklyHours

_DAY = 24 * 60

Ranges = list[tuple[datetime, datetime]]


class SiteHours:
    """When one site is open: its zone and, per local date, its opening ranges.

    The composer asks this for every candidate offer, so it is one object per site
    with its ranges cached per date, not a lookup through the rules each time.
    """

    __slots__ = ("_closures", "_day", "_hours", "_ranges", "site", "zone")

    def __init__(
        self, site: str | None, zone: ZoneInfo, hours: WeeklyHours, closures: Sequence[Closure]
    ):
        self.site = site
        self.zone = zone
        self._hours = hours
        self._closures = closures
        self._ranges: dict[date, Ranges] = {}
        # the last local day asked about, as [first instant, next day's first instant)
        self._day: tuple[datetime, datetime, date] | None = None

    def open_day(self, start: datetime, end: datetime) -> date | None:
        """The local date of ``start`` when ``[start, end)`` is inside opening hours."""
        found = self.open_range(start, end)
        return None if found is None else found[0]

    def open_range(self, start: datetime, end: datetime) -> tuple[date, datetime, datetime] | None:
        """:meth:`open_day` with the opening range that holds ``[start, end)``.

        A range lies within its local day (hours end by 24:00), so any later span
        inside the same range is open on the same day: the composer, which scans a
        schedule's slots in start order, checks the next candidate against this
        range with two comparisons and asks again only when it leaves it."""
        span = self._day
        within = span is not None and span[0] <= start < span[1]
        day = span[2] if within and span is not None else self._local_day(start)
        ranges = self._ranges.get(day)
        if ranges is None:
            ranges = self.ranges(day)
        for opens, closes in ranges:
            if opens <= start and end <= closes:
                return day, opens, closes
        return None

    def _local_day(self, start: datetime) -> date:
        """The local date of ``start``, remembered as its day's span of instants.

        The composer asks about one schedule's slots in start order, so the next start
        is nearly always on the same local day: two comparisons instead of a zone
        conversion. A per-moment cache thrashed at a million slots (more distinct
        starts times zones than it holds). A day whose UTC offset changes inside it
        (DST) is not remembered, so a repeated hour never lands on the wrong date."""
        zone = self.zone
        day = start.astimezone(zone).date()
        first = _instant(day, 0, zone)
        after = _instant(day, _DAY, zone)
        last = (after - timedelta(microseconds=1)).astimezone(zone)
        plain = (
            first.astimezone(zone).utcoffset() == last.utcoffset()
            and first.astimezone(zone).timetz().replace(tzinfo=None) == time(0)
            and after.astimezone(zone).timetz().replace(tzinfo=None) == time(0)
        )
        self._day = (first, after, day) if plain else None
        return day

    def ranges(self, day: date) -> Ranges:
        """Opening ranges of local date ``day`` as instants (none on a closure)."""
        ranges = self._ranges.get(day)
        if ranges is None:
            closed = any(closure.covers(day, self.site) for closure in self._closures)
            ranges = [] if closed else self._compute(day)
            self._ranges[day] = ranges
        return ranges

    def _compute(self, day: date) -> Ranges:
        return [
            (_instant(day, a, self.zone), _instant(day, b, self.zone))
            for a, b in self._hours.intervals(day.weekday())
        ]


class Calendar:
    """When each site is open, per the rules file (and the EHR's stated zones)."""

    def __init__(self, rules: RulesFile, actors: Mapping[str, Actor]):
        self._rules = rules
        self._actors = actors
        self._sites: dict[str | None, SiteHours] = {}

    def site(self, site: str | None) -> SiteHours:
        """The opening hours of ``site`` (None: the organisation's)."""
        hours = self._sites.get(site)
        if hours is None:
            hours = self._sites[site] = SiteHours(
                site,
                self._resolve_zone(site),
                self._hours(site),
                self._rules.organization.closures,
            )
        return hours

    def zone(self, site: str | None) -> ZoneInfo:
        """The site's zone: rules override, else the EHR's, else the organisation's."""
        return self.site(site).zone

    def local_date(self, site: str | None, moment: datetime) -> date:
        return _local_date(self.zone(site), moment)

    def is_open(self, site: str | None, start: datetime, end: datetime) -> bool:
        """True when ``[start, end)`` lies inside one opening range of an open day."""
        return self.open_day(site, start, end) is not None

    def open_day(self, site: str | None, start: datetime, end: datetime) -> date | None:
        """The local date of ``start`` when ``[start, end)`` is inside opening hours."""
        return self.site(site).open_day(start, end)

    def open_ranges(self, site: str | None, day: date) -> Ranges:
        return self.site(site).ranges(day)

    def zones(self) -> set[ZoneInfo]:
        """Every zone a site's local days can be in: the organisation's, and the zone
        :meth:`zone` resolves for each site in the rules and each actor the EHR knows
        (any of them may be a site)."""
        refs = [s.ref for s in self._rules.organization.sites] + list(self._actors)
        return {ZoneInfo(self._rules.organization.timezone)} | {
            self._resolve_zone(ref) for ref in refs
        }

    def _hours(self, site: str | None) -> WeeklyHours:
        override = self._rules.site(site)
        if override is not None and override.opening_hours is not None:
            return override.opening_hours
        return self._rules.organization.opening_hours

    def _resolve_zone(self, site: str | None) -> ZoneInfo:
        override = self._rules.site(site)
        if override is not None and override.timezone:
            return ZoneInfo(override.timezone)
        actor = self._actors.get(site) if site else None
        if actor is not None and actor.timezone:
            try:
                return ZoneInfo(actor.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                pass  # an EHR zone we cannot read: the organisation's zone is the rule
        return ZoneInfo(self._rules.organization.timezone)


@lru_cache(maxsize=1 << 16)
def _local_date(zone: ZoneInfo, moment: datetime) -> date:
    """Converting to a zone costs microseconds and every composition asks it again
    for the same slot starts (of every clinic in the zone, in every request)."""
    return moment.astimezone(zone).date()


def _instant(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """Local wall-clock ``minutes`` after midnight of ``day`` as a UTC instant."""
    if minutes >= _DAY:
        day, minutes = day + timedelta(days=1), minutes - _DAY
    local = datetime.combine(day, time(minutes // 60, minutes % 60), zone)
    # datetime.UTC, as the cache's slot times carry: comparing datetimes that share
    # one tzinfo object skips two utcoffset() calls, and the composer compares a lot.
    return local.astimezone(UTC)


# Beyond any shift of a local midnight by a DST change (or a skipped day) near it.
_MIDNIGHT_SLACK = timedelta(hours=3)


def whole_local_days(
    start: datetime, end: datetime, zones: Iterable[ZoneInfo]
) -> tuple[datetime, datetime]:
    """``[start, end)`` widened to whole local days in every one of ``zones``.

    Composing a span that holds every local day it touches gives each offer in it the
    offers its per-day cap and ``spread`` ordering see in a horizon-wide request. Where
    all sites share one zone and the span is already cut at its midnights, nothing is
    added (a margin of a day on each side composed 9 days for every 7 kept)."""
    low, high = start, end
    for zone in zones:
        local_start, local_end = start.astimezone(zone), end.astimezone(zone)
        if local_start.time() != time(0):
            first = datetime.combine(local_start.date(), time(0), zone).astimezone(UTC)
            low = min(low, first - _MIDNIGHT_SLACK)
        if local_end.time() != time(0):
            after = local_end.date() + timedelta(days=1)
            high = max(
                high, datetime.combine(after, time(0), zone).astimezone(UTC) + _MIDNIGHT_SLACK
            )
    return low, high
