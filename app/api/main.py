"""The FastAPI application factory (``uvicorn --factory app.api.main:create_app``)."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial

from fastapi import FastAPI

from app.booking.context import BookingContext
from app.booking.patients import PatientLookup
from app.cache.catalog import CatalogCache, read_catalog
from app.cache.db import transaction
from app.cache.slot_index import SlotIndex
from app.ehr.gateway import EhrGateway
from app.find import MAX_SLOT_LENGTH, warm_offers
from app.observability.logging import configure_logging
from app.observability.recent import Recent
from app.runtime import coordinator, dispatcher, ehr_client, get_engine, sync_context
from app.settings import Settings, get_settings
from app.sync.capabilities import current_booking_path
from app.sync.refresh import refresh_windows
from rules.appointment_id import signer
from rules.loader import RulesStore
from rules.offer_memo import OfferMemo
from rules.schema import RulesFile

from . import admin, fhir_find, fhir_patient, fhir_write, metadata, smart_publish, webhook
from .auth import install_auth
from .errors import install_error_handlers
from .health import Check, add_readiness_check, install_health
from .middleware import install_middleware
from .openapi import install_openapi

log = logging.getLogger(__name__)


def rules_check(app: FastAPI) -> Check:
    """Ready once rules are loaded; a rejected newer file is reported, the old rules serve."""
    store = getattr(app.state, "rules_store", None)
    if store is None:
        return Check(False, "rules not loaded yet")
    rules = store.current
    detail = f"{rules.organization.name}: {len(rules.visit_types)} visit types from {store.path}"
    if store.last_error is not None:
        detail += "; a newer file was rejected, previous rules in force"
    return Check(True, detail)


def slot_index_check(app: FastAPI) -> Check:
    """Always ready (a cold index reads on demand); the detail says whether it is warm."""
    index: SlotIndex | None = getattr(app.state, "slot_index", None)
    if index is None:
        return Check(True, "not started")
    state = "warm" if index.warm_done else "warming up"
    return Check(True, f"{state}: {index.size} free slots held in this process")


def start_warm_up(app: FastAPI) -> threading.Thread:
    """Fill the slot index off the request path, then the offer memo from it, then
    freeze what they hold out of the garbage collector's sight: a million long-lived
    slot objects would otherwise be walked by every full collection, which showed as
    $find latency spikes."""
    state = app.state
    index: SlotIndex = state.slot_index

    def run() -> None:
        started = time.perf_counter()
        try:
            held = index.warm(partial(transaction, state.engine))
        except Exception:  # the index fills on demand instead; the API serves regardless
            log.warning("slot index warm-up failed; slots load on first use", exc_info=True)
            return
        log.info("slot index warm: %d free slots in %.1f s", held, time.perf_counter() - started)
        started = time.perf_counter()
        try:
            with transaction(state.engine) as session:
                warm_offers(
                    session,
                    rules=state.rules_store.current,
                    # read for itself: the shared cache is left to the first request
                    # (at start-up the cache may be filling; an empty catalog held
                    # for its TTL would hide what a load adds meanwhile)
                    catalog=read_catalog(session),
                    slot_index=index,
                    memo=state.offer_memo,
                    now=datetime.now(UTC),
                )
        except Exception:  # offers are then worked out by the first requests
            log.warning("offer memo warm-up failed", exc_info=True)
        else:
            log.info("offer memo warm in %.1f s", time.perf_counter() - started)
        gc.collect()
        gc.freeze()

    thread = threading.Thread(target=run, name="find-warm-up", daemon=True)
    thread.start()
    return thread


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.engine = get_engine(settings)
        app.state.rules_store = RulesStore(settings.effective_rules_path)
        app.state.catalog = CatalogCache()
        app.state.slot_index = SlotIndex(lookback=MAX_SLOT_LENGTH)
        app.state.offer_memo = OfferMemo()
        if settings.find_warm_up:
            start_warm_up(app)
        app.state.sign_proposal = signer(settings.proposal_secret.get_secret_value().encode())
        app.state.coordinator = coordinator(settings)
        dispatch = app.state.dispatcher = dispatcher(settings, periodic=True)
        store: RulesStore = app.state.rules_store
        client = ehr_client(settings)

        def current_rules() -> RulesFile:
            store.reload_if_changed()
            return store.current

        app.state.booking = BookingContext(
            engine=app.state.engine,
            # the EHR's capabilities are (re)read by the sync: follow them as they come
            gateway=EhrGateway(
                client,
                booking=Recent(partial(current_booking_path, app.state.engine, settings), ttl=30.0),
            ),
            rules=current_rules,
            settings=settings,
            refresh=partial(refresh_windows, sync_context(settings)),
        )
        app.state.patients = PatientLookup(
            partial(
                app.state.booking.gateway.read_patient,
                timeout=settings.patient_read_timeout_seconds,
            ),
            ttl=settings.patient_cache_seconds,
        )
        yield
        dispatch.shutdown()
        client.close()
        app.state.authenticator.close()

    public_docs = settings.effective_api_docs == "public"
    app = FastAPI(
        title="slotsync",
        version="0.1.0",
        lifespan=lifespan,
        # admin mode serves /openapi.json behind the admin credential (install_openapi)
        openapi_url="/openapi.json" if public_docs else None,
        docs_url="/docs" if public_docs else None,
        redoc_url="/redoc" if public_docs else None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_middleware(app, settings)
    install_auth(app, settings)
    install_health(app, settings)
    add_readiness_check(app, "rules", lambda: rules_check(app))
    add_readiness_check(app, "slot-index", lambda: slot_index_check(app))
    app.include_router(metadata.router, prefix="/fhir", tags=["fhir"])
    app.include_router(fhir_find.router, prefix="/fhir", tags=["fhir"])
    app.include_router(fhir_write.router, prefix="/fhir", tags=["fhir"])
    app.include_router(fhir_patient.router, prefix="/fhir", tags=["fhir"])
    app.include_router(webhook.router, tags=["sync"])
    app.include_router(admin.router, tags=["ops"])
    app.include_router(smart_publish.router(settings))
    install_openapi(app, settings.effective_api_docs)
    return app
