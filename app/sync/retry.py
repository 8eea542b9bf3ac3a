"""The one retry policy of sync work: what is worth another try, and when to try again.

Celery tasks (``workers.tasks``) and the in-process runner of embedded mode
(:mod:`app.sync.local`) both take their budget from here, so a setting cannot be
silently overridden by a library default: ``SLOTSYNC_TASK_MAX_RETRIES`` retries,
each delay doubling from ``TASK_RETRY_BASE_SECONDS`` up to ``TASK_RETRY_MAX_SECONDS``
with "equal jitter". With the defaults (12 retries, 2 s doubling to 60 s) a unit of
work keeps trying for 4 to 8 minutes, which rides out a restart of the EHR, of
PostgreSQL or of Redis; what still fails is recorded and followed up
(:mod:`app.sync.follow_up`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import redis.exceptions
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.cache.repository import ScheduleGone
from app.ehr.errors import EhrAuthError, EhrProtocolError, EhrUnavailable
from app.fhir.parse import FhirParseError
from app.settings import Settings

from .coordination import ScheduleBusy

TRANSIENT: tuple[type[BaseException], ...] = (
    EhrUnavailable,
    EhrProtocolError,
    EhrAuthError,
    FhirParseError,
    ScheduleBusy,
    ScheduleGone,  # forgotten while its slots were fetched: read again
    OperationalError,  # PostgreSQL/SQLite: connection lost, server restarting, locked
    InterfaceError,
    PoolTimeout,
    redis.exceptions.ConnectionError,  # includes Redis restarting and loading its data
    redis.exceptions.TimeoutError,
    BrokerError,  # enqueueing while the broker is away
    ConnectionError,  # sockets (kombu raises the builtin family too)
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Worth another try later: the EHR, the network, a lock, the database or Redis hiccupped."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, TRANSIENT)


def describe_error(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"[:2000]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with equal jitter; ``retries`` tries after the first."""

    retries: int
    base: float
    cap: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        return cls(
            retries=settings.task_max_retries,
            base=settings.task_retry_base_seconds,
            cap=settings.task_retry_max_seconds,
        )

    @property
    def attempts(self) -> int:
        return self.retries + 1

    def ceiling(self, retries_done: int) -> float:
        """The longest wait before retry number ``retries_done + 1``: doubling, capped."""
        return min(self.cap, self.base * 2.0 ** min(max(retries_done, 0), 30))

    def delay(self, retries_done: int) -> float:
        """Seconds to wait before retry number ``retries_done + 1`` (jittered: workers that
        failed together do not all come back at once)."""
        return self.ceiling(retries_done) * (0.5 + random.random() / 2)

    def exhausted(self, attempts_made: int) -> bool:
        return attempts_made >= self.attempts
