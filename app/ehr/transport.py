"""The one retry loop that talks to the EHR, under one policy.

Reads (:class:`app.ehr.client.EhrClient`) and writes (:class:`app.ehr.gateway.EhrGateway`)
differ only in what a failure means: a read may always be repeated, a write only
where repeating it cannot do the work twice. Each hands :func:`send` a *judge* that
says, per answer or transport error, "done", "retry" (with the error to raise if no
attempt is left) or raises at once. The loop itself honours the attempt budget, the
EHR's ``Retry-After``, an optional deadline, and a stop signal: an owner shutting
down does not wait out a backoff. (A retry library would need a custom wait, stop,
sleep and retry predicate for exactly these four, so this stays twenty lines.)
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from .errors import EhrError

log = logging.getLogger("app.ehr.client")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return backoff * (0.5 + random.random() / 2)  # "equal jitter"


@dataclass(frozen=True, slots=True)
class Retry:
    """The judge's verdict on a failed attempt that may be repeated."""

    failure: EhrError  # raised if no attempt (or time) is left
    retry_after: float | None = None  # the EHR's Retry-After, seconds


Judge = Callable[[httpx.Response | httpx.TransportError], httpx.Response | Retry]


def send(
    http: httpx.Client,
    method: str,
    url: str,
    *,
    judge: Judge,
    policy: RetryPolicy,
    attempts: int | None = None,
    stop: threading.Event | None = None,
    deadline: float | None = None,
    **request: Any,
) -> httpx.Response:
    """``http.request(method, url, **request)`` until the judge accepts an answer, an
    attempt budget (``attempts`` or the policy's) or the ``deadline`` (monotonic
    seconds) runs out, or ``stop`` is set; then the last failure is raised."""
    attempts = attempts or policy.attempts
    attempt = 0
    while True:
        attempt += 1
        try:
            verdict = judge(_unlinked(http.request(method, url, **request)))
        except httpx.TransportError as exc:
            verdict = judge(exc)
        if isinstance(verdict, httpx.Response):
            return verdict
        if attempt >= attempts:
            raise verdict.failure
        delay = policy.delay(attempt, verdict.retry_after)
        if deadline is not None and time.monotonic() + delay > deadline:
            raise verdict.failure
        log.warning("ehr retry %s/%s in %.2fs: %s", attempt, attempts, delay, verdict.failure)
        if not pause(delay, stop):
            raise verdict.failure


def _unlinked(response: httpx.Response) -> httpx.Response:
    """The response, out of the reference cycle httpx's client puts it in.

    The client wraps a response's stream in one that refers back to the response (to
    close it), so a response is freed only by the cyclic collector, never as soon as it
    is dropped. A worker reading a window's pages (1-2 MB each at 1M slots) held ~7 of
    them per thread until the next collection. ``request`` has read the body and
    closed the stream by now: a plain stream of the same bytes takes its place."""
    response.stream = httpx.ByteStream(response.content)
    return response


def pause(delay: float, stop: threading.Event | None) -> bool:
    """Back off before the next attempt; False when told to stop meanwhile."""
    if stop is None:
        time.sleep(delay)
        return True
    return not stop.wait(delay)


def http_date(value: str | None) -> datetime | None:
    """An HTTP-date header value (``Expires``, ``Retry-After``) in UTC; None if absent or bad."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def retry_after_header(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds, given as delta-seconds or as an HTTP date."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    when = http_date(value)
    return None if when is None else max(0.0, (when - datetime.now(UTC)).total_seconds())
