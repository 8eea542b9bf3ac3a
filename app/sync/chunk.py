"""The unit of sync: some schedules (or all) x one day-aligned window, replaced atomically.

``sync_chunk`` reads the EHR's complete answer for the chunk first (every page;
a failure or an incomplete answer raises and the cache is untouched), then writes
it in one transaction: the pure :func:`app.cache.snapshot.plan_snapshot` decides
what to upsert and delete, and the day marks decide what may be written at all.

Why day marks: a chunk's data is as fresh as the moment its fetch *started*. The
transaction row-locks the schedules, then skips every (schedule, day) already
confirmed by a fetch that started later (a notification refresh that overtook a
slow load chunk, say). Older data therefore never lands on fresher data, whatever
order workers finish in, with or without the Redis locks that merely keep two
workers from doing the same fetch at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.cache import claims
from app.cache import repository as repo
from app.cache.db import transaction
from app.cache.snapshot import plan_snapshot
from app.core.domain import Actor, Schedule, Slot
from app.core.occupancy import ACTIVE_STATUSES, mark_taken, taken_slot_ids
from app.ehr.client import EhrClient
from app.ehr.errors import EhrProtocolError, EhrRejected
from app.fhir.parse import parse_schedule

from .windows import DAY, day_start, days_in, is_midnight, utcnow


class IncompleteAnswer(EhrProtocolError):
    """The pages held fewer slots than the EHR's own ``Bundle.total`` announced."""


log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Schedules (sorted ids; None = every schedule) x the day-aligned window [start, end)."""

    schedule_ids: tuple[str, ...] | None
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if not (is_midnight(self.start) and is_midnight(self.end) and self.start < self.end):
            raise ValueError(f"chunk window must be whole UTC days: {self.start}..{self.end}")
        if self.schedule_ids is not None:
            if not self.schedule_ids:
                raise ValueError("a chunk names at least one schedule (or None for all)")
            object.__setattr__(self, "schedule_ids", tuple(sorted(set(self.schedule_ids))))

    def holds(self, slot: Slot) -> bool:
        """Whether a fetched slot belongs to this chunk (the EHR may answer more)."""
        if not self.start <= slot.start < self.end:
            return False
        return self.schedule_ids is None or slot.schedule_id in self.schedule_ids

    def describe(self) -> str:
        scope = "*" if self.schedule_ids is None else ",".join(self.schedule_ids)
        return f"{scope} {self.start.date()}..{self.end.date()}"


@dataclass(frozen=True, slots=True)
class ChunkResult:
    seen: int
    upserted: int
    deleted: int
    unchanged: int
    skipped_days: int = 0  # (schedule, day) pairs left alone: a newer fetch had written them
    rejected: int = 0  # malformed resources the EHR sent, left out
    covered: bool = False  # not fetched: a fetch that started later had read it already


@dataclass(slots=True)
class FetchedAnswer:
    """The EHR's complete answer for a chunk, already reduced to the chunk."""

    slots: list[Slot] = field(default_factory=list)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    actors: dict[str, Actor] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    pages: int = 0
    taken: set[str] = field(default_factory=set)  # slots of the answer an Appointment holds


def fetch_chunk(
    client: EhrClient,
    chunk: Chunk,
    known: Mapping[str, Schedule],
    *,
    on_page: Callable[[], Any] | None = None,
    refetch_attempts: int = 1,
) -> FetchedAnswer:
    """Read every page of the chunk from the EHR; raise if the answer stays incomplete.

    ``Bundle.total`` is the number of matches when the search began. Fewer slots
    across the pages mean that a page was lost (cut short, a missing ``next`` link),
    or that slots stopped matching while we paged (booked at the EHR meanwhile). The
    comparison is only sound for one reading of the window, so the window is read
    again from its first page, up to ``refetch_attempts`` times, before the chunk
    counts as failed; a partial window is never returned. An EHR that sends no total
    is taken at its pages.

    ``known`` supplies the cached actors of the chunk's schedules, which the STU3
    ``$prefetch`` needs as filters (it cannot name a schedule). ``on_page`` runs
    after each page (used to keep a lock alive during long answers).
    """
    for attempt in range(1, refetch_attempts + 1):
        try:
            return _fetch_once(client, chunk, known, on_page)
        except IncompleteAnswer as exc:
            if attempt >= refetch_attempts:
                raise
            log.info("%s: %s; reading the window again from its first page", chunk.describe(), exc)
    raise AssertionError("unreachable")  # pragma: no cover


def _fetch_once(
    client: EhrClient,
    chunk: Chunk,
    known: Mapping[str, Schedule],
    on_page: Callable[[], Any] | None,
) -> FetchedAnswer:
    wanted: list[Schedule] | None = None
    if chunk.schedule_ids is not None:
        wanted = [known.get(sid) or Schedule(id=sid, actor_refs=()) for sid in chunk.schedule_ids]
    answer = FetchedAnswer()
    total: int | None = None
    matched = 0  # a count, not the ids: an unfiltered answer can be a whole window
    for page in client.window_pages(chunk.start, chunk.end, wanted):
        answer.pages += 1
        if answer.pages == 1 and isinstance(page.total, int):
            total = page.total
        matched += len(page.slots)
        answer.slots.extend(s for s in page.slots if chunk.holds(s))
        answer.schedules.update(
            (s.id, s)
            for s in page.schedules
            if chunk.schedule_ids is None or s.id in chunk.schedule_ids
        )
        answer.actors.update((a.ref, a) for a in page.actors)
        answer.rejected.extend(page.rejected)
        if on_page is not None:
            on_page()
    received = matched + len(answer.rejected)
    if total is not None and received < total:
        raise IncompleteAnswer(f"EHR announced {total} slots but sent {received}")
    if client.version.slots_need_appointments:
        _leave_out_taken(client, chunk, answer, on_page)
    return answer


# An appointment starts at its first slot: one holding a slot of the window may start
# this much earlier (the longest slot run the composer joins).
APPOINTMENT_LOOKBACK = timedelta(hours=12)


def _leave_out_taken(
    client: EhrClient, chunk: Chunk, answer: FetchedAnswer, on_page: Callable[[], Any] | None
) -> None:
    """Mark the answer's slots that an active Appointment references as taken (busy).

    Read after the slots: a booking made meanwhile is either seen here or is newer
    than the fetch, and then its claim (confirmed after the fetch started) stands.
    """
    offered = {s.id for s in answer.slots if s.status == "free"}
    if not offered:
        return
    appointments: list[dict[str, Any]] = []
    for page in client.appointment_pages(
        chunk.start - APPOINTMENT_LOOKBACK, chunk.end, statuses=ACTIVE_STATUSES
    ):
        appointments.extend(
            r
            for r in (e.get("resource") or {} for e in page.get("entry") or ())
            if r.get("resourceType") == "Appointment"
        )
        if on_page is not None:
            on_page()
    answer.taken = taken_slot_ids(appointments) & offered
    if answer.taken:
        answer.slots = mark_taken(answer.slots, answer.taken)


def _fill_missing_schedules(client: EhrClient, session: Session, answer: FetchedAnswer) -> None:
    """Read schedules that slots reference but neither the answer nor the cache holds."""
    wanted = {s.schedule_id for s in answer.slots} - set(answer.schedules)
    if not wanted:
        return
    known = set(repo.schedules_by_id(session, wanted))
    for sid in sorted(wanted - known):
        try:
            answer.schedules[sid] = parse_schedule(client.read(f"Schedule/{sid}"))
        except EhrRejected as exc:
            if exc.status != 404:
                raise
            # an EHR slot pointing at no schedule cannot be offered: leave it out
            answer.slots = [s for s in answer.slots if s.schedule_id != sid]


def write_chunk(
    session: Session, chunk: Chunk, answer: FetchedAnswer, fetch_started: datetime
) -> ChunkResult:
    """Merge a complete answer into the cache inside the caller's transaction."""
    scope = None if chunk.schedule_ids is None else set(chunk.schedule_ids)
    locked = repo.lock_schedules(session, scope)

    changed_actors = _changed(repo.actors_by_ref(session, answer.actors), answer.actors)
    repo.upsert_actors(session, changed_actors, fetch_started)
    cached_schedules = repo.schedules_by_id(session, answer.schedules)
    # Written when changed, and when not locked above (new, or new since): the upsert
    # locks it, so every schedule the slots may name is held until commit.
    repo.upsert_schedules(
        session,
        [
            s
            for sid, s in answer.schedules.items()
            if sid not in locked or cached_schedules.get(sid) != s
        ],
        fetch_started,
    )
    held = locked.union(answer.schedules)

    fresher = repo.fresher_days(session, scope, chunk.start, chunk.end, fetch_started)

    def writable(slot: Slot) -> bool:
        # most writes (every initial load) find no fresher day: skip the per-slot day
        return not fresher or (slot.schedule_id, day_start(slot.start)) not in fresher

    cached = {
        sid: s
        for sid, s in repo.cached_slots(session, scope, chunk.start, chunk.end).items()
        if writable(s)
    }
    plan = plan_snapshot(cached, answer.slots, in_scope=writable)
    repo.check_schedules_held(plan.upserts, held)
    written = repo.apply_snapshot(
        session,
        plan,
        fetch_started,
        cached=cached,
        moved=lambda new: _not_fresher_elsewhere(session, new, fetch_started),
    )
    # A booking the EHR now shows (slot busy, taken by an Appointment, or gone) no longer
    # needs its claim; one whose slot the EHR still offers keeps it (see reconcile_taken).
    claims.reconcile_taken(
        session,
        schedule_ids=scope,
        start=chunk.start,
        end=chunk.end,
        offered=[s.id for s in answer.slots if s.status == "free"],
        fetched_at=fetch_started,
        in_scope=lambda c: not fresher or (c.schedule_id, day_start(c.start)) not in fresher,
    )

    # The scope's cached schedules are those this transaction holds (a schedule of the
    # scope the EHR does not know is neither locked nor written): no second read of them.
    marked = sorted(held if scope is None else held & scope)
    repo.mark_days(session, marked, days_in(chunk.start, chunk.end), fetch_started, fresher)
    repo.confirm_schedules(session, scope, chunk.start, chunk.end, fetch_started)
    return ChunkResult(
        seen=len(answer.slots),
        upserted=written,
        deleted=len(plan.deletes),
        unchanged=plan.unchanged,
        skipped_days=len(fresher),
        rejected=len(answer.rejected),
    )


def _not_fresher_elsewhere(
    session: Session, new: Sequence[Slot], fetch_started: datetime
) -> list[Slot]:
    """Of slots new to the chunk's scope, those to write: not the ones that a newer fetch
    has placed on another (schedule, day).

    A slot moved at the EHR while this fetch paged: a newer refresh of its new day
    already wrote it there, and marked only that day. Writing this fetch's older copy
    (on the old day) would move it back, where no later refresh of the new day sees it.
    """
    positions = repo.slot_positions(session, [s.id for s in new])
    if not positions:
        return list(new)
    days = [day_start(start) for _, start in positions.values()]
    fresher = repo.fresher_days(
        session,
        {schedule for schedule, _ in positions.values()},
        min(days),
        max(days) + DAY,
        fetch_started,
    )
    if not fresher:
        return list(new)
    stale = {
        sid
        for sid, (schedule, start) in positions.items()
        if (schedule, day_start(start)) in fresher
    }
    return [s for s in new if s.id not in stale]


K = TypeVar("K")
V = TypeVar("V")


def _changed(cached: Mapping[K, V], fetched: Mapping[K, V]) -> list[V]:
    return [value for key, value in fetched.items() if cached.get(key) != value]


def sync_chunk(
    engine: Engine,
    client: EhrClient,
    chunk: Chunk,
    *,
    clock: Callable[[], datetime] = utcnow,
    on_page: Callable[[], Any] | None = None,
    in_transaction: Callable[[Session, ChunkResult], None] | None = None,
    refetch_attempts: int = 1,
) -> ChunkResult:
    """Fetch the chunk completely, then replace it in the cache in one transaction.

    ``in_transaction`` runs inside the write's transaction (bookkeeping that must
    commit, or not, together with the data).
    """
    fetch_started = clock()
    with transaction(engine) as session:
        known = (
            repo.schedules_by_id(session, chunk.schedule_ids)
            if chunk.schedule_ids is not None
            else {}
        )
    answer = fetch_chunk(client, chunk, known, on_page=on_page, refetch_attempts=refetch_attempts)
    with transaction(engine) as session:
        _fill_missing_schedules(client, session, answer)
    with transaction(engine) as session:
        result = write_chunk(session, chunk, answer, fetch_started)
        if in_transaction is not None:
            in_transaction(session, result)
    return result
