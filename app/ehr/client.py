"""EHR read client (httpx): Argonaut STU3 ``Slot/$prefetch`` and R4 Slot search, paged.

One pooled keep-alive connection set per client. Transient failures (connection
errors, timeouts, 5xx, 429) are retried with exponential backoff and jitter, and a
429's ``Retry-After`` is honoured; every other failure becomes a typed
:mod:`app.ehr.errors` exception. Pages are yielded one at a time so that callers
can stream them and never hold a whole horizon in memory.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import orjson

from .errors import EhrProtocolError, EhrRejected, EhrTimeout, EhrUnavailable

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
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


def fhir_datetime(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class EhrClient:
    def __init__(
        self,
        base_url: str,
        *,
        fhir_version: str = "stu3",
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.fhir_version = fhir_version
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"Accept": FHIR_JSON, **(headers or {})},
            limits=httpx.Limits(max_keepalive_connections=10, max_connections=20),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    @property
    def http(self) -> httpx.Client:
        """The pooled HTTP client (base URL, headers, auth), shared with the write gateway."""
        return self._http

    def __enter__(self) -> EhrClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------

    def get_json(self, url: str, params: Any = None) -> Any:
        """GET with retries for transient failures; returns decoded JSON."""
        return self._request("GET", url, params=params)

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TimeoutException as exc:
                failure: Exception = EhrTimeout(f"EHR timed out: {method} {url}", url=url)
                failure.__cause__ = exc
            except httpx.TransportError as exc:
                failure = EhrUnavailable(f"EHR unreachable: {exc.__class__.__name__}", url=url)
                failure.__cause__ = exc
            else:
                if response.status_code < 400:
                    return self._decode(response)
                if response.status_code not in RETRYABLE_STATUS:
                    raise EhrRejected(
                        f"EHR answered {response.status_code} to {method} {url}",
                        status=response.status_code,
                        url=str(response.url),
                        outcome=self._maybe_json(response),
                    )
                retry_after = _retry_after(response)
                failure = EhrUnavailable(
                    f"EHR answered {response.status_code}",
                    status=response.status_code,
                    url=str(response.url),
                )
            if attempt >= self.retry.attempts:
                raise failure
            delay = self.retry.delay(attempt, retry_after)
            log.warning(
                "ehr retry %s/%s in %.2fs: %s", attempt, self.retry.attempts, delay, failure
            )
            time.sleep(delay)

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise EhrProtocolError(
                f"EHR sent invalid JSON ({len(response.content)} bytes)", url=str(response.url)
            ) from exc

    @staticmethod
    def _maybe_json(response: httpx.Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return None

    # -- reads -----------------------------------------------------------------

    def iter_pages(self, url: str, params: Any = None) -> Iterator[Any]:
        """Yield each Bundle page, following ``next`` links to the end."""
        seen: set[str] = set()
        page = self.get_json(url, params)
        while True:
            if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
                raise EhrProtocolError(f"expected a Bundle from {url}")
            yield page
            next_url = next(
                (
                    link.get("url")
                    for link in page.get("link") or ()
                    if link.get("relation") == "next"
                ),
                None,
            )
            if not next_url:
                return
            if next_url in seen:
                raise EhrProtocolError(f"paging loop at {next_url}")
            seen.add(next_url)
            page = self.get_json(next_url)

    def prefetch_pages(
        self,
        start: datetime,
        end: datetime,
        *,
        practitioners: Sequence[str] = (),
        locations: Sequence[str] = (),
        page_size: int | None = None,
    ) -> Iterator[Any]:
        """Argonaut ``GET Slot/$prefetch`` for a window, with Schedules and actors included."""
        params: list[tuple[str, str]] = [
            ("start", fhir_datetime(start)),
            ("end", fhir_datetime(end)),
            ("_include", "Slot:schedule"),
            ("_include", "Schedule:actor"),
        ]
        params += [("practitioner", p) for p in practitioners]
        params += [("location-reference", loc) for loc in locations]
        if page_size:
            params.append(("_count", str(page_size)))
        return self.iter_pages("/Slot/$prefetch", params)
