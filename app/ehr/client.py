"""EHR read client (httpx): Argonaut STU3 ``Slot/$prefetch`` and R4 Slot search, paged.

One pooled keep-alive connection set per client (HTTP/1.1; share one client per
process). Transient failures (connection errors, timeouts, 5xx, 429) are retried
with exponential backoff and jitter, and a ``Retry-After`` is honoured; every
other failure becomes a typed :mod:`app.ehr.errors` exception. Pages are yielded
one at a time so that callers can stream them and never hold a whole horizon in
memory. Authentication is an ``httpx.Auth`` (:mod:`app.ehr.auth`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import partial
from typing import Any, Literal

import httpx
import msgspec

from app.core.domain import Schedule
from app.core.times import fhir_instant
from app.fhir.fastpage import decode_bundle_page
from app.fhir.media import FHIR_JSON
from app.fhir.parse import BundlePage, FhirParseError, next_link
from app.fhir.versions import FhirVersion
from app.fhir.versions import fhir_version as fhir_version_of

from . import transport
from .errors import EhrError, EhrProtocolError, EhrRejected, EhrTimeout, EhrUnavailable
from .transport import RETRYABLE_STATUS, Retry, RetryPolicy, retry_after_header

log = logging.getLogger(__name__)

PROVIDER_TYPES = ("Practitioner", "PractitionerRole")
MIN_PAGE_SIZE = 10


def can_filter_to(schedule: Schedule, version: FhirVersion) -> bool:
    """Whether a slot search can ask for this schedule's slots alone.

    R4 names schedules. STU3 ``$prefetch`` filters by practitioner and location
    only, so a device's or a service's schedule can only be read in an unfiltered
    answer holding every schedule of the window.
    """
    if version.names_schedules:
        return True
    kinds = {ref.split("/", 1)[0] for ref in schedule.actor_refs}
    return bool(kinds & {*PROVIDER_TYPES, "Location"})


def _smaller_count(params: Any) -> tuple[list[tuple[str, str]], int] | None:
    """``params`` with its ``_count`` halved, and the new size; None if there is none to
    halve (no ``_count`` sent, or already at the floor)."""
    if not isinstance(params, list):
        return None
    counts = [int(v) for k, v in params if k == "_count" and str(v).isdigit()]
    if not counts or counts[0] <= MIN_PAGE_SIZE:
        return None
    size = max(MIN_PAGE_SIZE, counts[0] // 2)
    return [(k, v) for k, v in params if k != "_count"] + [("_count", str(size))], size


def prefetch_parameters(
    start: datetime, end: datetime, practitioners: Sequence[str], locations: Sequence[str]
) -> list[dict[str, str]]:
    """The ``Parameters`` of a ``POST Slot/$prefetch``."""
    return [
        {"name": "start", "valueDateTime": fhir_instant(start)},
        {"name": "end", "valueDateTime": fhir_instant(end)},
        *({"name": "practitioner", "valueUri": p} for p in practitioners),
        *({"name": "location-reference", "valueUri": loc} for loc in locations),
    ]


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
        auth: httpx.Auth | None = None,
        page_size: int | None = None,
        prefetch_method: Literal["GET", "POST"] = "GET",
        stop: threading.Event | None = None,
    ) -> None:
        """``stop``, once set, ends retrying at once: a shutting-down owner must not wait
        out the backoff of a request to an EHR that is gone."""
        self.base_url = base_url.rstrip("/")
        self._stop = stop
        self.version = fhir_version_of(fhir_version)
        self.retry = retry or RetryPolicy()
        self.page_size = page_size
        self.prefetch_method = prefetch_method
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"Accept": FHIR_JSON, **(headers or {})},
            limits=httpx.Limits(
                max_keepalive_connections=10, max_connections=20, keepalive_expiry=30.0
            ),
            transport=transport,
            auth=auth,
        )

    def close(self) -> None:
        self._http.close()

    @property
    def stop(self) -> threading.Event | None:
        """Once set, retries end at once (shared with the write gateway)."""
        return self._stop

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

    def read(self, reference: str) -> Any:
        """Read one resource by relative reference (``Practitioner/1``)."""
        return self._request("GET", f"/{reference}")

    def post_json(
        self, url: str, body: Any, params: Any = None, *, idempotent: bool = False
    ) -> Any:
        """POST a FHIR JSON body. Only ``idempotent`` requests are retried after a timeout."""
        return self._request(
            "POST", url, params=params, content=msgspec.json.encode(body), idempotent=idempotent
        )

    def put_json(self, url: str, body: Any) -> Any:
        return self._request("PUT", url, content=msgspec.json.encode(body), idempotent=True)

    def delete(self, url: str) -> Any:
        return self._request("DELETE", url, idempotent=True)

    def _request(self, method: str, url: str, *, idempotent: bool = True, **kwargs: Any) -> Any:
        return self._decode(self._send(method, url, idempotent=idempotent, **kwargs))

    def _send(
        self, method: str, url: str, *, idempotent: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """One request with the retry policy; a 2xx/3xx response or a typed error."""
        if "content" in kwargs:
            kwargs["headers"] = {"Content-Type": FHIR_JSON}
        judge = partial(self._judge, method, url, idempotent)
        return transport.send(
            self._http, method, url, judge=judge, policy=self.retry, stop=self._stop, **kwargs
        )

    def _judge(
        self, method: str, url: str, idempotent: bool, answer: httpx.Response | Exception
    ) -> httpx.Response | Retry:
        """A read's failures are all worth repeating, except a refusal; a POST that may
        have arrived is not repeated after a timeout or a lost connection."""
        if isinstance(answer, httpx.TimeoutException):
            failure: EhrError = EhrTimeout(f"EHR timed out: {method} {url}", url=url)
            failure.__cause__ = answer
            if not idempotent and not isinstance(answer, httpx.ConnectTimeout):
                raise failure from answer  # it may have been done: do not do it twice
            return Retry(failure)
        if isinstance(answer, Exception):
            failure = EhrUnavailable(f"EHR unreachable: {answer.__class__.__name__}", url=url)
            failure.__cause__ = answer
            if not idempotent and not isinstance(answer, httpx.ConnectError):
                raise failure from answer
            return Retry(failure)
        if answer.status_code < 400:
            return answer
        if answer.status_code not in RETRYABLE_STATUS:
            raise EhrRejected(
                f"EHR answered {answer.status_code} to {method} {url}",
                status=answer.status_code,
                url=str(answer.url),
                outcome=self._maybe_json(answer),
            )
        failure = EhrUnavailable(
            f"EHR answered {answer.status_code}", status=answer.status_code, url=str(answer.url)
        )
        return Retry(failure, retry_after_header(answer.headers))

    def _pause(self, attempt: int) -> bool:
        """Before reading a damaged page again (the transport's own loop has retried
        the request already): False when told to stop meanwhile."""
        return transport.pause(self.retry.delay(attempt), self._stop)

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        if not response.content:
            return None
        try:
            return msgspec.json.decode(response.content)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise EhrProtocolError(
                f"EHR sent invalid JSON ({len(response.content)} bytes)", url=str(response.url)
            ) from exc

    @staticmethod
    def _maybe_json(response: httpx.Response) -> Any:
        try:
            return msgspec.json.decode(response.content)
        except (msgspec.DecodeError, RecursionError):
            return None

    # -- reads -----------------------------------------------------------------

    def iter_pages(self, url: str, params: Any = None) -> Iterator[Any]:
        """Yield each Bundle page, following ``next`` links to the end (lazily)."""
        first = self._negotiate(params, lambda ps: self._json_page(url, ps))
        yield from self._follow(first, url)

    def _negotiate(self, params: Any, first_page: Callable[[Any], Any]) -> Any:
        """The first page of a search, asking for smaller pages while the EHR refuses our
        ``_count`` (400/422: many servers cap it): halved down to ``MIN_PAGE_SIZE``, and
        the size that worked is kept for every later search of this client."""
        while True:
            try:
                return first_page(params)
            except EhrRejected as exc:
                smaller = _smaller_count(params) if exc.status in (400, 422) else None
                if smaller is None:
                    raise
                params, size = smaller
                log.warning("EHR refused _count (%s): asking for pages of %s", exc.status, size)
                self.page_size = size

    def _parsed_pages(
        self, method: str, url: str, params: Any, body: Any = None
    ) -> Iterator[BundlePage]:
        """Pages decoded straight from bytes into slots (:mod:`app.fhir.fastpage`)."""
        seen: set[str] = set()
        content = None if body is None else msgspec.json.encode(body)
        page = self._negotiate(
            params,
            lambda ps: self._read_page(
                partial(self._send, method, url, params=ps, content=content)
            ),
        )
        while True:
            yield page
            next_url = page.next_url
            if not next_url:
                return
            if next_url in seen:
                raise EhrProtocolError(f"paging loop at {next_url}")
            seen.add(next_url)
            page = self._read_page(partial(self._send, "GET", next_url))

    def _read_page(self, send: Callable[[], httpx.Response]) -> BundlePage:
        """One page, read again on its own when it arrives damaged (cut short, not JSON):
        one bad page must not cost the whole window it belongs to."""
        attempt = 0
        while True:
            attempt += 1
            response = send()
            try:
                return decode_bundle_page(response.content)
            except FhirParseError as exc:
                failure = EhrProtocolError(f"{exc} (from {response.url})", url=str(response.url))
                if attempt >= self.retry.attempts:
                    raise failure from exc
                log.warning(
                    "bad page %s/%s, reading it again: %s", attempt, self.retry.attempts, exc
                )
                if not self._pause(attempt):
                    raise failure from exc

    def _follow(self, page: Any, url: str) -> Iterator[Any]:
        seen: set[str] = set()
        while True:
            if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
                raise EhrProtocolError(f"expected a Bundle from {url}")
            yield page
            next_url = next_link(page)
            if not next_url:
                return
            if next_url in seen:
                raise EhrProtocolError(f"paging loop at {next_url}")
            seen.add(next_url)
            page = self._json_page(next_url)

    def _json_page(self, url: str, params: Any = None) -> Any:
        """A page as JSON, read again on its own when damaged (see :meth:`_read_page`)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                page = self.get_json(url, params)
            except EhrProtocolError:
                if attempt >= self.retry.attempts or not transport.pause(
                    self.retry.delay(attempt), self._stop
                ):
                    raise
                continue
            if isinstance(page, dict) and page.get("resourceType") == "Bundle":
                return page
            if attempt >= self.retry.attempts or not transport.pause(
                self.retry.delay(attempt), self._stop
            ):
                return page  # _follow names the problem

    def window_pages(
        self, start: datetime, end: datetime, schedules: Sequence[Schedule] | None = None
    ) -> Iterator[BundlePage]:
        """Every page of the EHR's slots for a window (parsed): of some schedules, or all.

        The answer may hold more than asked (STU3 filters by actor, not schedule:
        repeated practitioners are OR'ed, practitioners AND locations, the IG's rule
        for actor kinds); callers keep only the schedules they asked for.
        """
        page_size = self.page_size
        if not self.version.has_prefetch:
            params: list[tuple[str, str]] = [
                ("start", f"ge{fhir_instant(start)}"),
                ("start", f"lt{fhir_instant(end)}"),
                ("status", "free"),
                ("_include", "Slot:schedule"),
            ]
            if schedules is not None:
                refs = ",".join(f"Schedule/{s.id}" for s in schedules)
                params.append(("schedule", refs))
            if page_size:
                params.append(("_count", str(page_size)))
            return self._parsed_pages("GET", "/Slot", params)
        practitioners: list[str] = []
        locations: list[str] = []
        for schedule in schedules or ():
            providers = [r for r in schedule.actor_refs if r.split("/")[0] in PROVIDER_TYPES]
            places = [r for r in schedule.actor_refs if r.startswith("Location/")]
            if not can_filter_to(schedule, self.version):
                # a device or service schedule: $prefetch cannot name it, ask for everything
                practitioners, locations = [], []
                break
            practitioners += providers
            locations += places
        control: list[tuple[str, str]] = [
            ("_include", "Slot:schedule"),
            ("_include", "Schedule:actor"),
        ]
        if page_size:
            control.append(("_count", str(page_size)))
        practitioners, locations = sorted(set(practitioners)), sorted(set(locations))
        if self.prefetch_method == "POST":
            body = {
                "resourceType": "Parameters",
                "parameter": prefetch_parameters(start, end, practitioners, locations),
            }
            return self._parsed_pages("POST", "/Slot/$prefetch", control, body)
        params = [("start", fhir_instant(start)), ("end", fhir_instant(end)), *control]
        params += [("practitioner", p) for p in practitioners]
        params += [("location-reference", loc) for loc in locations]
        return self._parsed_pages("GET", "/Slot/$prefetch", params)

    def slot_search_pages(
        self,
        start: datetime | None,
        end: datetime | None,
        *,
        schedule_ids: Sequence[str] | None = None,
        statuses: Sequence[str] = (),
        updated_after: datetime | None = None,
        include_schedule: bool = True,
        page_size: int | None = None,
    ) -> Iterator[Any]:
        """R4 ``GET Slot?schedule=&start=ge&start=lt&_lastUpdated=gt`` with paging."""
        params: list[tuple[str, str]] = []
        if start is not None:
            params.append(("start", f"ge{fhir_instant(start)}"))
        if end is not None:
            params.append(("start", f"lt{fhir_instant(end)}"))
        if schedule_ids:
            params.append(("schedule", ",".join(f"Schedule/{sid}" for sid in schedule_ids)))
        if statuses:
            params.append(("status", ",".join(statuses)))
        if updated_after is not None:
            params.append(("_lastUpdated", f"gt{fhir_instant(updated_after)}"))
        if include_schedule:
            params.append(("_include", "Slot:schedule"))
        page_size = page_size or self.page_size
        if page_size:
            params.append(("_count", str(page_size)))
        return self.iter_pages("/Slot", params)

    def schedule_pages(
        self, *, actor: str | None = None, page_size: int | None = None
    ) -> Iterator[Any]:
        """``GET Schedule`` (optionally ``?actor=``) with actors included, every page."""
        params: list[tuple[str, str]] = [("_include", "Schedule:actor")]
        if actor:
            params.append(("actor", actor))
        page_size = page_size or self.page_size
        if page_size:
            params.append(("_count", str(page_size)))
        return self.iter_pages("/Schedule", params)

    def appointment_pages(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        slot_ids: Sequence[str] = (),
        statuses: Sequence[str] = (),
        page_size: int | None = None,
        updated_after: datetime | None = None,
    ) -> Iterator[Any]:
        """R4 ``GET Appointment?date=ge&date=lt&slot=&status=&_lastUpdated=gt`` with paging
        (JSON pages)."""
        params: list[tuple[str, str]] = []
        if updated_after is not None:
            params.append(("_lastUpdated", f"gt{fhir_instant(updated_after)}"))
        if start is not None:
            params.append(("date", f"ge{fhir_instant(start)}"))
        if end is not None:
            params.append(("date", f"lt{fhir_instant(end)}"))
        if slot_ids:
            params.append(("slot", ",".join(f"Slot/{sid}" for sid in slot_ids)))
        if statuses:
            params.append(("status", ",".join(statuses)))
        page_size = page_size or self.page_size
        if page_size:
            params.append(("_count", str(page_size)))
        return self.iter_pages("/Appointment", params)
