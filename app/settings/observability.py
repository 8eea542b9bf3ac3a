"""Logs, metrics and the readiness and staleness thresholds operators watch."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings


class ObservabilitySettings(BaseSettings):
    """Logging, metrics and the thresholds of readiness and staleness."""

    log_format: Literal["text", "json"] = "text"
    log_level: str = Field(default="INFO", pattern=r"^(?i:debug|info|warning|error|critical)$")
    metrics_multiproc_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("PROMETHEUS_MULTIPROC_DIR", "SLOTSYNC_METRICS_MULTIPROC_DIR"),
        description="prometheus-client multiprocess directory (several uvicorn workers)",
    )
    worker_metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Celery worker /metrics port; unset = none"
    )
    readiness_max_load_age_hours: float = Field(
        default=48.0, ge=0, description="/readyz fails when the last full load is older; 0 = off"
    )
    ops_stale_after_minutes: int = Field(
        default=120, ge=1, description="a schedule not confirmed for this long counts as stale"
    )
