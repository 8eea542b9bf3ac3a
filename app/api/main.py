"""The FastAPI application factory (``uvicorn --factory app.api.main:create_app``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import text

import rules
from app.booking.context import BookingContext
from app.booking.refresh import refresh_with_load
from app.ehr.gateway import EhrGateway
from app.runtime import ehr_client, get_engine
from app.settings import Settings, get_settings
from rules.loader import RulesStore
from rules.schema import RulesFile

from . import fhir_find, fhir_patient, fhir_write, metadata
from .errors import install_error_handlers
from .responses import FhirResponse

BUNDLED_RULES = Path(rules.__file__).parent / "examples" / "multi-clinic.yaml"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.engine = get_engine(settings)
        if getattr(app.state, "rules_store", None) is None:
            app.state.rules_store = RulesStore(settings.rules_path or BUNDLED_RULES)
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
            refresh=partial(refresh_with_load, app.state.engine, client),
        )
        try:
            yield
        finally:
            client.close()

    app = FastAPI(title="slotsync", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(metadata.router, prefix="/fhir", tags=["fhir"])
    app.include_router(fhir_find.router, prefix="/fhir", tags=["fhir"])
    app.include_router(fhir_write.router, prefix="/fhir", tags=["fhir"])
    app.include_router(fhir_patient.router, prefix="/fhir", tags=["fhir"])

    @app.get("/healthz", response_class=FhirResponse, tags=["ops"])
    def healthz() -> FhirResponse:
        return FhirResponse({"status": "ok"})

    @app.get("/readyz", tags=["ops"])
    def readyz() -> FhirResponse:
        with app.state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return FhirResponse({"status": "ready"})

    return app
