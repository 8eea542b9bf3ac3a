"""The SMART Scheduling Links feed (``$bulk-publish``): where it is served, who may read
it, what its Slots link to, and how fresh it is kept."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class PublishingSettings(BaseSettings):
    """The feed (see README "SMART Scheduling Links feed")."""

    smart_path: str = Field(
        default="/smart/$bulk-publish",
        pattern=r"^(/[A-Za-z0-9._~-]+)*/\$bulk-publish$",
        description="URL path of the feed's manifest (ends in /$bulk-publish); its files"
        " are served under <path without $bulk-publish>files/",
    )
    smart_public: bool = Field(
        default=True,
        description="serve the feed without credentials; false = system/Slot.read needed",
    )
    smart_booking_link: str | None = Field(
        default=None,
        description="booking-deep-link of each free Slot: a URL into the consumer app with"
        " {slot_id} (feed Slot id) and/or {proposal_id} (the $find appointment id for"
        " $hold/$book) filled in; unset = no link",
    )
    smart_booking_phone: str | None = Field(
        default=None,
        description="booking-phone of each free Slot, and Location phone where the EHR states none",
    )
    smart_location_url: str | None = Field(
        default=None,
        description="Location.telecom url where the EHR states none, {location_id} filled"
        " in; unset = public_base_url",
    )
    smart_slots_per_file: int = Field(
        default=50_000, ge=1, le=1_000_000, description="Slot files hold at most this many"
    )
    smart_max_age_seconds: int = Field(
        default=300,
        ge=1,
        le=86_400,
        description="Cache-Control max-age of the feed, and how old its slots may grow"
        " before a refresh (a sync or a rules change refreshes at once)",
    )
    smart_busy_retention_hours: int = Field(
        default=48,
        ge=1,
        description="slots no longer offered stay in the feed as busy this long, so that"
        " _since readers learn of them",
    )
