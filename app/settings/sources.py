"""Where settings come from besides the environment: secret files (compose secrets)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsError,
)

# Where compose mounts secrets; read before Settings exists, so not a setting itself.
SECRETS_DIR_VARIABLE = "SLOTSYNC_SECRETS_DIR"
DEFAULT_SECRETS_DIR = Path("/run/secrets")


def secret_files(settings_cls: type[BaseSettings]) -> tuple[PydanticBaseSettingsSource, ...]:
    """pydantic-settings' secrets source over ``SLOTSYNC_SECRETS_DIR`` (default
    ``/run/secrets``, where compose mounts secrets), or none when that default is absent
    (tests, the demo, hosts without secret files). A configured directory must exist."""
    configured = os.environ.get(SECRETS_DIR_VARIABLE)
    directory = Path(configured) if configured else DEFAULT_SECRETS_DIR
    if not directory.is_dir():
        if configured:
            raise SettingsError(f"{SECRETS_DIR_VARIABLE} is not a directory: {directory}")
        return ()
    return (SecretsSettingsSource(settings_cls, secrets_dir=directory),)
