"""The FastAPI application factory (``uvicorn --factory app.api.main:create_app``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from app.booking.context import BookingContext
from app.cache.catalog import CatalogCache
from app.ehr.gateway import EhrGateway
from app.observability.logging import configure_logging
from app.runtime import coordinator, dispatcher, ehr_client, get_engine, sync_context
from app.settings import Settings, get_settings
from app.sync.refresh import refresh_windows
from rules.appointment_id import encode
from rules.loader import RulesStore
from rules.schema import RulesFile

from . import admin, fhir_find, fhir_patient, fhir_write, metadata, webhook
from .auth import install_auth
from .errors import install_error_handlers
from .health import Check, add_readiness_check, install_health
from .middleware import install_middleware
from .openapi import install_openapi


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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.engine = get_engine(settings)
        app.state.rules_store = RulesStore(settings.effective_rules_path)
        app.state.catalog = CatalogCache()
        app.state.sign_proposal = partial(
            encode, secret=settings.proposal_secret.get_secret_value().encode()
        )
        app.state.coordinator = coordinator(settings)
        dispatch = app.state.dispatcher = dispatcher(settings)
        store: RulesStore = app.state.rules_store
        client = ehr_client(settings)

        def current_rules() -> RulesFile:
            store.reload_if_changed()
            return store.current

        app.state.booking = BookingContext(
            engine=app.state.engine,
            gateway=EhrGateway(client),
            rules=current_rules,
            settings=settings,
            refresh=partial(refresh_windows, sync_context(settings)),
        )
        yield
        dispatch.shutdown()
        client.close()
        app.state.authenticator.close()

    app = FastAPI(title="slotsync", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    install_middleware(app, settings)
    install_auth(app, settings)
    install_health(app, settings)
    add_readiness_check(app, "rules", lambda: rules_check(app))
    app.include_router(metadata.router, prefix="/fhir", tags=["fhir"])
    app.include_router(fhir_find.router, prefix="/fhir", tags=["fhir"])
    app.include_router(fhir_write.router, prefix="/fhir", tags=["fhir"])
    app.include_router(fhir_patient.router, prefix="/fhir", tags=["fhir"])
    app.include_router(webhook.router, tags=["sync"])
    app.include_router(admin.router, tags=["ops"])
    install_openapi(app)
    return app
