"""Logging setup: JSON lines (production) or readable text, always with the correlation id.

PHI policy: log ids, counts, durations and route templates, never resource content,
query strings or request bodies. :class:`PhiRedactingFilter` is the safety net for
structured ``extra=`` fields that carry demographic keys by mistake; it cannot catch
PHI formatted into a message, which is why the policy is "ids only".
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from pythonjsonlogger.orjson import OrjsonFormatter

from app.settings import Settings

from .context import current_request_id

REDACTED = "[redacted]"

# Keys whose values identify a person (FHIR Patient/RelatedPerson element names and friends).
PHI_KEYS = frozenset(
    {
        "name",
        "given",
        "family",
        "birthdate",
        "birth_date",
        "dob",
        "identifier",
        "identifiers",
        "telecom",
        "phone",
        "email",
        "address",
        "ssn",
        "mrn",
        "patient_name",
        "contact",
        "photo",
    }
)

# Libraries that would log full URLs (query strings may name patients) at INFO.
_QUIET = ("httpx", "httpcore", "urllib3", "uvicorn.access")

_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_MARK = "_slotsync_handler"


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values under PHI keys replaced (nested dicts and lists)."""
    if isinstance(value, Mapping):
        return {k: REDACTED if str(k).lower() in PHI_KEYS else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current correlation id (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or "-"
        return True


class PhiRedactingFilter(logging.Filter):
    """Replaces PHI-named ``extra=`` fields (and PHI keys nested in them) before formatting."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in list(record.__dict__.items()):
            if key in _STANDARD_ATTRS:
                continue
            record.__dict__[key] = REDACTED if key.lower() in PHI_KEYS else redact(value)
        return True


def make_handler(fmt: str, stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            OrjsonFormatter(
                "%(levelname)s %(name)s %(message)s %(request_id)s",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    handler.addFilter(RequestIdFilter())
    handler.addFilter(PhiRedactingFilter())
    setattr(handler, _MARK, True)
    return handler


def configure_logging(settings: Settings, *, level: str | None = None, stream: Any = None) -> None:
    """Install one slotsync handler on the root logger (idempotent; replaces an earlier one).

    Called by the CLI and by the app factory, because ``uvicorn --workers`` starts
    fresh processes that inherit no logging configuration.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    root.addHandler(make_handler(settings.log_format, stream))
    root.setLevel((level or settings.log_level).upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
