"""Run-time configuration of one sandbox EHR instance.

A plain dataclass (not pydantic-settings): the sandbox is configured by its CLI
flags or by the test that builds it, never by the environment, so that two
sandboxes in one test run cannot leak settings into each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

FhirVersion = Literal["stu3", "r4"]


def today_utc() -> date:
    return datetime.now(UTC).date()


@dataclass(slots=True)
class SandboxConfig:
    """Everything that shapes the synthetic organisation and the server's behaviour.

    ``hold_seconds``, ``page_size`` and ``heartbeat_seconds`` may be changed at run
    time through ``POST /_sandbox/config``; the rest is fixed for the process.
    """

    host: str = "127.0.0.1"
    port: int = 8100
    fhir_version: FhirVersion = "stu3"
    size: int = 5000
    seed: int = 42
    horizon_days: int = 90
    start_date: date = field(default_factory=today_utc)
    page_size: int = 500
    max_page_size: int = 5000
    hold_seconds: int = 300
    callback_secret: str | None = None
    heartbeat_seconds: int = 60
    notify_timeout_seconds: float = 5.0
    notify_max_attempts: int = 8
    notify_backoff_seconds: float = 0.2
    notify_max_backoff_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.fhir_version not in ("stu3", "r4"):
            raise ValueError(f"fhir_version must be stu3 or r4, not {self.fhir_version!r}")
        if self.size < 1:
            raise ValueError("size must be positive")
        if not 1 <= self.horizon_days <= 730:
            raise ValueError("horizon_days must be within 1..730")
        if not 1 <= self.page_size <= self.max_page_size:
            raise ValueError(f"page_size must be within 1..{self.max_page_size}")
        if self.hold_seconds < 1:
            raise ValueError("hold_seconds must be positive")
