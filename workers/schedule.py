"""Celery beat schedule, from the one definition of periodic sync work (app.sync.periodic)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery.schedules import crontab

from app.settings import Settings
from app.sync.periodic import periodic_jobs


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    schedule: dict[str, dict[str, Any]] = {}
    for job in periodic_jobs(settings):
        if job.daily_at is not None:
            hour, minute = job.daily_at
            schedule[job.name] = {"task": job.task, "schedule": crontab(hour=hour, minute=minute)}
            continue
        assert job.every_seconds is not None
        schedule[job.name] = {
            "task": job.task,
            "schedule": timedelta(seconds=job.every_seconds),
            # a backlog of ticks (workers down) is worthless: let them lapse
            "options": {"expires": job.every_seconds},
        }
    return schedule
