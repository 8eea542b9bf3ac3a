"""The FastAPI application factory (``uvicorn --factory app.api.main:create_app``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from sqlalchemy import text

from app.cache.catalog import CatalogCache
from app.runtime import coordinator, dispatcher, get_engine
from app.settings import Settings, get_settings
from rules.appointment_id import encode
from rules.loader import RulesStore

from . import admin, fhir_find, webhook
from .errors import install_error_handlers
from .responses import FhirResponse


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

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
        app.state.dispatcher = dispatcher(settings)
        yield

    app = FastAPI(title="slotsync", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(fhir_find.router, prefix="/fhir", tags=["fhir"])
    app.include_router(webhook.router, tags=["sync"])
    app.include_router(admin.router, tags=["ops"])

    @app.get("/healthz", response_class=FhirResponse, tags=["ops"])
    def healthz() -> FhirResponse:
        return FhirResponse({"status": "ok"})

    @app.get("/readyz", tags=["ops"])
    def readyz() -> FhirResponse:
        with app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return FhirResponse({"status": "ready"})

    return app
