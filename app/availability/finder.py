"""``$find`` as one service: the request's patient, the offers, and what the answer
must say about them (staleness, failed schedules, notices), as plain data.

The router only parses and renders; the policy of what to warn about and when to
refuse (a cache older than ``SLOTSYNC_STALE_REFUSE_SECONDS``) lives here.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from app.availability.answer_memo import FindInputs
from app.availability.catalog import CatalogCache, read_catalog
from app.availability.explain import explain_find
from app.availability.params import ParsedFind
from app.availability.patients import PatientLookup
from app.availability.preview import Preview, preview_rules
from app.availability.service import FindResult, find_appointments, warm_offers
from app.availability.slot_index import SlotIndex
from app.core.errors import CacheStale
from app.core.gc_pause import tune_collector
from app.core.heap import release_free_memory
from app.settings import Settings
from rules.bookable import same_answer_until
from rules.composer import Signer, slot_fetch_window
from rules.explain import Reason
from rules.loader import RulesStore
from rules.offer_memo import OfferMemo
from rules.preview import EXAMPLES
from rules.request import FindRequest, Page, PatientInfo, summarise_notices
from rules.schema import RulesFile

log = logging.getLogger(__name__)

# How many failed schedules a warning names before it says "and N more".
FAILED_NAMED = 10


@dataclass(frozen=True, slots=True)
class Issue:
    """An OperationOutcome issue to be: severity, FHIR issue code, text."""

    severity: str
    code: str
    text: str


@dataclass(frozen=True, slots=True)
class FindAnswer:
    result: FindResult
    issues: list[Issue]
    # the last ``now`` at which the same inputs give this very answer (AnswerMemo)
    same_until: datetime
    reasons: list[Reason] | None = None  # _explain=true: why cached slots were not offered

    @property
    def shown_schedules(self) -> set[str]:
        """The schedules of the offers shown (their sync times give meta.lastUpdated)."""
        return {sid for a in self.result.appointments for sid in a.schedule_ids}


@dataclass
class Finder:
    """What every ``$find`` needs, built once per API process (:mod:`app.runtime`)."""

    settings: Settings
    rules_store: RulesStore
    catalog: CatalogCache
    slot_index: SlotIndex
    offer_memo: OfferMemo
    sign: Signer
    patients: PatientLookup
    # the start-up warm-up is over, offers included (see start_warm_up); what readiness
    # reports, so that a benchmark or an operator can tell a process still working out
    # its offers, which answers more slowly meanwhile, from a warm one
    warm_done: bool = field(default=False, init=False)

    def preview(
        self,
        session: Session,
        new: RulesFile,
        now: datetime,
        *,
        patient: PatientInfo | None = None,
        examples: int = EXAMPLES,
    ) -> Preview:
        """What replacing the rules in force by ``new`` would gain and lose, from this
        process's slot index and ``$find``'s offer memo (kept for the rules in force);
        the admin API and the console's Rules page both ask this."""
        self.rules_store.reload_if_changed()
        return preview_rules(
            session,
            old=self.rules_store.current,
            new=new,
            catalog=read_catalog(session),
            slot_index=self.slot_index,
            now=now,
            patient=patient,
            examples=examples,
            memo=self.offer_memo,
        )

    def inputs(self, session: Session, request: FindRequest, now: datetime) -> FindInputs:
        """What answering ``request`` at ``now`` reads besides the request: the rules
        in force, the catalog, and the slot index's state of the request's window."""
        self.rules_store.reload_if_changed()
        rules = self.rules_store.current
        catalog = self.catalog.get(session)
        generation, claimed = self.slot_index.state(
            session, *slot_fetch_window(request, rules, now), now
        )
        return FindInputs(rules, catalog, generation, frozenset(claimed))

    def answer(
        self,
        session: Session,
        parsed: ParsedFind,
        now: datetime,
        inputs: FindInputs | None = None,
    ) -> FindAnswer:
        """The answer to ``parsed`` at ``now``, from ``inputs`` when already read
        (:meth:`inputs` of the same request and ``now``)."""
        settings = self.settings
        find_request = parsed.request
        if inputs is None:
            inputs = self.inputs(session, find_request, now)
        patient = self.patients.resolve(find_request.patient)
        if patient is not None:
            find_request = replace(find_request, patient=patient.patient)
        page = Page(size=find_request.count or settings.find_max_results, after=parsed.after)
        result = find_appointments(
            session,
            find_request,
            rules=inputs.rules,
            catalog=inputs.catalog,
            slot_index=self.slot_index,
            now=now,
            sign=self.sign,
            memo=self.offer_memo,
            page=page,
            state=inputs.index_state,
        )
        notices = summarise_notices(result.notices)
        issues = [Issue("warning", "informational", text) for text in notices]
        if patient is not None and patient.warning:
            issues.append(Issue("warning", "incomplete", patient.warning))
        issues += [
            Issue("warning", "not-supported", f"parameter {name} was not used")
            for name in parsed.ignored
        ]
        staleness = self._staleness(result, now)
        issues += staleness + self._failures(result)
        if not result.total:
            issues.append(Issue("information", "not-found", "no appointments available"))
        same_until = min(
            same_answer_until(find_request, inputs.rules, now, result.next_start),
            now if staleness else self._fresh_until(result, now),  # its text counts seconds
        )
        if not parsed.explain:
            return FindAnswer(result, issues, same_until)
        reasons = explain_find(
            session,
            find_request,
            rules=inputs.rules,
            catalog=inputs.catalog,
            offered={slot_id for a in result.appointments for slot_id in a.slot_ids},
            now=now,
            stale_after=timedelta(seconds=settings.stale_warning_seconds),
        )
        return FindAnswer(result, issues, now, reasons)  # the reasons change with the clock

    def _fresh_until(self, result: FindResult, now: datetime) -> datetime:
        """The last ``now`` at which :meth:`_staleness` still says nothing of
        ``result`` (its data then becomes old enough to warn of or refuse)."""
        if result.oldest_confirmation is None:
            return datetime.max.replace(tzinfo=UTC)
        settings = self.settings
        limits = [settings.stale_warning_seconds, settings.stale_refuse_seconds]
        seconds = min(limit for limit in limits if limit)
        return max(now, result.oldest_confirmation + timedelta(seconds=seconds))

    def _staleness(self, result: FindResult, now: datetime) -> list[Issue]:
        """Refuse a cache older than the limit; warn of an old one."""
        issues = []
        settings = self.settings
        if result.oldest_confirmation is not None:
            age = now - result.oldest_confirmation
            seconds = int(age.total_seconds())
            if settings.stale_refuse_seconds and age > timedelta(
                seconds=settings.stale_refuse_seconds
            ):
                raise CacheStale(
                    f"availability data is {seconds} s old, beyond the limit; "
                    "retry after the next sync"
                )
            if age > timedelta(seconds=settings.stale_warning_seconds):
                text = f"availability was last confirmed {seconds} s ago"
                issues.append(Issue("warning", "informational", text))
        return issues

    def _failures(self, result: FindResult) -> list[Issue]:
        """Warn of the schedules searched whose last sync failed (their availability
        may differ from the EHR's)."""
        issues = []
        if result.failed_schedules:
            failed = result.failed_schedules
            listed = ", ".join(f"Schedule/{sid}" for sid in failed[:FAILED_NAMED])
            more = f" and {len(failed) - FAILED_NAMED} more" if len(failed) > FAILED_NAMED else ""
            issues.append(
                Issue(
                    "warning",
                    "transient",
                    f"the last sync with the EHR failed for {len(failed)} schedules searched"
                    f" ({listed}{more}); their availability may differ from the EHR until a"
                    " retry succeeds",
                )
            )
        return issues

    def start_warm_up(
        self, transaction: Callable[[], AbstractContextManager[Session]]
    ) -> threading.Thread:
        """Fill the slot index off the request path, then the offer memo from it, then
        freeze what they hold out of the garbage collector's sight: a million long-lived
        slot objects would otherwise be walked by every full collection, which showed as
        $find latency spikes."""
        index = self.slot_index

        def run() -> None:
            started = time.perf_counter()
            try:
                held = index.warm(transaction)
            except Exception:  # the index fills on demand instead; the API serves regardless
                log.warning("slot index warm-up failed; slots load on first use", exc_info=True)
                return
            log.info(
                "slot index warm: %d free slots in %.1f s", held, time.perf_counter() - started
            )
            started = time.perf_counter()
            try:
                with transaction() as session:
                    warm_offers(
                        session,
                        rules=self.rules_store.current,
                        # read for itself: the shared cache is left to the first request
                        # (at start-up the cache may be filling; an empty catalog held
                        # for its TTL would hide what a load adds meanwhile)
                        catalog=read_catalog(session),
                        slot_index=index,
                        memo=self.offer_memo,
                        now=datetime.now(UTC),
                    )
            except Exception:  # offers are then worked out by the first requests
                log.warning("offer memo warm-up failed", exc_info=True)
            else:
                log.info("offer memo warm in %.1f s", time.perf_counter() - started)
            gc.collect()
            tune_collector()
            release_free_memory()
            self.warm_done = True

        thread = threading.Thread(target=run, name="find-warm-up", daemon=True)
        thread.start()
        return thread
