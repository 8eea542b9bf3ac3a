"""When a visit type can be booked from now: its lead time and horizon, on the minute.

Both bounds are whole minutes: the lead time counts from the next whole minute and
the horizon from the last one. For slots that start on whole minutes (what EHRs
publish) that is exactly the arithmetic on the instant: a slot at 14:00 with a
two-hour lead time is bookable up to 12:00:00 either way. For a slot starting
mid-minute, the bounds are narrower by under a minute, never wider. What it buys:
an answer then changes only between two whole minutes, never within one, so that
it can be kept and served again for the rest of the minute
(:mod:`app.availability.answer_memo`) and stay exactly right.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from rules.request import FindRequest
from rules.schema import EffectiveRule, RulesFile

MINUTE = timedelta(minutes=1)
_INSTANT = timedelta(microseconds=1)


def minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def minute_ceil(moment: datetime) -> datetime:
    floor = minute_floor(moment)
    return floor if floor == moment else floor + MINUTE


def first_start(eff: EffectiveRule, now: datetime) -> datetime:
    """The earliest start a visit type can be booked at from ``now`` (its lead time)."""
    return minute_ceil(now) + timedelta(minutes=eff.min_lead_minutes)


def last_start(eff: EffectiveRule, now: datetime) -> datetime:
    """The latest start a visit type can be booked at from ``now`` (its horizon)."""
    return minute_floor(now) + timedelta(days=eff.max_horizon_days)


def next_answer_from(until: datetime) -> datetime:
    """Where the answer after one holding to ``until`` starts: the next instant, or the
    one after it when the next is a whole minute, where both bounds step and an answer
    holds for that instant only (:func:`same_answer_until`)."""
    then = until + _INSTANT
    return then + _INSTANT if then == minute_floor(then) else then


def same_answer_until(request: FindRequest, rules: RulesFile, now: datetime) -> datetime:
    """The latest instant at which composing ``request`` gives the answer it gives at
    ``now``, the slots and rules unchanged: the clock enters composition only through
    :func:`first_start` and :func:`last_start`, so the answer holds to the end of
    ``now``'s minute (``now`` itself when it is a whole minute, where both bounds
    step). It holds longer while neither bound narrows the requested window: until
    the first lead time would begin to (a horizon that does not narrow it now never
    will: it only moves later)."""
    floor = minute_floor(now)
    until = now if floor == now else floor + MINUTE - _INSTANT
    effective = [rules.effective(vt) for vt in rules.visit_types]
    for e in effective:
        if request.end - timedelta(minutes=e.rule.duration_minutes) > last_start(e, now):
            return until
    # first_start(now') <= request.start - lead  <=>  now' <= the minute floor of the latter
    unclamped = min(
        minute_floor(request.start - timedelta(minutes=e.min_lead_minutes)) for e in effective
    )
    return max(until, unclamped) if unclamped >= now else until
