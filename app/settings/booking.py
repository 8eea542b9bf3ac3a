"""Holds and bookings: how long a held or booked slot stays hidden from ``$find``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class BookingSettings(BaseSettings):
    """Holds and bookings as the cache sees them."""

    hold_overlay_seconds: int = Field(
        default=300,
        ge=1,
        description="how long a held slot stays hidden when the EHR sends no Expires header",
    )
    hold_expiry_seconds: int = Field(
        default=15,
        ge=1,
        description="how often expired holds (pending Appointments, no $hold at the EHR)"
        " are looked for and cancelled at the EHR",
    )
    booked_overlay_seconds: int = Field(
        default=6 * 3600,
        ge=60,
        description="how long a booked slot stays hidden while waiting for the sync to see it busy",
    )
