"""Celery beat schedule: the daily full resync, the feed watchdog, subscription renewal."""

from __future__ import annotations

from datetime import timedelta
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
        "feed-watchdog": {
            "task": "slotsync.watchdog",
            "schedule": timedelta(seconds=settings.watchdog_seconds),
            # a backlog of watchdog ticks (workers down) is worthless: let them lapse
            "options": {"expires": settings.watchdog_seconds},
        },
        "renew-subscription": {
            "task": "slotsync.subscribe",
            "schedule": timedelta(seconds=settings.subscription_renew_seconds),
            "options": {"expires": settings.subscription_renew_seconds},
        },
    }
