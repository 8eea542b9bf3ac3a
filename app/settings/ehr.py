"""How slotsync reaches the EHR: its address and FHIR version, booking path, paging, retries
and credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from app.settings.defaults import DEV_EHR_BASE_URL


class EhrConnectionSettings(BaseSettings):
    """The EHR's address, FHIR version and booking path."""

    ehr_base_url: str = DEV_EHR_BASE_URL
    ehr_fhir_version: Literal["stu3", "r4"] = "stu3"
    ehr_timeout_seconds: float = 30.0
    ehr_booking: Literal["auto", "operations", "appointment"] = Field(
        default="auto",
        description="how holds and bookings reach the EHR: operations = $hold/$book,"
        " appointment = a pending or booked POST Appointment (re-checked first),"
        " auto = what the EHR's CapabilityStatement declares (operations where it lists"
        " $hold and $book; before it is read: operations for stu3, appointment for r4)",
    )
    ehr_mark_slots_busy: bool = Field(
        default=False,
        description="on the appointment booking path: also write each booked Slot busy at the"
        " EHR (and free again when we cancel), for servers whose other clients read only"
        " Slot.status; the EHR must allow Slot updates",
    )


class EhrAccessSettings(BaseSettings):
    """How the EHR is read: page size, retries, authentication."""

    ehr_page_size: int | None = Field(default=None, ge=1, description="_count asked of the EHR")
    ehr_retry_attempts: int = Field(
        default=5, ge=1, le=20, description="tries per EHR request (transient failures)"
    )
    ehr_prefetch_method: Literal["GET", "POST"] = "GET"
    ehr_auth: Literal["none", "bearer", "smart"] = "none"
    ehr_bearer_token: SecretStr | None = None
    ehr_client_id: str | None = Field(default=None, description="SMART backend services client")
    ehr_token_url: str | None = None
    ehr_private_key: SecretStr | None = Field(default=None, description="PEM of the JWT key")
    ehr_private_key_path: Path | None = None
    ehr_key_id: str | None = None
    ehr_jwt_alg: Literal["RS384", "ES384"] = "RS384"
    ehr_scope: str = "system/Slot.read system/Schedule.read system/Practitioner.read"
