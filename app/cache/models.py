"""SQLAlchemy 2 typed models of the slot cache.

Times are stored as UTC. SQLite has no time zone type, so :class:`UTCDateTime`
normalises on the way in and re-attaches UTC on the way out: the rest of the
code only ever sees aware datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

Codes = JSON().with_variant(JSONB(), "postgresql")
# a JSON value that may be absent: None is SQL NULL, not the JSON ``null``
OptionalJSON = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetime stored as UTC (timestamptz on PostgreSQL, ISO text on SQLite)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime reached the cache; times must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class ActorRow(Base):
    """Practitioners, locations (clinics and rooms), devices, services the slots belong to."""

    __tablename__ = "actors"

    ref: Mapped[str] = mapped_column(String(200), primary_key=True)  # "Practitioner/123"
    resource_type: Mapped[str] = mapped_column(String(40), index=True)
    display: Mapped[str | None] = mapped_column(Text)
    codes: Mapped[list[str]] = mapped_column(Codes, default=list)
    address: Mapped[str | None] = mapped_column(Text)
    part_of: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str | None] = mapped_column(String(64))
    # a location's FHIR Address (line, city, district, state, postalCode, country), its
    # ContactPoints (system, value, use) and Location.position (latitude, longitude)
    postal_address: Mapped[dict[str, Any] | None] = mapped_column(OptionalJSON)
    telecom: Mapped[list[dict[str, str]]] = mapped_column(
        Codes, nullable=False, default=list, server_default="[]"
    )
    position: Mapped[dict[str, float] | None] = mapped_column(OptionalJSON)
    last_confirmed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ScheduleRow(Base):
    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # EHR Schedule id
    actor_refs: Mapped[list[str]] = mapped_column(Codes, default=list)
    service_types: Mapped[list[str]] = mapped_column(Codes, default=list)
    specialties: Mapped[list[str]] = mapped_column(Codes, default=list)
    horizon_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    horizon_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    covered_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    covered_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_confirmed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Bumped in the transaction that changes any of this schedule's slots, so that an
    # API process holding them in memory (app.availability.slot_index) knows to re-read them.
    slots_version: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default="0"
    )


class ScheduleActorRow(Base):
    """Which actors a schedule serves: the index behind provider/location filters."""

    __tablename__ = "schedule_actors"

    schedule_id: Mapped[str] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True
    )
    actor_ref: Mapped[str] = mapped_column(String(200), primary_key=True)

    __table_args__ = (Index("ix_schedule_actors_actor", "actor_ref", "schedule_id"),)


class SlotRow(Base):
    __tablename__ = "slots"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # EHR Slot id
    # A schedule of ``schedules``, without a foreign key: checked row by row it was a third
    # of a load's COPY. The writers keep it (see migration 0012).
    schedule_id: Mapped[str] = mapped_column(String(200), nullable=False)
    start: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    end: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    # The slot's codes, as a row of ``code_sets`` (no foreign key, as for the schedule:
    # code sets are only ever added, and the writers add them first, see migration 0013).
    code_set_id: Mapped[int] = mapped_column(Integer, nullable=False)
    overbooked: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str | None] = mapped_column(Text)
    version_id: Mapped[str | None] = mapped_column(String(64))
    ehr_last_updated: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_confirmed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (
        # the $find query: slots of some schedules overlapping a time window
        Index("ix_slots_schedule_start", "schedule_id", "start"),
        Index("ix_slots_start", "start"),
    )


class CodeSetRow(Base):
    """A distinct combination of a slot's service types, specialties and appointment
    types. An organisation's slots repeat a few dozen of them: a million slots name
    them by this small id instead of carrying three JSON lists each, which PostgreSQL
    parsed on every write (a quarter of a load's COPY) and stored a million times."""

    __tablename__ = "code_sets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(Text, nullable=False)  # the three lists, as JSON
    service_types: Mapped[list[str]] = mapped_column(Codes, nullable=False)
    specialties: Mapped[list[str]] = mapped_column(Codes, nullable=False)
    appointment_types: Mapped[list[str]] = mapped_column(Codes, nullable=False)

    __table_args__ = (Index("ix_code_sets_key", "key", unique=True),)


class SyncRunRow(Base):
    """One load/refresh/poll: what ran, when, how it ended and what it changed."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))  # initial-load | resync | follow-up
    scope: Mapped[str | None] = mapped_column(Text)  # schedule id or "*"
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # scheduled | running | ok | failed
    slots_seen: Mapped[int] = mapped_column(Integer, default=0)
    slots_upserted: Mapped[int] = mapped_column(Integer, default=0)
    slots_deleted: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # Last sign of life of its work (a chunk claimed, finished or put off): the reaper's clock.
    progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Follow-ups: a resync of exactly the windows a run failed, ``generation`` deep in the
    # chain that started at ``root_run_id``, due at ``due_at`` (status ``scheduled`` until then).
    parent_run_id: Mapped[int | None] = mapped_column(Integer)
    root_run_id: Mapped[int | None] = mapped_column(Integer)
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A failed run whose follow-ups later synced every window it missed.
    recovered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Chunked runs: counted by the chunks themselves as they finish (see sync_chunks).
    chunks_total: Mapped[int] = mapped_column(Integer, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    chunks_failed: Mapped[int] = mapped_column(Integer, default=0)
    # Id of the task that planned the run, so a redelivered planner finds its run again.
    token: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_sync_runs_started", "started_at"),
        Index("ix_sync_runs_token", "token", unique=True),
        Index("ix_sync_runs_status", "status"),
        Index("ix_sync_runs_parent", "parent_run_id"),
        # the last complete full load (every status read, the console's overview)
        Index("ix_sync_runs_kind_finished", "kind", "status", "finished_at"),
    )


class SyncChunkRow(Base):
    """One unit of a run: some schedules (or all) x one window, an atomic snapshot replace.

    Its status moves pending -> ok | failed exactly once; that transition is what
    counts it in its run, so a redelivered chunk can never be counted twice. While
    pending, an attempt holds it by a lease (``claim_token``, kept alive by
    ``heartbeat_at``): a duplicate message finds it held and leaves it, and the reaper
    finds the lease of a dead worker expired and sends the chunk again.
    """

    __tablename__ = "sync_chunks"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("sync_runs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_ids: Mapped[list[str] | None] = mapped_column(Codes)  # None = every schedule
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))  # pending | ok | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    slots_seen: Mapped[int] = mapped_column(Integer, default=0)
    slots_upserted: Mapped[int] = mapped_column(Integer, default=0)
    slots_deleted: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # retry put off
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last sent to a worker

    __table_args__ = (
        # The few pending chunks among the hundreds of thousands a week of runs leaves:
        # which runs hold a live lease (stuck runs, on every status read) and the reaper.
        Index(
            "ix_sync_chunks_pending",
            "run_id",
            "heartbeat_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )


class CacheGenerationRow(Base):
    """One row: a counter bumped by every transaction that changes cached slots.

    Each such transaction takes the next value and files it as the ``slots_version``
    of the schedules it changed. The row lock makes those transactions commit in
    counter order, so a reader that has seen value N has seen every change up to N:
    an API process asks for this one row per request and reads schedules again
    only when it moved.
    """

    __tablename__ = "cache_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, nullable=False)


class SyncMarkRow(Base):
    """When each (schedule, UTC day) was last confirmed by the EHR.

    The value is the moment the fetch that wrote the day *started*. A write skips
    days whose mark is newer than its own fetch, so a slow or redelivered fetch can
    never put older data over fresher data, whatever order workers finish in.
    """

    __tablename__ = "sync_marks"

    schedule_id: Mapped[str] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)  # 00:00 UTC
    confirmed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_sync_marks_day", "day"),)


class SubscriptionRow(Base):
    """An EHR Subscription pointing at our webhook, and the state of its feed."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ehr_id: Mapped[str | None] = mapped_column(String(200))  # null until the EHR created it
    fhir_version: Mapped[str] = mapped_column(String(8))
    endpoint: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(32))  # creating|requested|active|error|off
    heartbeat_seconds: Mapped[int | None] = mapped_column(Integer)
    last_heard_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    feed_state: Mapped[str] = mapped_column(String(16))  # live | stale
    last_event_number: Mapped[int | None] = mapped_column(BigInteger)
    poll_cursor: Mapped[datetime | None] = mapped_column(UTCDateTime)  # EHR lastUpdated seen
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_subscriptions_endpoint", "endpoint", "fhir_version", unique=True),)


class SlotClaimRow(Base):
    """A slot held or booked through slotsync: hidden from ``$find`` until it expires.

    The primary key makes a slot claimable by one request at a time across every
    API process: a claim is inserted *before* the EHR is asked, so the EHR sees at
    most one hold/book attempt per slot at a time. ``kind`` moves pending -> held |
    booked as the EHR answers; ``confirmed_at`` is when the EHR accepted it (null
    while pending), which lets a later sync tell stale claims from fresh ones.
    Slot times and schedule are copied here because the sync may delete the slot
    row (busy) while the claim still matters.
    """

    __tablename__ = "slot_claims"

    slot_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    claim_id: Mapped[str] = mapped_column(String(64), nullable=False)
    appointment_id: Mapped[str | None] = mapped_column(String(200))  # EHR Appointment id
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # pending | held | booked
    schedule_id: Mapped[str] = mapped_column(String(200), nullable=False)
    slot_start: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    slot_end: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_slot_claims_claim", "claim_id"),
        Index("ix_slot_claims_appointment", "appointment_id"),
    )


class EhrCapabilitiesRow(Base):
    """The EHR's CapabilityStatement as last read, summarised (app.fhir.ehr_capabilities)."""

    __tablename__ = "ehr_capabilities"

    base_url: Mapped[str] = mapped_column(String(500), primary_key=True)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    summary: Mapped[str | None] = mapped_column(Text)  # JSON of EhrCapabilities.as_json()
    error: Mapped[str | None] = mapped_column(Text)  # the last read failed: why


class AppointmentHoldRow(Base):
    """A hold made as a ``pending`` Appointment at an EHR without ``$hold``.

    Such an EHR never ends a hold by itself: when ``expires_at`` passes without a
    booking, slotsync cancels the Appointment there (a periodic job) and forgets the
    row. Booking or cancelling the hold through us forgets it too.
    """

    __tablename__ = "appointment_holds"

    appointment_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_appointment_holds_expires", "expires_at"),)


class PublishedSlotRow(Base):
    """One Slot of the SMART Scheduling Links feed (app.publish): an offer the rules
    make, kept so that the feed streams from rows and ``_since`` can say what changed.

    ``status`` turns ``busy`` when the offer is no longer made (booked, closed, rules
    changed); such rows stay for a retention period so that incremental readers learn
    of it. ``updated_at`` is the feed refresh that last changed the row.
    """

    __tablename__ = "published_slots"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # feed Slot id
    schedule: Mapped[str] = mapped_column(String(64), nullable=False)  # feed Schedule id
    state: Mapped[str] = mapped_column(String(16), nullable=False)  # "MA", "" when unknown
    week: Mapped[str] = mapped_column(String(8), nullable=False)  # ISO week of start, "2026-W49"
    start: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    end: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    status: Mapped[str] = mapped_column(String(8), nullable=False)  # free | busy
    proposal_id: Mapped[str] = mapped_column(Text, nullable=False)  # the $find appointment id
    digest: Mapped[str] = mapped_column(String(32), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (
        Index("ix_published_slots_file", "week", "start", "id"),
        Index("ix_published_slots_start", "start"),
        Index("ix_published_slots_updated", "updated_at"),
    )


class PublishStateRow(Base):
    """One row: what the published feed was last worked out from, and when."""

    __tablename__ = "publish_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False)  # cache generation
    rules: Mapped[str] = mapped_column(String(64), nullable=False)  # digest of the rules
    # claims (holds, bookings through slotsync) as last seen: they change $find's offers
    # without moving the cache generation
    claims: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class SyncSampleRow(Base):
    """The cache's size and freshness, sampled every minute (``slotsync.sample``):
    the history behind the ops console's 24 h charts, so no page counts the slots."""

    __tablename__ = "sync_samples"

    sampled_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    slots_cached: Mapped[int] = mapped_column(BigInteger, nullable=False)
    schedules: Mapped[int] = mapped_column(Integer, nullable=False)
    max_lag_seconds: Mapped[float | None] = mapped_column(Float)  # most lagging schedule
    stale_schedules: Mapped[int] = mapped_column(Integer, nullable=False)
    # the overlay's live claims at that moment (holds and bookings through slotsync)
    claims_held: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    claims_booked: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class BookingCountRow(Base):
    """Holds, bookings, cancellations and expired holds through slotsync, counted per
    UTC hour as they happen (``app.cache.booking_counts``): the ops console's Bookings
    chart. A counter, not an event log: no ids, no patient, nothing to protect."""

    __tablename__ = "booking_counts"

    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)  # hh:00 UTC
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # hold|book|cancel|expire
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)


class ScheduleSlotCountRow(Base):
    """How many slots a schedule had cached when its ``slots_version`` was
    ``counted_version`` (``app.cache.slot_counts``): the sampler recounts only the
    schedules whose version moved, instead of counting every cached slot a minute."""

    __tablename__ = "schedule_slot_counts"

    schedule_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    slots: Mapped[int] = mapped_column(BigInteger, nullable=False)
    counted_version: Mapped[int] = mapped_column(BigInteger, nullable=False)
