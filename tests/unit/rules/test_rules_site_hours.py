"""A site's local date of each offer start: remembered per day, exact across DST."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from rules.hours import SiteHours, whole_local_days
from rules.schema import WeeklyHours

ALL_DAY = WeeklyHours(
    **{day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
)

# Zones with a transition at 02:00, at midnight (Havana, Santiago), of half an hour
# (Lord Howe) and a whole day skipped (Apia, 2011-12-30).
ZONES = [
    "America/New_York",
    "Europe/London",
    "America/Havana",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Pacific/Apia",
]


def _moments(first: datetime, days: int, step: timedelta) -> list[datetime]:
    out, t = [], first
    while t < first + timedelta(days=days):
        out.append(t)
        t += step
    return out


@pytest.mark.parametrize("zone_name", ZONES)
def test_open_day_is_the_local_date_in_order_and_out_of_order(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    moments = []
    for year in (2011, 2026, 2030):  # both transitions of each year, and Apia's lost day
        moments += _moments(datetime(year, 1, 1, tzinfo=UTC), 366, timedelta(minutes=53))
    shuffled = moments[:]
    random.Random(zone_name).shuffle(shuffled)
    for order in (moments, shuffled):
        hours = SiteHours(None, zone, ALL_DAY, [])
        for t in order:
            expected = t.astimezone(zone).date()
            assert hours.open_day(t, t + timedelta(minutes=1)) == expected, t


SPLIT_DAY = WeeklyHours(
    **{
        day: ["00:00-01:30", "01:45-03:00", "08:00-12:00", "13:00-24:00"]
        for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    }
)


@pytest.mark.parametrize("zone_name", ZONES)
@pytest.mark.parametrize("hours_of_week", [ALL_DAY, SPLIT_DAY], ids=["all-day", "split"])
def test_a_span_inside_the_last_matched_range_is_open_on_its_day(
    zone_name: str, hours_of_week: WeeklyHours
) -> None:
    """The composer's scan reuses the range :meth:`SiteHours.open_range` last matched
    for later starts inside it: that must give what asking afresh gives, across DST
    transitions at 02:00 and at midnight, half-hour ones and Apia's lost day."""
    zone = ZoneInfo(zone_name)
    scanning = SiteHours(None, zone, hours_of_week, [])
    for year in (2011, 2026):
        lengths = (timedelta(minutes=15), timedelta(minutes=45))
        last = None  # (day, opens, closes) of the range last matched
        for n, t in enumerate(
            _moments(datetime(year, 1, 1, tzinfo=UTC), 366, timedelta(minutes=20))
        ):
            end = t + lengths[n % 2]
            if last is not None and last[1] <= t and end <= last[2]:
                reused = last[0]
            else:
                found = scanning.open_range(t, end)
                reused = None if found is None else found[0]
                last = found or last
            fresh = SiteHours(None, zone, hours_of_week, []).open_day(t, end)
            assert reused == fresh, (t, end)


@pytest.mark.parametrize(
    "zone_names",
    [["UTC"], ["America/Santiago"], ["Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/London"]],
)
def test_whole_local_days_hold_every_local_day_the_span_touches(zone_names: list[str]) -> None:
    """The preview and the feed compose a week widened by this: every local day (in
    every zone) that the week touches must lie inside, midnight shifts included."""
    zones = [ZoneInfo(name) for name in zone_names]
    for start in _moments(datetime(2026, 1, 1, tzinfo=UTC), 366, timedelta(hours=29, minutes=7)):
        end = start + timedelta(days=7)
        low, high = whole_local_days(start, end, zones)
        assert low <= start and end <= high
        for zone in zones:
            for edge in (start, end - timedelta(microseconds=1)):
                day = edge.astimezone(zone).date()
                first = datetime.combine(day, time(0), zone).astimezone(UTC)
                after = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
                assert low <= first and after <= high, (zone, edge)
        # at most a local day (25 hours across DST) and the slack wider on each side
        assert start - low <= timedelta(hours=28) and high - end <= timedelta(hours=28)


def test_a_span_cut_at_the_only_zones_midnights_is_not_widened() -> None:
    zone = ZoneInfo("America/New_York")
    monday = datetime(2026, 3, 2, tzinfo=zone).astimezone(UTC)
    next_monday = datetime(2026, 3, 9, tzinfo=zone).astimezone(UTC)  # across the DST change
    assert whole_local_days(monday, next_monday, [zone]) == (monday, next_monday)
