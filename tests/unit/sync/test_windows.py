"""Sync windows are whole UTC days inside the horizon."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from app.sync.windows import align, days_in, horizon, split

NOW = datetime(2030, 1, 7, 15, 30, tzinfo=UTC)
LIMITS = horizon(NOW, 30)
DAY = timedelta(days=1)


def test_horizon_starts_at_midnight_today():
    assert horizon(NOW, 30) == (datetime(2030, 1, 7, tzinfo=UTC), datetime(2030, 2, 6, tzinfo=UTC))


def test_periods_widen_to_whole_days_in_utc():
    ny = timezone(timedelta(hours=-5))
    start = datetime(2030, 1, 9, 20, 0, tzinfo=ny)  # 01:00 UTC on the 10th
    end = datetime(2030, 1, 9, 21, 0, tzinfo=ny)
    assert align(start, end, LIMITS) == (
        datetime(2030, 1, 10, tzinfo=UTC),
        datetime(2030, 1, 11, tzinfo=UTC),
    )


def test_an_instant_or_a_date_names_its_day_and_midnight_ends_are_exclusive():
    day = datetime(2030, 1, 12, tzinfo=UTC)
    assert align(day, day, LIMITS) == (day, day + DAY)
    assert align(day, day + DAY, LIMITS) == (day, day + DAY)


def test_periods_are_clipped_to_the_horizon_or_dropped():
    assert align(None, None, LIMITS) == LIMITS
    assert align(NOW - 10 * DAY, NOW + DAY, LIMITS) == (LIMITS[0], LIMITS[0] + 2 * DAY)
    assert align(NOW + 100 * DAY, None, LIMITS) is None
    assert align(None, NOW - 5 * DAY, LIMITS) is None


def test_split_and_days():
    windows = split(LIMITS[0], LIMITS[0] + 7 * DAY, 3)
    assert [(b - a).days for a, b in windows] == [3, 3, 1]
    assert len(days_in(*windows[0])) == 3
