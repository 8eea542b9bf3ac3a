"""Schedule discovery: the first pass of a load, listing every schedule and its actors.

Pages of ``GET Schedule`` (``_include=Schedule:actor``) are written as they
arrive, so memory holds one page plus the list of ids. Schedules are recorded
without claiming their slots are confirmed (that is the chunks' job), and actors
the EHR did not include are read one by one.
"""

from __future__ import annotations

import logging

from app.cache import repository as repo
from app.cache.db import transaction
from app.core.domain import Actor
from app.core.errors import SlotsyncError
from app.ehr.errors import EhrRejected
from app.fhir.parse import FhirParseError, parse_actor, parse_bundle_page

from .chunk import IncompleteAnswer
from .context import SyncContext

log = logging.getLogger(__name__)

UNSUPPORTED_STATUS = frozenset({400, 403, 404, 405, 501})


class DiscoveryUnsupported(SlotsyncError):
    """The EHR offers no Schedule search; loads fall back to whole-window chunks."""


def discover_schedules(ctx: SyncContext, *, actor: str | None = None) -> list[str]:
    """Every schedule id the EHR lists (of one actor, if given), recorded in the cache."""
    now = ctx.clock()
    ids: list[str] = []
    total: int | None = None
    try:
        for bundle in ctx.client.schedule_pages(actor=actor):
            page = parse_bundle_page(bundle)
            if total is None and isinstance(page.total, int):
                total = page.total
            actors = {a.ref: a for a in page.actors}
            with transaction(ctx.engine) as session:
                wanted = {r for s in page.schedules for r in s.actor_refs} - set(actors)
                wanted -= set(repo.actors_by_ref(session, wanted))
            actors.update(_read_actors(ctx, sorted(wanted)))
            with transaction(ctx.engine) as session:
                repo.upsert_actors(session, actors.values(), now)
                repo.upsert_schedules(session, page.schedules, None)
            ids.extend(s.id for s in page.schedules)
    except EhrRejected as exc:
        if exc.status in UNSUPPORTED_STATUS:
            raise DiscoveryUnsupported(str(exc)) from exc
        raise
    unique = sorted(set(ids))
    if total is not None and len(unique) < total:
        raise IncompleteAnswer(f"EHR announced {total} schedules but sent {len(unique)}")
    return unique


def _read_actors(ctx: SyncContext, refs: list[str]) -> dict[str, Actor]:
    found: dict[str, Actor] = {}
    for ref in refs:
        try:
            found[ref] = parse_actor(ctx.client.read(ref))
        except EhrRejected as exc:
            if exc.status != 404:
                raise
            log.warning("schedule actor %s does not exist in the EHR", ref)
        except FhirParseError as exc:
            log.warning("schedule actor %s unusable: %s", ref, exc)
    return found
