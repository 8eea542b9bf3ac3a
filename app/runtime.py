"""Composition root: builds the engine and EHR client from settings, once per process."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine

from app.cache.db import make_engine
from app.ehr.client import EhrClient
from app.settings import Settings, get_settings


@lru_cache(maxsize=4)
def engine_for(url: str) -> Engine:
    return make_engine(url)


def get_engine(settings: Settings | None = None) -> Engine:
    return engine_for((settings or get_settings()).effective_database_url)


def ehr_client(settings: Settings | None = None) -> EhrClient:
    settings = settings or get_settings()
    return EhrClient(
        settings.ehr_base_url,
        fhir_version=settings.ehr_fhir_version,
        timeout=settings.ehr_timeout_seconds,
    )
