"""What `slotsync config` shows: every setting, its source, and no secret."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from app.cli.effective_config import MASK, effective_config, is_secret, mask_url
from app.settings import Settings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://app:pw@db:5432/x", f"postgresql+psycopg://app:{MASK}@db:5432/x"),
        ("postgresql://app:p/w@?x@db/x", f"postgresql://app:{MASK}@db/x"),
        ("redis://:pw@redis:6379/0", f"redis://:{MASK}@redis:6379/0"),
        (
            "rediss://default:pw@r:6380/0?ssl_cert_reqs=none",
            f"rediss://default:{MASK}@r:6380/0?ssl_cert_reqs=none",
        ),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("redis://user@redis/0", "redis://user@redis/0"),
        ("sqlite:////var/lib/slotsync/cache.sqlite3", "sqlite:////var/lib/slotsync/cache.sqlite3"),
        ("https://idp/jwks?access_token=t&x=1", f"https://idp/jwks?access_token={MASK}&x=1"),
        ("https://h/fhir?password=a&apikey=b", f"https://h/fhir?password={MASK}&apikey={MASK}"),
    ],
)
def test_mask_url(url, shown):
    assert mask_url(url) == shown


def test_secret_fields_are_the_secretstr_ones_and_the_api_keys():
    secret = {name for name, field in Settings.model_fields.items() if is_secret(field)}
    assert secret == {
        name
        for name, field in Settings.model_fields.items()
        if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))
    } | {"api_keys"}
    assert {"webhook_secret", "proposal_secret", "ehr_bearer_token", "jwt_shared_key"} <= secret


def test_sources_and_values():
    settings = Settings(horizon_days=9, ehr_bearer_token="t" * 30)
    config = effective_config(settings)["settings"]
    assert config["horizon_days"]["source"] == "environment"
    assert config["horizon_days"]["value"] == 9
    assert config["horizon_days"]["env"] == "SLOTSYNC_HORIZON_DAYS"
    assert config["daily_load_at"]["source"] == "default"
    assert config["ehr_bearer_token"]["value"] == MASK
    assert config["jwt_shared_key"]["value"] is None  # unset is said, not masked
    assert config["data_dir"]["value"] == ".slotsync"
