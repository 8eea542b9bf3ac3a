"""Capabilities discovered, not assumed: the EHR's CapabilityStatement, read at start-up
(a periodic job, also every few hours) and before every resync, kept in the cache so
that every process and the status report see the same answer.
"""

from __future__ import annotations

import logging

import msgspec
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.cache.db import transaction
from app.cache.models import EhrCapabilitiesRow
from app.core.times import fhir_instant
from app.ehr.booking_path import BookingPath, booking_path
from app.ehr.errors import EhrError
from app.fhir.ehr_capabilities import EhrCapabilities, parse_capability_statement
from app.fhir.versions import fhir_version
from app.settings import Settings

from .context import SyncContext
from .retry import describe_error

log = logging.getLogger(__name__)


def discover(ctx: SyncContext) -> EhrCapabilities | None:
    """Read and record the EHR's capabilities; on failure the last known ones stand."""
    now = ctx.clock()
    base = ctx.settings.ehr_base_url
    try:
        found = parse_capability_statement(ctx.client.read("metadata"))
    except (EhrError, ValueError) as exc:
        error = describe_error(exc)
        log.warning("could not read the EHR's CapabilityStatement: %s", error)
        with transaction(ctx.engine) as session:
            row = session.get(EhrCapabilitiesRow, base)
            if row is None:
                session.add(EhrCapabilitiesRow(base_url=base, fetched_at=now, error=error))
            else:
                row.error = error
        return known(ctx)
    with transaction(ctx.engine) as session:
        row = session.get(EhrCapabilitiesRow, base)
        summary = msgspec.json.encode(found.as_json()).decode()
        if row is None:
            session.add(EhrCapabilitiesRow(base_url=base, fetched_at=now, summary=summary))
        else:
            row.fetched_at, row.summary, row.error = now, summary, None
    return found


def known(ctx: SyncContext) -> EhrCapabilities | None:
    """What was last read (None: never read successfully)."""
    return known_in(ctx.engine, ctx.settings.ehr_base_url)


def known_in(engine: Engine, base_url: str) -> EhrCapabilities | None:
    with Session(engine) as session:
        row = session.get(EhrCapabilitiesRow, base_url)
        if row is None or not row.summary:
            return None
        return EhrCapabilities.from_json(msgspec.json.decode(row.summary))


def current_booking_path(engine: Engine, settings: Settings) -> BookingPath:
    """The booking path the EHR's last read CapabilityStatement calls for (or the
    setting that forces one); see :func:`app.ehr.booking_path.booking_path`."""
    caps = None if settings.ehr_booking != "auto" else known_in(engine, settings.ehr_base_url)
    return booking_path(fhir_version(settings.ehr_fhir_version), settings.ehr_booking, caps)


def status_json(session: Session, base_url: str) -> dict[str, object] | None:
    row = session.get(EhrCapabilitiesRow, base_url)
    if row is None:
        return None
    summary = msgspec.json.decode(row.summary) if row.summary else {}
    return {
        "fetched_at": fhir_instant(row.fetched_at),
        "error": row.error,
        "fhir_version": summary.get("fhir_version"),
        "software": summary.get("software"),
        "operations": summary.get("operations", []),
        **summary.get("summary", {}),
    }
