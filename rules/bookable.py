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

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from rules.request import FindRequest
from rules.schema import EffectiveRule, RulesFile, effective_rules

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


# Where the slots a request reads go on past an instant: the first start after it (and
# before the request's end), None when none does.
NextStart = Callable[[datetime], datetime | None]
_LATEST = datetime.max.replace(tzinfo=UTC)


def same_answer_until(
    request: FindRequest, rules: RulesFile, now: datetime, next_start: NextStart | None = None
) -> datetime:
    """The latest instant at which composing ``request`` gives the answer it gives at
    ``now``, the slots and rules unchanged: the clock enters composition only through
    :func:`first_start` and :func:`last_start`, so the answer holds to the end of
    ``now``'s minute (``now`` itself when it is a whole minute, where both bounds
    step). It holds longer while the lead time does not narrow the requested window,
    until the first lead time would begin to (a later instant only moves it later).

    Where a horizon narrows the window (a window reaching the horizon's end), it moves
    a minute further every minute, and used to end the answer with the minute. With
    ``next_start`` (the slots read), it holds until the horizon reaches the next slot
    start past it: an offer starts where a slot of its first asset starts, so only
    then can one more be offered. Slots every 15 minutes keep such an answer for 15
    minutes, not one: each minute's making again of every answer reaching the horizon
    ran beside the requests served, and made them wait for the interpreter."""
    floor = minute_floor(now)
    until = now if floor == now else floor + MINUTE - _INSTANT
    effective = effective_rules(rules)
    # first_start(now') <= request.start - lead  <=>  now' <= the minute floor of the latter
    unclamped = min(
        minute_floor(request.start - timedelta(minutes=e.min_lead_minutes)) for e in effective
    )
    lead_until = max(until, unclamped) if unclamped >= now else until
    asked = _asked(request, rules, effective)
    narrowing = [e for e in asked if request.end - _length(e) > last_start(e, now)]
    if not narrowing:
        return lead_until
    return max(until, min(lead_until, _horizon_until(request, narrowing, now, next_start)))


def _length(eff: EffectiveRule) -> timedelta:
    return timedelta(minutes=eff.rule.duration_minutes)


def _asked(
    request: FindRequest, rules: RulesFile, effective: tuple[EffectiveRule, ...]
) -> list[EffectiveRule]:
    """The visit types composing ``request`` plans (all of them when it names none)."""
    if not request.visit_types:
        return list(effective)
    wanted = {id(vt) for code in request.visit_types for vt in rules.visit_types_for(code)}
    return [e for e in effective if id(e.rule) in wanted]


def _horizon_until(
    request: FindRequest,
    narrowing: list[EffectiveRule],
    now: datetime,
    next_start: NextStart | None,
) -> datetime:
    """The latest instant before the horizon of a visit type of ``narrowing`` reaches a
    slot start it does not reach at ``now``, or the window's start (``now`` when that
    is not known)."""
    if next_start is None or request.patient is not None:
        return now  # a patient's eligibility is judged on the window's last date too
    out = _LATEST
    for e in narrowing:
        reached = last_start(e, now)
        earliest = max(request.start, first_start(e, now))
        # a window the horizon has not reached yet: nothing bookable, and a notice says
        # so until the horizon reaches its start (no offer can start before it)
        beyond = earliest if earliest > reached else next_start(reached)
        if beyond is not None:
            # last_start(e, now') < beyond  <=>  minute_floor(now') < beyond - horizon
            horizon = timedelta(days=e.max_horizon_days)
            out = min(out, minute_ceil(beyond - horizon) - _INSTANT)
    return out
