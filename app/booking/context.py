"""What the booking service needs, bundled once by the composition root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from app.ehr.gateway import EhrGateway
from app.fhir.versions import FhirVersion
from app.settings import Settings
from rules.appointment_id import ProposalPayload, encode
from rules.schema import RulesFile

from .refresh import Refresh


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class BookingContext:
    engine: Engine
    gateway: EhrGateway
    rules: Callable[[], RulesFile]  # the rules in force now (hot reloaded)
    settings: Settings
    refresh: Refresh  # re-read these windows from the EHR now
    clock: Callable[[], datetime] = field(default=utcnow)

    @property
    def version(self) -> FhirVersion:
        return self.gateway.client.version

    @property
    def secret(self) -> bytes:
        return self.settings.proposal_secret.get_secret_value().encode("utf-8")

    def sign(self, payload: ProposalPayload) -> str:
        return encode(payload, self.secret)

    @property
    def pending_seconds(self) -> float:
        """How long a claim may stay pending: longer than any EHR call plus its read-back."""
        attempts = max(1, self.gateway.retry.attempts)
        return self.settings.ehr_timeout_seconds * (2 * attempts + 2) + 30.0
