"""Celery beat schedule: the daily full resync (time from settings, UTC)."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from app.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    hour, minute = (int(part) for part in settings.daily_load_at.split(":"))
    return {
        "daily-initial-load": {
            "task": "slotsync.initial_load",
            "schedule": crontab(hour=hour, minute=minute),
        },
    }
