"""Writes to the EHR (hold, book, cancel, Patient, Coverage) and the reads that go with them.

The only module that knows how each kind of EHR spells a write:

* ``stu3`` (Argonaut Scheduling): ``POST Appointment/$hold`` and ``$book`` with a
  ``Parameters`` body, answered by an avail-bundle (an ``Appointment`` answered
  ``cancelled`` is a refusal);
* plain FHIR REST (``r4`` by default, see :mod:`app.ehr.booking_path`): a hold is
  ``POST Appointment`` with status ``pending``, a booking ``POST Appointment`` with
  status ``booked``, booking a held appointment ``PUT Appointment/{id}`` with status
  ``booked``; the service re-checks the slots first (:meth:`slot_states`,
  :meth:`active_appointments`) and cancels lapsed holds (:meth:`cancel_appointment`).

Both cancel with ``PATCH Appointment/{id}``.

Retries follow one rule: a request is repeated only when repeating it cannot do
the work twice -- reads, PUT, a cancel PATCH, and any request that provably never
reached the EHR (connection refused, 429). A hold or booking that was sent and
got no definite answer raises :class:`~app.ehr.errors.EhrOutcomeUnknown`; the
caller reads the EHR's state back instead of guessing.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import httpx
import msgspec

from app.core.occupancy import ACTIVE_STATUSES
from app.fhir.media import FHIR_JSON
from app.fhir.parse import next_link

from . import transport
from .booking_path import BookingPath, booking_path
from .client import EhrClient
from .errors import (
    EhrConflict,
    EhrError,
    EhrNotProcessed,
    EhrOutcomeUnknown,
    EhrProtocolError,
    EhrRejected,
    EhrTimeout,
    EhrUnavailable,
    EhrWriteTimeout,
    outcome_issues,
)
from .transport import Retry, RetryPolicy, http_date, retry_after_header

log = logging.getLogger(__name__)

_SERVER_ERRORS = frozenset({500, 502, 503, 504})
_CONFLICT_STATUS = frozenset({409, 412})
_CONFLICT_ISSUES = frozenset({"conflict", "duplicate"})
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True, slots=True)
class EhrAnswer:
    status: int
    body: Any
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class AppointmentAnswer:
    """The EHR's Appointment after a hold or booking."""

    appointment: dict[str, Any]
    created: bool  # the EHR made a new Appointment (201) rather than changing one
    expires: datetime | None = None  # end of a hold, from the ``Expires`` header
    issues: list[dict[str, Any]] = field(default_factory=list)  # the EHR's warnings


def _is_conflict(status: int, body: Any) -> bool:
    return status in _CONFLICT_STATUS or any(
        i.get("code") in _CONFLICT_ISSUES for i in outcome_issues(body)
    )


def _parameters(*params: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [p for p in params if p]}


def _with_patients(
    appointment: dict[str, Any], patients: Sequence[str], status: str
) -> dict[str, Any]:
    present = {
        (p.get("actor") or {}).get("reference") for p in appointment.get("participant") or ()
    }
    for ref in patients:
        if ref not in present:
            appointment.setdefault("participant", []).append(
                {"actor": {"reference": ref}, "required": "required", "status": status}
            )
    return appointment


def _fixed(path: BookingPath) -> BookingPath:
    return path


class EhrGateway:
    """EHR writes over the read client's pooled connection (same base URL, auth, retry policy)."""

    def __init__(
        self,
        client: EhrClient,
        *,
        retry: RetryPolicy | None = None,
        booking: BookingPath | Callable[[], BookingPath] | None = None,
    ) -> None:
        """``booking``: ``$hold``/``$book`` operations or plain Appointment writes, or
        a function that says which as of now (the EHR's capabilities, as last read);
        default: :func:`app.ehr.booking_path.booking_path` of the client's FHIR version."""
        self.client = client
        chosen = booking or booking_path(client.version)
        self._booking = chosen if callable(chosen) else partial(_fixed, chosen)
        self.retry = retry or client.retry
        self._http = client.http

    @property
    def booking(self) -> BookingPath:
        return self._booking()

    # -- transport -------------------------------------------------------------

    def send(
        self,
        method: str,
        url: str,
        *,
        body: Any = None,
        content: bytes | None = None,
        content_type: str = FHIR_JSON,
        params: Any = None,
        repeatable: bool,
        attempts: int | None = None,
        timeout: float | None = None,
    ) -> EhrAnswer:
        """One request; ``repeatable`` says whether doing it twice is harmless;
        ``attempts`` and ``timeout`` override the client's (a read that must be quick)."""
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        attempts = attempts or self.retry.attempts
        headers = {}
        if body is not None:
            content = msgspec.json.encode(body)
        if content is not None:
            headers["Content-Type"] = content_type
        response = transport.send(
            self._http,
            method,
            url,
            judge=partial(self._judge, method, url, repeatable),
            policy=self.retry,
            attempts=attempts,
            stop=self.client.stop,
            content=content,
            params=params,
            headers=headers,
            **extra,
        )
        return EhrAnswer(response.status_code, self._decode(response, repeatable), response.headers)

    def _judge(
        self, method: str, url: str, repeatable: bool, answer: httpx.Response | Exception
    ) -> httpx.Response | Retry:
        """Repeat only what cannot be done twice: anything never sent (refused, 429),
        and a repeatable request after a timeout, a lost connection or a 5xx. A write
        that may have arrived raises at once: its outcome is unknown, not failed."""
        if isinstance(answer, _NEVER_SENT):
            failure: EhrError = EhrNotProcessed(
                f"EHR unreachable: {answer.__class__.__name__}", url=url
            )
            failure.__cause__ = answer
            return Retry(failure)
        if isinstance(answer, httpx.TimeoutException):
            if not repeatable:
                raise EhrWriteTimeout(f"EHR timed out: {method} {url}", url=url) from answer
            failure = EhrTimeout(f"EHR timed out: {method} {url}", url=url)
            failure.__cause__ = answer
            return Retry(failure)
        if isinstance(answer, Exception):
            if not repeatable:
                raise EhrOutcomeUnknown(
                    f"EHR connection lost: {answer.__class__.__name__}", url=url
                ) from answer
            failure = EhrUnavailable(f"EHR unreachable: {answer.__class__.__name__}", url=url)
            failure.__cause__ = answer
            return Retry(failure)
        status = answer.status_code
        if status < 300:
            return answer
        if status == 429:
            failure = EhrNotProcessed("EHR throttled the request", status=429, url=url)
            return Retry(failure, retry_after_header(answer.headers))
        if status in _SERVER_ERRORS:
            if not repeatable:
                raise EhrOutcomeUnknown(
                    f"EHR answered {status} to {method} {url}", status=status, url=url
                )
            return Retry(EhrUnavailable(f"EHR answered {status}", status=status, url=url))
        raise self._rejection(method, url, answer)

    @staticmethod
    def _decode(response: httpx.Response, repeatable: bool) -> Any:
        if not response.content:
            return None
        try:
            return msgspec.json.decode(response.content)
        except (msgspec.DecodeError, RecursionError) as exc:
            message = f"EHR sent invalid JSON ({len(response.content)} bytes)"
            if repeatable:
                raise EhrProtocolError(message, url=str(response.url)) from exc
            # The EHR said yes to a write, but what it made cannot be read from here.
            raise EhrOutcomeUnknown(message, status=response.status_code) from exc

    @staticmethod
    def _rejection(method: str, url: str, response: httpx.Response) -> EhrRejected:
        try:
            outcome = msgspec.json.decode(response.content) if response.content else None
        except (msgspec.DecodeError, RecursionError):
            outcome = None
        status = response.status_code
        kind = EhrConflict if _is_conflict(status, outcome) else EhrRejected
        return kind(
            f"EHR answered {status} to {method} {url}", status=status, url=url, outcome=outcome
        )

    # -- appointments ------------------------------------------------------------

    def hold(self, appointment: dict[str, Any]) -> AppointmentAnswer:
        """Hold a new appointment built by us (Use Case 3's client-generated argo-appt)."""
        if self.booking == "appointment":
            resource = copy.deepcopy(appointment)
            resource["status"] = "pending"
            for p in resource.get("participant") or ():
                p["status"] = "tentative"
            return self._appointment_answer(
                self.send("POST", "/Appointment", body=resource, repeatable=False)
            )
        body = _parameters({"name": "appt-resource", "resource": appointment})
        return self._appointment_answer(
            self.send("POST", "/Appointment/$hold", body=body, repeatable=False)
        )

    def book(
        self, appointment: dict[str, Any], patients: Sequence[str], comment: str | None
    ) -> AppointmentAnswer:
        """Book a new appointment built by us, for ``patients`` (``Patient/<id>``)."""
        if self.booking == "appointment":
            resource = _with_patients(copy.deepcopy(appointment), patients, "accepted")
            resource["status"] = "booked"
            for p in resource.get("participant") or ():
                p["status"] = "accepted"
            if comment:
                resource["comment"] = comment
            return self._appointment_answer(
                self.send("POST", "/Appointment", body=resource, repeatable=False)
            )
        body = _parameters(
            {"name": "appt-resource", "resource": appointment},
            *({"name": "patient-id", "valueUri": ref} for ref in patients),
            {"name": "comment", "valueString": comment} if comment else {},
        )
        return self._appointment_answer(
            self.send("POST", "/Appointment/$book", body=body, repeatable=False)
        )

    def book_existing(
        self, appointment_id: str, patients: Sequence[str], comment: str | None
    ) -> AppointmentAnswer:
        """Book an appointment the EHR already has (a hold), adding the patients."""
        if self.booking == "appointment":
            current = self.read_appointment(appointment_id)
            if current.get("status") not in ("pending", "proposed", "booked"):
                # cancelled meanwhile (its hold expired, say): a PUT would revive it
                raise EhrConflict(
                    f"Appointment/{appointment_id} is {current.get('status')}",
                    status=409,
                    outcome=None,
                )
            resource = _with_patients(copy.deepcopy(current), patients, "accepted")
            resource["status"] = "booked"
            if comment:
                resource["comment"] = comment
            resource.pop("meta", None)
            answer = self.send(
                "PUT", f"/Appointment/{appointment_id}", body=resource, repeatable=True
            )
            return self._appointment_answer(answer, created=False)
        body = _parameters(
            {"name": "appt-id", "valueUri": f"Appointment/{appointment_id}"},
            *({"name": "patient-id", "valueUri": ref} for ref in patients),
            {"name": "comment", "valueString": comment} if comment else {},
        )
        return self._appointment_answer(
            self.send("POST", "/Appointment/$book", body=body, repeatable=False), created=False
        )

    def patch_appointment(
        self, appointment_id: str, patch: bytes, content_type: str
    ) -> dict[str, Any]:
        """Forward a PATCH (cancel or release: setting a status twice changes nothing)."""
        answer = self.send(
            "PATCH",
            f"/Appointment/{appointment_id}",
            content=patch,
            content_type=content_type,
            repeatable=True,
        )
        return self._resource(answer.body, "Appointment")

    def read_appointment(self, appointment_id: str) -> dict[str, Any]:
        answer = self.send("GET", f"/Appointment/{appointment_id}", repeatable=True)
        return self._resource(answer.body, "Appointment")

    def read_patient(self, patient_id: str, *, timeout: float) -> dict[str, Any]:
        """One attempt: ``$find`` waits for it, and a failure only skips eligibility."""
        answer = self.send(
            "GET", f"/Patient/{patient_id}", repeatable=True, attempts=1, timeout=timeout
        )
        return self._resource(answer.body, "Patient")

    def cancel_appointment(self, appointment_id: str, reason: str) -> dict[str, Any]:
        """Set an Appointment ``cancelled`` with a cancelation reason (read, then PUT:
        a plain server's update; doing it twice changes nothing)."""
        current = copy.deepcopy(self.read_appointment(appointment_id))
        if current.get("status") == "cancelled":
            return current
        current.pop("meta", None)
        current["status"] = "cancelled"
        current["cancelationReason"] = {"text": reason}
        answer = self.send("PUT", f"/Appointment/{appointment_id}", body=current, repeatable=True)
        return self._resource(answer.body, "Appointment")

    def set_slot_status(self, slot_id: str, status: str) -> None:
        """Write a Slot's status at the EHR (read, then PUT with only the status changed;
        doing it twice changes nothing)."""
        current = copy.deepcopy(
            self._resource(self.send("GET", f"/Slot/{slot_id}", repeatable=True).body, "Slot")
        )
        if current.get("status") == status:
            return
        current.pop("meta", None)
        current["status"] = status
        self.send("PUT", f"/Slot/{slot_id}", body=current, repeatable=True)

    def slot_states(self, slot_ids: Sequence[str]) -> dict[str, str | None]:
        """Each slot's status at the EHR now; None for a slot the EHR no longer has."""
        states: dict[str, str | None] = {}
        for sid in dict.fromkeys(slot_ids):
            try:
                body = self.send("GET", f"/Slot/{sid}", repeatable=True).body
            except EhrRejected as exc:
                if exc.status not in (404, 410):
                    raise
                states[sid] = None
                continue
            slot = self._resource(body, "Slot")
            states[sid] = str(slot.get("status") or "")
        return states

    def active_appointments(self, slot_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The EHR's active Appointments referencing any of these slots."""
        found, _ = self.search(
            "Appointment",
            [
                ("slot", ",".join(f"Slot/{sid}" for sid in dict.fromkeys(slot_ids))),
                ("status", ",".join(ACTIVE_STATUSES)),
            ],
            limit=1000,
        )
        return found

    def search(
        self, resource_type: str, params: Sequence[tuple[str, str]], *, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """Every match of a search, following pages up to ``limit`` resources.

        Returns (resources, truncated). Only resources of ``resource_type`` are kept
        (included resources and OperationOutcomes are dropped).
        """
        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        url: str | None = f"/{resource_type}"
        query: Any = list(params)
        while url is not None:
            page = self.send("GET", url, params=query, repeatable=True).body
            if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
                raise EhrProtocolError(f"expected a Bundle from {resource_type} search")
            for entry in page.get("entry") or ():
                resource = (entry or {}).get("resource") or {}
                if resource.get("resourceType") == resource_type:
                    if len(found) >= limit:
                        return found, True
                    found.append(resource)
            url = next_link(page)
            query = None
            if url in seen:
                raise EhrProtocolError(f"paging loop in {resource_type} search")
            if url:
                seen.add(url)
        return found, False

    # -- patients and coverage -----------------------------------------------------

    def register_patient(self, patient: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """POST the Patient (never with ``If-None-Exist``); (patient, created)."""
        answer = self.send("POST", "/Patient", body=patient, repeatable=False)
        return self._resource(answer.body, "Patient"), answer.status == 201

    def create_coverage(self, coverage: dict[str, Any]) -> dict[str, Any]:
        answer = self.send("POST", "/Coverage", body=coverage, repeatable=False)
        return self._resource(answer.body, "Coverage")

    def update_coverage(
        self, coverage_id: str, coverage: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        answer = self.send("PUT", f"/Coverage/{coverage_id}", body=coverage, repeatable=True)
        return self._resource(answer.body, "Coverage"), answer.status == 201

    # -- answers -------------------------------------------------------------------

    @staticmethod
    def _resource(body: Any, resource_type: str) -> dict[str, Any]:
        if not isinstance(body, dict) or body.get("resourceType") != resource_type:
            found = body.get("resourceType") if isinstance(body, dict) else type(body).__name__
            raise EhrProtocolError(f"expected a {resource_type} from the EHR, got {found}")
        return body

    def _appointment_answer(
        self, answer: EhrAnswer, *, created: bool | None = None
    ) -> AppointmentAnswer:
        """The Appointment of an operation answer (a Bundle in STU3, the resource in R4)."""
        body = answer.body
        issues: list[dict[str, Any]] = []
        appointment: dict[str, Any] | None = None
        if isinstance(body, dict) and body.get("resourceType") == "Bundle":
            for entry in body.get("entry") or ():
                resource = (entry or {}).get("resource") or {}
                if resource.get("resourceType") == "Appointment" and appointment is None:
                    appointment = resource
                issues.extend(outcome_issues(resource))
        elif isinstance(body, dict) and body.get("resourceType") == "Appointment":
            appointment = body
        if appointment is None:
            raise EhrOutcomeUnknown(
                "EHR accepted the request but its answer holds no Appointment",
                status=answer.status,
            )
        if appointment.get("status") == "cancelled":
            # The Argonaut way of saying no: the appointment comes back cancelled.
            raise EhrConflict(
                "EHR refused: the appointment came back cancelled",
                status=answer.status,
                outcome={"resourceType": "OperationOutcome", "issue": issues} if issues else None,
            )
        return AppointmentAnswer(
            appointment=appointment,
            created=answer.status == 201 if created is None else created,
            expires=http_date(answer.headers.get("Expires")),
            issues=issues,
        )
