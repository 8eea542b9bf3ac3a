"""``slotsync config``: every setting in force, where it came from, secrets masked.

A secret is a ``SecretStr`` field, a field kept out of ``repr`` (the API keys, whose keys
are the credentials), or the password and credential-like query parameters of a URL.
Values are masked here, before anything is formatted, so no output path can leak them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from app.settings import Settings

MASK = "********"
ENV_PREFIX = "SLOTSYNC_"

# user:password@ up to the last "@", as SQLAlchemy reads it (a password may hold "/" or "?");
# where a query holds an "@" this masks more than the password, never less
_USERINFO = re.compile(
    r"^(?P<scheme>[\w+.-]+://)(?P<user>[^:/@]*):(?P<password>.*)@(?P<rest>[^@]*)$"
)
# query parameters that carry credentials (?password=..., ?access_token=...)
_SECRET_PARAM = re.compile(
    r"(?P<lead>[?&])(?P<name>[^=&?]*(?:pass|secret|token|key|auth|credential)[^=&]*)=[^&]*", re.I
)


def mask_url(url: str) -> str:
    """``url`` with the password of its user info and credential parameters masked."""
    url = _USERINFO.sub(rf"\g<scheme>\g<user>:{MASK}@\g<rest>", url)
    return _SECRET_PARAM.sub(rf"\g<lead>\g<name>={MASK}", url)


def env_name(name: str, field: FieldInfo) -> str:
    """The environment variable that sets the field (the first, where several may)."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    if isinstance(alias, str):
        return alias
    return ENV_PREFIX + name.upper()


def is_secret(field: FieldInfo) -> bool:
    annotation = field.annotation
    return annotation is SecretStr or SecretStr in get_args(annotation) or field.repr is False


def masked_value(value: Any, *, secret: bool) -> Any:
    """A JSON-ready value with nothing secret left in it."""
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return MASK
    if secret and isinstance(value, dict):  # the API keys: the keys are the credentials
        return [{"key": MASK, "scopes": scopes} for scopes in value.values()]
    if secret:
        return MASK
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    if isinstance(value, Path):
        return str(value)
    return value


def effective_config(settings: Settings) -> dict[str, Any]:
    """Every setting (value, variable, source, whether secret) and the values derived from
    them, in declaration order; ``source`` is ``environment`` when the variable was set
    (even to the default value), else ``default``."""
    fields = {}
    for name, field in Settings.model_fields.items():
        secret = is_secret(field)
        fields[name] = {
            "env": env_name(name, field),
            "value": masked_value(getattr(settings, name), secret=secret),
            "source": "environment" if name in settings.model_fields_set else "default",
            "secret": secret,
        }
    derived = {
        "database_url": mask_url(settings.effective_database_url),
        "mode": "embedded" if settings.embedded else "broker",
        "rules_path": str(settings.effective_rules_path),
        "api_docs": settings.effective_api_docs,
        "broker_visibility_timeout_seconds": settings.visibility_timeout_seconds,
    }
    return {"settings": fields, "derived": derived}
