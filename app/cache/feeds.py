"""SQL of the EHR change feed: our Subscription(s) and whether they are heard from.

One row per (webhook endpoint, FHIR version). Without a public URL there is no
Subscription and the row (endpoint ``""``, status ``off``) only carries the
polling state. ``feed_state`` is ``live`` while heartbeats or events arrive in
time and ``stale`` otherwise (then the watchdog polls).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from .models import SubscriptionRow


def get_or_create(
    session: Session, *, endpoint: str, fhir_version: str, heartbeat_seconds: int, now: datetime
) -> SubscriptionRow:
    row = session.scalars(
        select(SubscriptionRow).where(
            SubscriptionRow.endpoint == endpoint, SubscriptionRow.fhir_version == fhir_version
        )
    ).first()
    if row is not None:
        return row
    row = SubscriptionRow(
        endpoint=endpoint,
        fhir_version=fhir_version,
        status="off" if not endpoint else "requested",
        heartbeat_seconds=heartbeat_seconds,
        feed_state="stale",
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row


def all_feeds(session: Session) -> list[SubscriptionRow]:
    return list(session.scalars(select(SubscriptionRow).order_by(SubscriptionRow.id)))


def record_subscription(
    session: Session,
    feed_id: int,
    *,
    ehr_id: str | None,
    status: str,
    now: datetime,
    error: str | None = None,
) -> None:
    """The EHR's answer about our Subscription. ``creating`` clears the id (a new one is
    being made). A handshake heard before the EHR's answer to the creation reached us
    has made the feed ``active`` already: the answer's ``requested`` does not undo it."""
    values: dict[str, object] = {"status": status, "updated_at": now, "last_error": error}
    if ehr_id is not None or status == "creating":
        values["ehr_id"] = ehr_id
    stmt = update(SubscriptionRow).where(SubscriptionRow.id == feed_id)
    if status == "requested" and ehr_id is not None:
        stmt = stmt.where((SubscriptionRow.status != "active") | (SubscriptionRow.ehr_id != ehr_id))
    session.execute(stmt.values(**values))


def reset_numbering(session: Session, feed_id: int) -> None:
    """A new EHR Subscription counts its events from zero again: its first event is
    number 1, so a first one numbered higher (some were lost) is a gap like any other."""
    session.execute(
        update(SubscriptionRow).where(SubscriptionRow.id == feed_id).values(last_event_number=0)
    )


@dataclass(frozen=True, slots=True)
class Heard:
    feed_id: int
    missed_events: bool  # event numbers jumped: some notification never reached us
    was_stale: bool


def heard(
    session: Session,
    *,
    ehr_id: str | None,
    kind: str,
    numbers: tuple[int, ...],
    events_since_start: int | None,
    now: datetime,
) -> list[Heard]:
    """Record a notification on the feed(s) it belongs to; report gaps in the numbering.

    Feeds are matched by the EHR's Subscription id when the notification names one,
    otherwise every subscribed feed counts it (the Argonaut payload names none).
    """
    stmt = select(SubscriptionRow).where(SubscriptionRow.status != "off").with_for_update()
    if ehr_id is not None:
        stmt = stmt.where(SubscriptionRow.ehr_id == ehr_id)
    rows = list(session.scalars(stmt))
    if not rows and ehr_id is not None and kind == "handshake":
        # a Subscription whose creation has not returned yet: this is its id
        creating = select(SubscriptionRow).where(SubscriptionRow.status == "creating")
        rows = list(session.scalars(creating.with_for_update()))
    out = []
    for row in rows:
        last = row.last_event_number
        missed, number = _numbering(last, kind, numbers, events_since_start)
        catching_up = missed or (row.feed_state == "catching-up" and kind != "handshake")
        values: dict[str, object] = {
            "last_heard_at": now,
            "feed_state": "catching-up" if catching_up else "live",
            "updated_at": now,
        }
        if kind == "handshake":
            values["status"] = "active"
            if ehr_id is not None:
                values["ehr_id"] = ehr_id
        if number != last:
            values["last_event_number"] = number
        session.execute(
            update(SubscriptionRow).where(SubscriptionRow.id == row.id).values(**values)
        )
        out.append(Heard(feed_id=row.id, missed_events=missed, was_stale=row.feed_state != "live"))
    return out


def _numbering(
    last: int | None, kind: str, numbers: tuple[int, ...], events_since_start: int | None
) -> tuple[bool, int | None]:
    """Whether events were missed, and the feed's last event number after this notification.

    The numbers of the events delivered count; the Subscription's event count only when
    there are none (a heartbeat): an event notification may count events whose own
    notifications are still on their way, and taking that count as heard would hide
    the loss of one of them.
    """
    counted = numbers or (() if events_since_start is None else (events_since_start,))
    if not counted:
        return False, last
    lowest, highest = min(counted), max(counted)
    if kind == "handshake" or last is None:
        return False, highest
    if highest < last:
        # Counting went backwards: the EHR restarted its numbering (a recreated or
        # restored Subscription) or delivered an old notification late; the two look
        # alike. Read as a restart: taken for a late delivery, a restart would hide every
        # gap until the new count passed the old one; a late delivery read as a restart
        # costs at most one needless poll.
        return (lowest > 1 if numbers else lowest > 0), highest
    missed = lowest > last + 1 if numbers else lowest > last
    return missed, highest


def caught_up(session: Session, now: datetime) -> None:
    """A poll succeeded: lost notifications are accounted for. The EHR's numbering goes
    on, and so does ours: the next event must follow the last one heard, or it is a gap."""
    session.execute(
        update(SubscriptionRow)
        .where(SubscriptionRow.feed_state == "catching-up")
        .values(feed_state="live", updated_at=now)
    )


def mark_stale(session: Session, feed_id: int, now: datetime) -> bool:
    """live -> stale; True only for the caller that made the transition."""
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(SubscriptionRow)
        .where(SubscriptionRow.id == feed_id, SubscriptionRow.feed_state == "live")
        .values(feed_state="stale", updated_at=now)
    )
    return result.rowcount == 1


def record_poll(
    session: Session, feed_id: int, *, now: datetime, cursor: datetime | None, error: str | None
) -> None:
    """A poll ended: a success moves the cursor (when it saw a change) and clears the error."""
    values: dict[str, object] = {"last_polled_at": now, "updated_at": now}
    if cursor is not None:
        values["poll_cursor"] = cursor
    values["last_error"] = error[:2000] if error is not None else None
    session.execute(update(SubscriptionRow).where(SubscriptionRow.id == feed_id).values(**values))


def advance_cursor(session: Session, cursor: datetime) -> None:
    """After a complete load nothing older than its start needs polling for."""
    session.execute(
        update(SubscriptionRow)
        .where((SubscriptionRow.poll_cursor.is_(None)) | (SubscriptionRow.poll_cursor < cursor))
        .values(poll_cursor=cursor)
    )
