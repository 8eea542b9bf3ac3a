"""What every sync service needs, bundled once by the composition root (app.runtime)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from app.ehr.client import EhrClient
from app.settings import Settings

from .coordination import Coordinator
from .windows import horizon, utcnow


@dataclass(frozen=True, slots=True)
class SyncContext:
    engine: Engine
    client: EhrClient
    coord: Coordinator
    settings: Settings
    clock: Callable[[], datetime] = field(default=utcnow)

    def horizon(self) -> tuple[datetime, datetime]:
        return horizon(self.clock(), self.settings.horizon_days)

    @property
    def lock_wait(self) -> float:
        """How long a task waits for a schedule lock before giving its worker back."""
        return float(self.settings.schedule_lock_seconds)
