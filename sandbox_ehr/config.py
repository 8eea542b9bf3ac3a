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
# "sandbox": the kind sandbox (Argonaut operations, slots follow appointments,
# subscriptions); "plain-r4": a generic FHIR R4 server (see the package docstring).
Profile = Literal["sandbox", "plain-r4"]
PROFILES: tuple[Profile, ...] = ("sandbox", "plain-r4")
PLAIN_R4_MAX_COUNT = 100


def today_utc() -> date:
    return datetime.now(UTC).date()


@dataclass(slots=True)
class SandboxConfig:
    """Everything that shapes the synthetic organisation and the server's behaviour.

    ``hold_seconds``, ``page_size`` and ``heartbeat_seconds`` may be changed at run
    time through ``POST /_sandbox/config``; the rest is fixed for the process.

    ``max_count``: a search whose ``_count`` exceeds it is refused (400), as some
    servers do; None (the sandbox profile's default) caps ``_count`` silently at
    ``max_page_size`` instead. The plain-r4 profile defaults it to 100.
    """

    host: str = "127.0.0.1"
    port: int = 8100
    fhir_version: FhirVersion = "stu3"
    profile: Profile = "sandbox"
    size: int = 5000
    seed: int = 42
    horizon_days: int = 90
    start_date: date = field(default_factory=today_utc)
    page_size: int = 500
    max_page_size: int = 5000
    max_count: int | None = None
    hold_seconds: int = 300
    callback_secret: str | None = None
    heartbeat_seconds: int = 60
    notify_timeout_seconds: float = 5.0
    notify_max_attempts: int = 8
    notify_backoff_seconds: float = 0.2
    notify_max_backoff_seconds: float = 5.0

    @property
    def plain(self) -> bool:
        """The plain-r4 profile: a generic R4 server without the sandbox's extensions."""
        return self.profile == "plain-r4"

    def default_count(self) -> int:
        """Page size of a search that names no ``_count`` (never above ``max_count``)."""
        return self.page_size if self.max_count is None else min(self.page_size, self.max_count)

    def __post_init__(self) -> None:
        if self.fhir_version not in ("stu3", "r4"):
            raise ValueError(f"fhir_version must be stu3 or r4, not {self.fhir_version!r}")
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}, not {self.profile!r}")
        if self.profile == "plain-r4":
            if self.fhir_version != "r4":
                raise ValueError("the plain-r4 profile serves FHIR R4 only")
            if self.max_count is None:
                self.max_count = PLAIN_R4_MAX_COUNT
        if self.max_count is not None and not 1 <= self.max_count <= self.max_page_size:
            raise ValueError(f"max_count must be within 1..{self.max_page_size}")
        if self.size < 1:
            raise ValueError("size must be positive")
        if not 1 <= self.horizon_days <= 730:
            raise ValueError("horizon_days must be within 1..730")
        if not 1 <= self.page_size <= self.max_page_size:
            raise ValueError(f"page_size must be within 1..{self.max_page_size}")
        if self.hold_seconds < 1:
            raise ValueError("hold_seconds must be positive")
