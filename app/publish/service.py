"""The feed as one API process serves it: refreshes, and the manifest and directory
kept until the published state moves.

The first request of a process with no published feed in the cache waits for the
first refresh; after that a due refresh runs in a background thread (one per
process; the state row lock keeps processes from refreshing at once) and requests
are answered from the last one, so the manifest stays a cached lookup.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.cache import publish_queries as q
from app.cache import repository as repo
from app.cache.db import transaction
from app.settings import Settings
from rules.schema import RulesFile

from . import feed, resources

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Options:
    per_file: int
    max_age: timedelta
    busy_retention: timedelta
    contact: resources.Contact


class Publisher:
    def __init__(
        self,
        engine: Engine,
        sources: Callable[[Session], feed.Sources],
        rules: Callable[[], RulesFile],
        options: Options,
        clock: Callable[[], datetime] | None = None,
    ):
        self._engine = engine
        self._sources = sources
        self._rules = rules
        self._rules_digest: tuple[RulesFile, str] | None = None
        self.options = options
        self._clock = clock or partial(datetime.now, UTC)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._manifests: dict[tuple[object, ...], feed.Manifest] = {}
        self._directory: tuple[q.PublishState, feed.Directory] | None = None
        self.lines = resources.SlotLines(options.contact)

    def refresh_now(self, *, force: bool = False) -> q.PublishState:
        """Refresh in this thread (when due, or ``force``) and return the state."""
        with transaction(self._engine) as session:
            return feed.refresh(
                session,
                self._sources,
                now=self._clock(),
                max_age=self.options.max_age,
                busy_retention=self.options.busy_retention,
                force=force,
            )

    def current(self, session: Session, *, first_wait: float = 10.0) -> q.PublishState | None:
        """The published state to answer from; starts a refresh when one is due. Cheap
        (three one-row reads): every manifest and file request asks. Before the first
        refresh ever, waits up to ``first_wait`` seconds for it (a million slots take
        about a minute); None when it is not done by then."""
        state = q.read_state(session)
        if state is None:
            self._start_background()
            self.wait(first_wait)
            return q.read_state(session)
        due = feed.is_due(
            state,
            repo.cache_generation(session),
            self._digest(self._rules()),
            q.claims_version(session),
            self._clock(),
            self.options.max_age,
        )
        if due:
            self._start_background()
        return state

    def _digest(self, rules: RulesFile) -> str:
        """The rules' digest, worked out once per rules object (every file request asks)."""
        held = self._rules_digest
        if held is None or held[0] is not rules:
            held = self._rules_digest = (rules, feed.rules_digest(rules))
        return held[1]

    def _start_background(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return

            def run() -> None:
                try:
                    self.refresh_now()
                except Exception:  # the feed keeps serving the last refresh
                    log.warning("SMART feed refresh failed", exc_info=True)

            self._thread = threading.Thread(target=run, name="smart-feed-refresh", daemon=True)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a background refresh (at most ``timeout`` seconds)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def manifest(
        self,
        session: Session,
        state: q.PublishState,
        *,
        request_url: str,
        files_url: str,
        since: datetime | None,
    ) -> feed.Manifest:
        key = (state, request_url, files_url, since)
        found = self._manifests.get(key)
        if found is None:
            directory = self.directory(session, state)
            found = feed.manifest(
                session,
                state,
                request_url=request_url,
                files_url=files_url,
                since=since,
                per_file=self.options.per_file,
                states=directory.states,
            )
            if len(self._manifests) >= 64:
                self._manifests.clear()
            self._manifests[key] = found
        return found

    def directory(self, session: Session, state: q.PublishState) -> feed.Directory:
        held = self._directory
        if held is not None and held[0] == state:
            return held[1]
        sources = self._sources(session)
        built = feed.directory(
            sources.rules,
            sources.catalog,
            self.options.contact,
            state.refreshed_at,
            q.published_schedules(session),
        )
        self._directory = (state, built)
        return built


def options_from(settings: Settings) -> Options:
    """The feed's options as configured (``SLOTSYNC_SMART_*``)."""
    base = settings.public_base_url.rstrip("/")
    return Options(
        per_file=settings.smart_slots_per_file,
        max_age=timedelta(seconds=settings.smart_max_age_seconds),
        busy_retention=timedelta(hours=settings.smart_busy_retention_hours),
        contact=resources.Contact(
            identifier_system=f"{settings.ehr_base_url.rstrip('/')}/Location",
            phone=settings.smart_booking_phone,
            location_url=settings.smart_location_url or base,
            booking_link=settings.smart_booking_link,
        ),
    )
