"""``$find``: the rules in force, proposal ids, page size, patients and staleness."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from app.settings.defaults import DEV_PROPOSAL_SECRET


class AvailabilitySettings(BaseSettings):
    """What ``$find`` offers and how fresh it must be."""

    rules_path: Path | None = Field(
        default=None,
        description="business-rules file; unset = the bundled multi-clinic example (development"
        " only: production refuses to start without one)",
    )
    proposal_secret: SecretStr = Field(
        default=SecretStr(DEV_PROPOSAL_SECRET),
        description="HMAC key that signs $find appointment ids so any replica can rebuild them",
    )
    find_max_results: int = Field(
        default=200,
        ge=1,
        le=1000,
        description="$find's page size when _count is not given (Bundle.total counts"
        " every match; the next link reads on)",
    )
    patient_cache_seconds: int = Field(
        default=300,
        ge=0,
        le=86_400,
        description="how long $find keeps a patient-reference's birth date and gender read"
        " from the EHR (0 = do not read: age and gender rules then skip such patients)",
    )
    patient_read_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="$find waits this long for the EHR's Patient"
    )
    find_warm_up: bool = Field(
        default=True,
        description="read every cached slot, then the offers, into memory at API start-up",
    )
    offer_memo_max_offers: int = Field(
        default=2_000_000,
        ge=10_000,
        le=100_000_000,
        description="candidate offers each API process remembers across $find requests"
        " (~190 bytes each); when full it forgets them all and works them out again",
    )
    find_answer_memo_bytes: int = Field(
        default=16 << 20,
        ge=0,
        le=1 << 32,
        description="bytes of rendered $find answers each API process keeps, served again"
        " while the rules, slots, claims and clock give the same answer (0 = none)",
    )
    stale_warning_seconds: int = Field(
        default=26 * 3600, ge=1, description="$find warns when data is older than this"
    )
    stale_refuse_seconds: int = Field(
        default=0, ge=0, description="$find answers 503 when data is older than this; 0 = never"
    )

    @property
    def effective_rules_path(self) -> Path:
        """The configured rules file, or the bundled example matching the sandbox EHR."""
        if self.rules_path:
            return self.rules_path
        return Path(__file__).resolve().parents[2] / "rules" / "examples" / "multi-clinic.yaml"
