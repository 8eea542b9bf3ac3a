"""Tasks: load by ids and windows (ISO strings), delegate to app.sync services."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.ehr.errors import EhrUnavailable
from app.runtime import ehr_client, get_engine
from app.settings import get_settings
from app.sync.load import day_start, initial_load, load_window, utcnow

from .celery_app import celery_app


@celery_app.task(
    name="slotsync.load_window",
    autoretry_for=(EhrUnavailable,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=5,
)
def load_window_task(start: str, end: str) -> dict[str, Any]:
    """Snapshot-replace one window of every schedule; safe to run twice."""
    with ehr_client() as client:
        result = load_window(
            get_engine(), client, datetime.fromisoformat(start), datetime.fromisoformat(end)
        )
    return {"seen": result.seen, "upserted": result.upserted, "deleted": result.deleted}


@celery_app.task(name="slotsync.initial_load")
def initial_load_task(horizon_days: int | None = None) -> dict[str, Any]:
    """The whole horizon, window by window, from the start of today (UTC)."""
    settings = get_settings()
    with ehr_client(settings) as client:
        result = initial_load(
            get_engine(settings),
            client,
            start=day_start(utcnow()),
            horizon_days=horizon_days or settings.horizon_days,
            window_days=settings.load_window_days,
        )
    return {
        "windows": result.windows,
        "seen": result.seen,
        "upserted": result.upserted,
        "deleted": result.deleted,
    }
