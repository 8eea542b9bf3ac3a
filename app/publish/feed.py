"""The SMART Scheduling Links feed: refresh, manifest and files, over a session.

The published slots live in the cache (``published_slots``, :mod:`app.cache.
publish_queries`): a refresh works out every offer (:mod:`app.publish.offers`),
writes the rows whose offer is new or changed, and turns busy the rows of offers
no longer made. Files then stream from those rows; ``_since`` selects the rows a
refresh changed after that time (busy ones included, so an incremental reader
learns what went). A refresh is due when the cache generation, the claims (holds
and bookings through slotsync) or the rules moved, or ``max_age`` passed (offers
also age out: lead time, horizon, expired holds).

Location, Schedule and PractitionerRole files are small (one line per site,
schedule and visit type, practitioner) and are always served whole, also with
``_since``: a client replaces them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy.orm import Session

from app.availability.catalog import Catalog
from app.availability.slot_index import SlotIndex
from app.cache import publish_queries as q
from app.cache import repository as repo
from app.core.domain import Actor
from app.core.errors import InvalidParameter, NotFound
from app.core.times import millisecond_instant
from rules.appointment_id import ProposalPayload
from rules.offer_memo import OfferMemo
from rules.schema import RulesFile

from . import offers, resources

LOCATIONS = "locations.ndjson"
SCHEDULES = "schedules.ndjson"
PRACTITIONER_ROLES = "practitionerroles.ndjson"
_SLOT_FILE = re.compile(r"slots-(\d{4}-W\d{2})-([1-9]\d{0,5})\.ndjson")


def rules_digest(rules: RulesFile) -> str:
    return hashlib.sha256(rules.model_dump_json().encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Sources:
    """What a refresh reads offers from: the rules, the catalog as the database has it
    (not a cached one: a refresh files what it read under the generation), and the
    API's slot index, offer memo and signer."""

    rules: RulesFile
    catalog: Catalog
    slot_index: SlotIndex
    memo: OfferMemo | None
    sign: Callable[[ProposalPayload], str]


def is_due(
    state: q.PublishState | None,
    generation: int,
    rules: str,
    claims: str,
    now: datetime,
    max_age: timedelta,
) -> bool:
    return (
        state is None
        or state.generation != generation
        or state.rules != rules
        or state.claims != claims
        or now - state.refreshed_at >= max_age
    )


def refresh(
    session: Session,
    sources: Callable[[Session], Sources],
    *,
    now: datetime,
    max_age: timedelta,
    busy_retention: timedelta,
    force: bool = False,
) -> q.PublishState:
    """Bring the published slots up to the cache and rules as of ``now`` (one
    transaction, the state row locked: concurrent refreshers wait, then find it done)."""
    state = q.read_state(session, lock=True)
    # read before the offers, like the slot index reads the generation before the slots
    generation = repo.cache_generation(session)
    claims = q.claims_version(session)
    read = sources(session)  # after the generation: never older than what it is filed under
    digest = rules_digest(read.rules)
    if not force and not is_due(state, generation, digest, claims, now, max_age):
        assert state is not None
        return state
    # whole milliseconds, as transactionTime shows it: a client's _since is then exact;
    # and never a time before the last refresh: _since readers rely on it
    at = now.replace(microsecond=now.microsecond // 1000 * 1000)
    if state is not None and at <= state.refreshed_at:
        at = state.refreshed_at + timedelta(milliseconds=1)
    first, last = offers.horizon(read.rules, now)
    weeks = offers.weekly_offers(
        session,
        rules=read.rules,
        catalog=read.catalog,
        slot_index=read.slot_index,
        memo=read.memo,
        sign=read.sign,
        now=now,
    )
    for start, end, found in weeks:
        held = q.digests_between(session, start, end)
        changed = []
        for slot in found:
            digest_now = _digest(slot)
            if held.pop(slot.id, None) != (digest_now, "free"):
                changed.append(_row(slot, digest_now, at))
        q.upsert_slots(session, changed)
        q.mark_busy(session, [sid for sid, (_, status) in held.items() if status == "free"], at)
    q.mark_busy_outside(session, first, last, at)
    q.purge_busy(session, at - busy_retention)
    new_state = q.PublishState(generation, digest, at, claims)
    q.save_state(session, new_state)
    return new_state


def _digest(slot: offers.FeedSlot) -> str:
    text = f"{slot.schedule}|{slot.state}|{slot.start}|{slot.end}|{slot.proposal_id}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _row(slot: offers.FeedSlot, digest: str, at: datetime) -> dict[str, Any]:
    return {
        "id": slot.id,
        "schedule": slot.schedule,
        "state": slot.state,
        "week": slot.week,
        "start": slot.start,
        "end": slot.end,
        "status": "free",
        "proposal_id": slot.proposal_id,
        "digest": digest,
        "updated_at": at,
    }


# -- manifest -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlotFile:
    """One Slot file: a week's slots in start order, part by part of ``per_file``.

    One file per week rather than per week and state: an organisation in many
    states would otherwise serve many small files, and a request costs more than
    thousands of lines; ``extension.state`` still names the states a file holds."""

    week: str
    part: int  # from 1

    @property
    def name(self) -> str:
        return f"slots-{self.week}-{self.part}.ndjson"


def parse_file_name(name: str) -> str | SlotFile:
    """A file name of the feed: one of the fixed names, or a :class:`SlotFile`."""
    if name in (LOCATIONS, SCHEDULES, PRACTITIONER_ROLES):
        return name
    match = _SLOT_FILE.fullmatch(name)
    if match is None:
        raise NotFound(f"{name!r} is not a file of this feed; the manifest lists them")
    week, part = match.groups()
    return SlotFile(week, int(part))


def parse_since(values: list[str]) -> datetime | None:
    """``_since``: one FHIR instant with its offset (400 otherwise)."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidParameter("_since may be given once", expression="_since")
    value = values[0]
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value:
        raise InvalidParameter(
            f"_since {value!r} is not an instant with a time zone offset,"
            " such as 2026-12-04T18:00:00Z",
            expression="_since",
        )
    return parsed


@dataclass(frozen=True, slots=True)
class Manifest:
    body: bytes
    state: q.PublishState
    etag: str


def slot_files(counts: list[q.FileCount], per_file: int) -> list[tuple[SlotFile, list[str]]]:
    """Each week split into files of at most ``per_file`` rows, with the states of the
    week (each part may hold fewer: a hint, never a promise)."""
    weeks: dict[str, tuple[int, set[str]]] = {}
    for count in counts:
        rows, states = weeks.get(count.week, (0, set()))
        weeks[count.week] = (rows + count.rows, states | ({count.state} - {""}))
    out = []
    for week, (rows, states) in sorted(weeks.items()):
        for part in range(1, max(1, -(-rows // per_file)) + 1):
            out.append((SlotFile(week, part), sorted(states)))
    return out


def manifest(
    session: Session,
    state: q.PublishState,
    *,
    request_url: str,
    files_url: str,
    since: datetime | None,
    per_file: int,
    states: list[str],
) -> Manifest:
    """The ``$bulk-publish`` manifest of the feed as of ``state``; ``states``: the
    states of the published locations (the hint on the files other than Slot files)."""
    query = f"?_since={millisecond_instant(since)}" if since is not None else ""
    output: list[dict[str, Any]] = []
    hint = {"extension": {"state": states}} if states else {}
    for kind, name in (
        ("Location", LOCATIONS),
        ("Schedule", SCHEDULES),
        ("PractitionerRole", PRACTITIONER_ROLES),
    ):
        output.append({"type": kind, "url": f"{files_url}/{name}{query}", **hint})
    for slot_file, states_in in slot_files(q.file_counts(session, since), per_file):
        item: dict[str, Any] = {"type": "Slot", "url": f"{files_url}/{slot_file.name}{query}"}
        if states_in:
            item["extension"] = {"state": states_in}
        output.append(item)
    body = msgspec.json.encode(
        {
            "transactionTime": millisecond_instant(state.refreshed_at),
            "request": request_url,
            "output": output,
            "error": [],
        }
    )
    tag = hashlib.sha256(body).hexdigest()[:32]
    return Manifest(body, state, f'"{tag}"')


# -- files ----------------------------------------------------------------------


@dataclass(slots=True)
class Directory:
    """The small files' resources, worked out from the rules and the catalog."""

    locations: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    practitioner_roles: list[dict[str, Any]] = field(default_factory=list)
    states: list[str] = field(default_factory=list)


def directory(
    rules: RulesFile,
    catalog: Catalog,
    contact: resources.Contact,
    last_updated: datetime,
    published: set[str],
) -> Directory:
    """The Schedules the ``published`` slots name, and the Locations and
    PractitionerRoles those name (so every reference of the feed resolves within it)."""
    out = Directory()
    sites: dict[str, Actor] = {}
    roles: dict[str, tuple[Actor, str | None]] = {}
    for fs in offers.feed_schedules(rules, catalog).values():
        if fs.id not in published:
            continue
        out.schedules.append(
            resources.schedule(
                fs.id,
                fs.ehr_schedule,
                fs.visit_type,
                fs.visit_type_display,
                fs.location,
                fs.practitioners,
                last_updated,
            )
        )
        if fs.location is not None:
            sites[fs.location.ref] = fs.location
        for p in fs.practitioners:
            roles.setdefault(p.ref, (p, fs.location.ref if fs.location else None))
    out.locations = [resources.location(a, contact, last_updated) for _, a in sorted(sites.items())]
    out.practitioner_roles = [
        resources.practitioner_role(p, site, last_updated) for _, (p, site) in sorted(roles.items())
    ]
    out.schedules.sort(key=lambda r: r["id"])
    out.states = sorted({s for a in sites.values() if (s := resources.state_of(a))})
    return out


def small_file(directory: Directory, name: str) -> bytes:
    resources_of = {
        LOCATIONS: directory.locations,
        SCHEDULES: directory.schedules,
        PRACTITIONER_ROLES: directory.practitioner_roles,
    }[name]
    return b"".join(msgspec.json.encode(r) + b"\n" for r in resources_of)


def slot_lines(
    session: Session,
    slot_file: SlotFile,
    *,
    per_file: int,
    since: datetime | None,
    lines: resources.SlotLines,
    batch_bytes: int = 256 * 1024,
) -> Iterator[bytes]:
    """One Slot file's NDJSON, in chunks of about ``batch_bytes``, read row batch by
    row batch from the cache (never the whole file at once)."""
    rows = q.stream_lines(
        session,
        week=slot_file.week,
        offset=(slot_file.part - 1) * per_file,
        limit=per_file,
        since=since,
        free=lines.free,
        busy=lines.busy,
    )
    buffer: list[str] = []
    size = 0
    for text in rows:
        buffer.append(text)
        size += len(text)
        if size >= batch_bytes:
            yield "".join(buffer).encode()
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode()
