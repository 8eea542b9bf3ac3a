"""Configuration: environment variables with prefix ``SLOTSYNC_`` (pydantic-settings).

The only place that reads the environment. Unset database/Redis URLs select the
embedded mode (SQLite file, in-process tasks) so that ``make demo`` needs nothing.
Secrets may also come as files (compose secrets): ``slotsync_webhook_secret`` and so
on in ``SLOTSYNC_SECRETS_DIR`` (default ``/run/secrets``), read by pydantic-settings'
own secrets source; an environment variable of the same name wins over the file.

One ``Settings`` class (:mod:`app.settings.model`), composed of a part per concern:
:mod:`~app.settings.storage`, :mod:`~app.settings.ehr`, :mod:`~app.settings.availability`,
:mod:`~app.settings.sync`, :mod:`~app.settings.booking`, :mod:`~app.settings.security`
and :mod:`~app.settings.observability`.
"""

from app.settings.defaults import (
    ADMIN_SCOPE,
    DEMO_API_KEY,
    DEMO_SCOPES,
    DEV_EHR_BASE_URL,
    DEV_PROPOSAL_SECRET,
    DEV_WEBHOOK_SECRET,
    METRICS_SCOPE,
    MIN_SECRET_LENGTH,
    PLACEHOLDER_MARKERS,
)
from app.settings.model import Settings, UnsafeSettings, get_settings, production_problems
from app.settings.sources import DEFAULT_SECRETS_DIR, SECRETS_DIR_VARIABLE, secret_files

__all__ = [
    "ADMIN_SCOPE",
    "DEFAULT_SECRETS_DIR",
    "DEMO_API_KEY",
    "DEMO_SCOPES",
    "DEV_EHR_BASE_URL",
    "DEV_PROPOSAL_SECRET",
    "DEV_WEBHOOK_SECRET",
    "METRICS_SCOPE",
    "MIN_SECRET_LENGTH",
    "PLACEHOLDER_MARKERS",
    "SECRETS_DIR_VARIABLE",
    "Settings",
    "UnsafeSettings",
    "get_settings",
    "production_problems",
    "secret_files",
]
