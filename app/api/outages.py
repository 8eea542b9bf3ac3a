"""A backing service that is down answers ``503`` with an OperationOutcome, not a ``500``.

The cache database restarting, or Redis (locks, coalescing claims, the task queue)
being unreachable, is an outage the caller should retry after, not a bug of ours:
``503 transient`` with ``Retry-After`` says exactly that. It also matters for the
EHR's notifications: a 5xx makes the EHR deliver them again, and nothing of a
notification is kept until it has been queued (:mod:`app.sync.inbox`).

The database engine pings a pooled connection that sat idle before use
(:func:`app.cache.db.ping_when_idle`), drops the whole pool on a lost connection, and
redis-py and Celery reconnect by themselves, so requests after the service is back
succeed without restarting the API.
"""

from __future__ import annotations

import logging

import kombu.exceptions
import redis.exceptions
from fastapi import FastAPI, Request

from app.cache.db import DATABASE_OUTAGES

from .responses import FhirResponse, outcome_response

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5

# exception type -> the service the caller is told is unavailable
OUTAGES: dict[type[Exception], str] = {
    **dict.fromkeys(DATABASE_OUTAGES, "the cache database"),
    redis.exceptions.ConnectionError: "the coordination service (Redis)",
    redis.exceptions.TimeoutError: "the coordination service (Redis)",
    kombu.exceptions.OperationalError: "the task queue (broker)",
}


def unavailable_service(exc: BaseException) -> str | None:
    """Which backing service ``exc`` says is unavailable, or None if it is no outage."""
    for kind in type(exc).__mro__:
        if kind in OUTAGES:
            return OUTAGES[kind]
    return None


def install_outage_handlers(app: FastAPI) -> None:
    async def _unavailable(request: Request, exc: Exception) -> FhirResponse:
        service = unavailable_service(exc) or "a backing service"
        request_id = getattr(request.state, "request_id", None)
        log.warning(
            "answered 503: %s unavailable (%s: %s)",
            service,
            exc.__class__.__name__,
            str(exc).splitlines()[0][:200] if str(exc) else "",
            extra={"request_id": request_id},
        )
        return outcome_response(
            503,
            "transient",
            f"{service} is unavailable; retry shortly",
            request_id=request_id,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    for kind in OUTAGES:
        app.add_exception_handler(kind, _unavailable)
