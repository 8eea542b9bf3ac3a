"""A site's local date of each offer start: remembered per day, exact across DST."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from rules.hours import SiteHours
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
