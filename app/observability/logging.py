"""Logging setup: JSON lines (production) or readable text, always with the correlation id.

PHI policy: log ids, counts, durations and route templates, never resource content,
query strings or request bodies. Two safety nets: :class:`PhiRedactingFilter`
replaces structured ``extra=`` fields with demographic keys, and in production
tracebacks keep their stack but not exception messages. Neither can catch PHI
formatted into a message, which is why the policy is "ids only".
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.msgspec import MsgspecFormatter

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


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def format_exception_without_messages(exc_info: ExcInfo) -> str:
    """The stack and exception types of a chain, without the messages.

    Exception messages carry data (SQL parameters, EHR URLs with search values,
    validation input) that may identify a patient; the stack is what debugging needs.
    """
    parts: list[str] = []
    exc: BaseException | None = exc_info[1]
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        frames = "".join(traceback.format_tb(exc.__traceback__))
        name = f"{type(exc).__module__}.{type(exc).__qualname__}"
        parts.append(f"Traceback (most recent call last):\n{frames}{name}: [message withheld]")
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "\n\nwhich was raised while handling or from:\n\n".join(parts)


class _NoMessagesJson(MsgspecFormatter):
    def formatException(self, ei: Any) -> str:
        return format_exception_without_messages(ei)


class _NoMessagesText(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        return format_exception_without_messages(ei)


def make_handler(
    fmt: str, stream: Any = None, *, redact_exceptions: bool = False
) -> logging.Handler:
    """A stream handler in ``fmt`` ("json"/"text") with the request id and PHI filters.

    ``redact_exceptions`` keeps tracebacks but withholds exception messages (production).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        json_cls = _NoMessagesJson if redact_exceptions else MsgspecFormatter
        handler.setFormatter(
            json_cls(
                "%(levelname)s %(name)s %(message)s %(request_id)s %(process)d",
                rename_fields={"levelname": "level", "name": "logger", "process": "pid"},
                timestamp="time",
                # uvicorn's terminal-coloured duplicate of the message
                reserved_attrs=[*RESERVED_ATTRS, "color_message"],
            )
        )
    else:
        text_cls = _NoMessagesText if redact_exceptions else logging.Formatter
        handler.setFormatter(
            text_cls("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
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
    redact = settings.environment == "production"
    root.addHandler(make_handler(settings.log_format, stream, redact_exceptions=redact))
    root.setLevel((level or settings.log_level).upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
