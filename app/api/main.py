"""The FastAPI application factory (``uvicorn --factory app.api.main:create_app``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from app.cache.db import transaction
from app.console import install_console
from app.core.heap import limit_heap_arenas
from app.observability.logging import configure_logging
from app.runtime import ApiServices, api_services
from app.settings import Settings, get_settings

from . import (
    admin,
    admin_rules,
    fhir_find,
    fhir_patient,
    fhir_write,
    metadata,
    smart_publish,
    webhook,
)
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
    """Always ready (a cold index reads on demand); the detail says how warm it is:
    ``warming up`` while it reads the slots, ``warming up offers`` while the offer
    memo is worked out from them (at 10M slots, minutes in which ``$find`` shares the
    process with that work), then ``warm``."""
    finder = getattr(app.state, "finder", None)
    if finder is None:
        return Check(True, "not started")
    index = finder.slot_index
    state = "warming up offers" if index.warm_done else "warming up"
    if finder.warm_done:
        state = "warm"
    return Check(True, f"{state}: {index.size} free slots held in this process")


_NO_LIBRARY_TELEMETRY: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    limit_heap_arenas()  # before the server's thread pool allocates (see app.core.heap)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = api_services(settings)
        try:
            for name in ApiServices.__dataclass_fields__:
                setattr(app.state, name, getattr(services, name))
            app.state.find_limiter = fhir_find.find_limiter()
            app.state.ahead_limiter = fhir_find.ahead_limiter()
            if settings.find_warm_up:
                services.finder.start_warm_up(partial(transaction, services.engine))
            yield
        finally:  # a start-up or shutdown that raises must not leave the dispatcher running
            services.close()
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
        # FastAPI's own OpenTelemetry, on by default wherever a global provider is set,
        # puts url.query on its spans (a $find's patient, birthdate) and may start
        # exporters from FASTAPI_OTEL_AUTO_CONFIGURE: off, ours is app.observability
        telemetry=_NO_LIBRARY_TELEMETRY,
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
    app.include_router(admin_rules.router, tags=["ops"])
    app.include_router(smart_publish.router(settings))
    install_console(app)
    install_openapi(app, settings.effective_api_docs)
    return app
