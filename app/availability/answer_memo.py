"""Rendered ``$find`` answers kept for as long as they stay exactly right.

Why: a consumer app's traffic asks the same few windows over and over (the next
week of one specialty, next month of anything), and composing and rendering a
broad answer costs ~5 ms of one core; serving the same bytes costs a lookup.

When an answer may be served again, nothing is guessed and nothing has a TTL: an
answer is a function of the request (its URL and parameters), the rules, the
catalog, the slots held (the cache generation), the claims live in its window, and
the clock, which composition reads only through bounds that step at whole minutes
(:mod:`rules.bookable`). Every request reads the inputs (:class:`FindInputs`, one
database round trip, as it always did) and is served from here only when they are
the same ones and its ``now`` is within the span the answer said it holds for
(:attr:`~app.availability.finder.FindAnswer.same_until`): a booking, a sync or a
rules change is visible to the very next request, exactly as without the memo.

Memory is bounded by ``max_bytes`` of compressed bodies, least recently used
forgotten first. They are kept gzip-coded (:func:`pack`), so that a client that
accepts gzip is sent them as they are (:mod:`app.api.encoding`): neither side of
the memo unpacks them for it.
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.availability.catalog import Catalog
from rules.bookable import next_answer_from
from rules.schema import RulesFile

# gzip's container around deflate (zlib's wbits 16 + 15): what Content-Encoding: gzip
# means, so that the kept bytes are the response body as they are
_GZIP = 31


def pack(body: bytes) -> bytes:
    """``body`` gzip-coded, at the fastest level: 0.6 ms for a broad answer's 136 kB,
    which it packs into 24 kB."""
    return zlib.compress(body, 1, wbits=_GZIP)


def unpack(packed: bytes) -> bytes:
    """The body :func:`pack` packed."""
    return zlib.decompress(packed, wbits=_GZIP)


@dataclass(frozen=True, slots=True)
class FindInputs:
    """What a ``$find`` answer is made from besides its request and the clock."""

    rules: RulesFile
    catalog: Catalog
    generation: int  # the cache generation: which slots the index holds
    claimed: frozenset[str]  # slots of the window a live claim hides

    @property
    def index_state(self) -> tuple[int, Collection[str]]:
        return self.generation, self.claimed

    def same_as(self, other: FindInputs, shown: Collection[str]) -> bool:
        """Whether an answer made from ``other``, showing offers of the schedules
        ``shown``, is the answer from these. A catalog read again holds the same
        schedule and actor maps while they are unchanged (:func:`~app.availability.
        catalog.read_catalog`); of its sync times only the oldest of the schedules
        shown counts (``meta.lastUpdated``): syncs confirm some schedule every few
        seconds, and an answer they do not touch stays right. Failed syncs are rare
        and warned of by every answer searching the schedule: compared whole."""
        mine, theirs = self.catalog, other.catalog
        return (
            self.generation == other.generation
            and self.rules is other.rules
            and self.claimed == other.claimed
            and (
                mine is theirs
                or (
                    mine.schedules is theirs.schedules
                    and mine.actors is theirs.actors
                    and mine.errors == theirs.errors
                    and (
                        mine.confirmations is theirs.confirmations
                        or _oldest(mine.confirmations, shown)
                        == _oldest(theirs.confirmations, shown)
                    )
                )
            )
        )


def _oldest(
    confirmations: Mapping[str, datetime], schedule_ids: Collection[str]
) -> datetime | None:
    return min((confirmations[s] for s in schedule_ids if s in confirmations), default=None)


@dataclass(slots=True)
class _Kept:
    inputs: FindInputs
    since: datetime  # the ``now`` it was made at
    until: datetime  # the last ``now`` it holds for, the inputs unchanged
    packed: bytes  # the body, compressed
    shown: tuple[str, ...]  # the schedules of the offers it shows
    next: _Kept | None = None  # the answer from ``until`` on, made ahead
    next_due: bool = False  # a request has been asked to make ``next``


class AnswerMemo:
    """Rendered answers by key (the request's URL and parameters), bounded by the
    total of their compressed bodies.

    Answers are kept gzip-coded: a broad answer's 136 kB of JSON packs into 24 kB (0.6
    ms to pack once, 0.2 ms to unpack for a client that does not take gzip), which
    keeps a whole consumer app's set of windows in a few megabytes of each API
    process.

    Answers expire together at whole minutes (:mod:`rules.bookable`); made again all
    at once, they would stall every request for as long. So a request served in an
    answer's last ``ahead`` is asked (:meth:`due_next`) to have the answer the next
    minute will hold made (by :mod:`app.api.fhir_find` once its response is sent),
    and the first request past ``until`` finds it ready.

    Shared by the threads of one API process; each call holds the lock only for a
    dictionary operation."""

    def __init__(self, max_bytes: int, ahead: timedelta = timedelta(seconds=15)):
        self.max_bytes = max_bytes
        self.ahead = ahead
        self._kept: OrderedDict[Hashable, _Kept] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """The compressed bodies held (what the bound limits)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: Hashable, inputs: FindInputs, now: datetime) -> bytes | None:
        """The answer kept for ``key``, packed (:func:`unpack` gives the body), if made
        from the same inputs and right at ``now``; else None (and a kept answer that
        can never be right again is forgotten)."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is not None and now > kept.until and kept.next is not None:
                kept = self._replace(key, kept, kept.next)
            if kept is None or now < kept.since:  # none, or made after this request
                self.misses += 1
                return None
            if now > kept.until or not kept.inputs.same_as(inputs, kept.shown):
                self._replace(key, kept, None)
                self.misses += 1
                return None
            # the next comparison with these inputs is then one of identity
            kept.inputs = inputs
            self._kept.move_to_end(key)
            self.hits += 1
            return kept.packed

    def due_next(self, key: Hashable, now: datetime) -> datetime | None:
        """The instant from which the caller is to make the answer the memo will need
        next for ``key`` (and give it to :meth:`put` with ``ahead=True``), when ``now``
        is within ``ahead`` of the kept answer's end and no one was asked yet.

        That is :func:`rules.bookable.next_answer_from` the kept answer's end (a
        request on a whole minute it skips is composed)."""
        with self._lock:
            kept = self._kept.get(key)
            if kept is None or kept.next_due or kept.until - now > self.ahead:
                return None
            kept.next_due = True
            return next_answer_from(kept.until)

    def put(
        self,
        key: Hashable,
        inputs: FindInputs,
        since: datetime,
        until: datetime,
        body: bytes,
        shown: Collection[str],
        *,
        ahead: bool = False,
    ) -> bytes:
        """Keep ``body`` as the answer to ``key`` from ``inputs`` for every ``now`` in
        ``[since, until]``, showing offers of the schedules ``shown``; ``ahead``: as
        the answer after the one kept (made for :meth:`due_next`). An answer larger
        than the whole bound is not kept. Returns the body packed, kept or not, as
        :meth:`get` will return it."""
        packed = pack(body)
        if len(packed) > self.max_bytes:
            return packed
        fresh = _Kept(inputs, since, until, packed, tuple(shown))
        with self._lock:
            kept = self._kept.get(key)
            if ahead:
                if kept is None or kept.next is not None or kept.until >= since:
                    return packed  # forgotten or replaced meanwhile
                kept.next = fresh
                self._bytes += len(packed)
            else:
                self._replace(key, kept, fresh)
            while self._bytes > self.max_bytes:
                _, dropped = self._kept.popitem(last=False)
                self._bytes -= _size(dropped)
        return packed

    def _replace(self, key: Hashable, old: _Kept | None, new: _Kept | None) -> _Kept | None:
        """Hold ``new`` (None: nothing) for ``key`` instead of ``old``; the lock held."""
        if old is not None:
            self._bytes -= _size(old)
            del self._kept[key]
        if new is not None:
            self._kept[key] = new
            self._bytes += _size(new)
        return new


def _size(kept: _Kept) -> int:
    return len(kept.packed) + (len(kept.next.packed) if kept.next is not None else 0)
