"""Appointments with real slot state: the IG's hold/book/cancel state machine, or plain R4 storage.

Appointment state machine (IG state diagram): hold -> Appointment ``pending``,
its slots held (busy-tentative in R4, busy in STU3) until the hold expires or is
released; book -> ``booked``, slots busy; cancel (PATCH/PUT status cancelled, or
``cancelled-appt-id`` on a reschedule) -> slots free again. Every slot change goes
through the store, so it is versioned and notified. A slot can belong to at most
one live appointment: a second hold/book of it is a 409 conflict.

The plain-r4 profile has none of this: create, PUT and PATCH store the Appointment
as a generic R4 server does (validated, references resolved, versioned), whatever
its status, without touching or checking its slots, so two Appointments may
reference one slot; :meth:`AppointmentBook.slot_appointments` is the ground truth
for that. Which slots an Appointment names or needs: :mod:`sandbox_ehr.appointment_slots`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandbox_ehr import codes, validate
from sandbox_ehr.appointment_slots import match_slots, participant_refs, slot_refs
from sandbox_ehr.config import SandboxConfig
from sandbox_ehr.errors import bad_request, conflict, not_found, unprocessable
from sandbox_ehr.model import BUSY, FREE, HELD, slot_id, slot_index
from sandbox_ehr.patients import PatientRecords
from sandbox_ehr.search import normalise_ref
from sandbox_ehr.store import SlotStore
from sandbox_ehr.timefmt import BadDateTime, local_iso, offset_minutes, parse_datetime
from sandbox_ehr.versions import IdSequence, stamp

LIVE = ("pending", "booked", "arrived", "checked-in")
# Appointments that still claim their slots, as ground truth counts them (a proposal
# or a waitlist entry claims its slots too, unlike in LIVE, which owns them).
ACTIVE = ("proposed", "pending", "booked", "arrived", "checked-in", "waitlist")
# R4 AppointmentStatus (a required binding, which fhir.resources does not check).
R4_STATUSES = (*ACTIVE, "fulfilled", "cancelled", "noshow", "entered-in-error")
NON_SLOT_FIELDS_PATCHABLE = {
    "status",
    "extension",
    "comment",
    "cancelationReason",
    "meta",
    "participant",
    "description",
    "patientInstruction",
    "reasonCode",
    "reason",
}


@dataclass
class Appt:
    id: str
    resource: dict[str, Any]
    slots: list[int] = field(default_factory=list)
    hold_expires: float | None = None
    version: int = 1


class AppointmentBook:
    """The Appointments clients wrote and the slots each one owns.

    Collaborators: the config (FHIR version, profile, hold length; changed in place
    by the control API), the slot store it moves slots in, and the patient records
    a booking must name.
    """

    def __init__(
        self, config: SandboxConfig, store: SlotStore, patient_records: PatientRecords
    ) -> None:
        self.config = config
        self.store = store
        self.patient_records = patient_records
        self.clear()

    def clear(self) -> None:
        self.by_id: dict[str, Appt] = {}
        self.slot_owner: dict[int, str] = {}
        self._ids = IdSequence("appt")

    def _stamp(
        self, resource: dict[str, Any], version: int, profile: str | None = None
    ) -> dict[str, Any]:
        return stamp(resource, version, stu3=self.config.fhir_version == "stu3", profile=profile)

    def slot_appointments(self) -> dict[str, list[Appt]]:
        """Appointments (any status) by the slot ids their ``Appointment.slot`` references."""
        out: dict[str, list[Appt]] = {}
        for appt in self.by_id.values():
            refs = {
                normalise_ref(s.get("reference") or "", "Slot") for s in slot_refs(appt.resource)
            }
            for ref in sorted(refs):
                rtype, _, rid = ref.partition("/")
                if rtype == "Slot" and rid:
                    out.setdefault(rid, []).append(appt)
        return out

    # ----- slots of an appointment ------------------------------------------------------------
    def expire_holds(self) -> int:
        """Release holds whose time is up (called before every write and periodically)."""
        now = time.time()
        expired = [
            a for a in self.by_id.values() if a.hold_expires is not None and a.hold_expires <= now
        ]
        for a in expired:
            self._release(a, "cancelled", reason="hold expired")
        return len(expired)

    def _owned_or_free(self, idx: int, appt_id: str | None, released: frozenset[int]) -> bool:
        if idx in released:
            return True
        owner = self.slot_owner.get(idx)
        if owner is not None:
            return owner == appt_id
        return int(self.store.status[idx]) == FREE

    def resolve_slots(
        self, resource: dict[str, Any], appt_id: str | None, released: frozenset[int] = frozenset()
    ) -> list[int]:
        """The slots an appointment needs (:func:`match_slots`), each free or already its own.

        ``released`` slots count as free (a reschedule may reuse the cancelled ones).
        """
        chosen = match_slots(self.store, resource)
        taken = [slot_id(i) for i in chosen if not self._owned_or_free(i, appt_id, released)]
        if taken:
            raise conflict(f"slot(s) no longer free: {', '.join(taken)}")
        return chosen

    def _release(self, appt: Appt, status: str, reason: str | None = None) -> None:
        """Cancel (or enter-in-error) an appointment and free the slots it still owns."""
        mine = [i for i in appt.slots if self.slot_owner.get(i) == appt.id]
        for i in mine:
            del self.slot_owner[i]
        was_booked = appt.resource.get("status") == "booked"
        appt.resource["status"] = status
        appt.hold_expires = None
        if was_booked and status == "cancelled":
            for p in appt.resource.get("participant") or []:
                if ((p.get("actor") or {}).get("reference") or "").startswith("Patient/"):
                    p["status"] = "declined"
        if reason and "comment" not in appt.resource:
            appt.resource["comment"] = reason
        appt.version += 1
        self._stamp(appt.resource, appt.version)
        self.store.set_status(mine, FREE)

    # ----- hold / book -------------------------------------------------------------------
    def _prepare(self, appt_id: str | None, resource: dict[str, Any] | None) -> tuple[Appt, bool]:
        """The appointment to act on: existing (by id) or new from a client resource."""
        if appt_id:
            rid = normalise_ref(appt_id, "Appointment").split("/", 1)[1]
            existing = self.by_id.get(rid)
            if existing is None:
                raise not_found(f"Appointment/{rid}")
            return existing, False
        if resource is None:
            raise bad_request("give appt-id or appt-resource (or an Appointment body)")
        validate.check(self.config.fhir_version, resource, "Appointment")
        if resource.get("id") in self.by_id:
            return self.by_id[resource["id"]], False
        resource = copy.deepcopy(resource)
        return Appt(id="", resource=resource), True

    def _check_live(self, appt: Appt, new: bool) -> None:
        if new:
            return
        status = appt.resource.get("status")
        if status in ("cancelled", "entered-in-error", "noshow", "fulfilled"):
            raise conflict(f"Appointment/{appt.id} is {status}")

    def hold(self, appt_id: str | None, resource: dict[str, Any] | None) -> tuple[Appt, bool]:
        self.expire_holds()
        appt, new = self._prepare(appt_id, resource)
        self._check_live(appt, new)
        if not new and appt.resource.get("status") == "booked":
            raise conflict(f"Appointment/{appt.id} is already booked")
        slots = self.resolve_slots(appt.resource, appt.id or None)
        self._commit(appt, new, slots, "pending", HELD)
        appt.hold_expires = time.time() + self.config.hold_seconds
        return appt, new

    def book(
        self,
        appt_id: str | None,
        resource: dict[str, Any] | None,
        patients: list[str],
        comment: str | None,
        cancelled_appt_id: str | None,
    ) -> tuple[Appt, bool]:
        self.expire_holds()
        appt, new = self._prepare(appt_id, resource)
        self._check_live(appt, new)
        if not new and appt.resource.get("status") == "booked":
            raise conflict(f"Appointment/{appt.id} is already booked")
        cancelled = None
        if cancelled_appt_id:
            cid = normalise_ref(cancelled_appt_id, "Appointment").split("/", 1)[1]
            cancelled = self.by_id.get(cid)
            if cancelled is None:
                raise not_found(f"Appointment/{cid} (cancelled-appt-id)")
        patient_refs = [normalise_ref(p, "Patient") for p in patients]
        for ref in patient_refs + [
            r for r in participant_refs(appt.resource) if r.startswith("Patient/")
        ]:
            if ref.split("/", 1)[1] not in self.patient_records.patients:
                raise unprocessable(f"{ref} is not a registered patient", "not-found")
        # A reschedule may reuse slots of the appointment it cancels.
        if cancelled is not None:
            freed = frozenset(i for i in cancelled.slots if self.slot_owner.get(i) == cancelled.id)
            slots = self.resolve_slots(appt.resource, appt.id or None, freed)
            self._release(cancelled, "cancelled", reason="rescheduled")
        else:
            slots = self.resolve_slots(appt.resource, appt.id or None)
        known = set(participant_refs(appt.resource))
        for ref in patient_refs:
            if ref not in known:
                appt.resource.setdefault("participant", []).append(
                    {"actor": {"reference": ref}, "required": "required", "status": "accepted"}
                )
        if comment:
            appt.resource["comment"] = comment
        self._commit(appt, new, slots, "booked", BUSY)
        appt.hold_expires = None
        return appt, new

    def _commit(
        self, appt: Appt, new: bool, slots: list[int], status: str, slot_status: int
    ) -> None:
        """Store the appointment in its new state and move its slots (notifies)."""
        store = self.store
        if new:
            appt.id = self._ids.next(self.by_id)
            appt.resource["id"] = appt.id
            self.by_id[appt.id] = appt
        else:
            appt.version += 1
        for i in appt.slots:
            if i not in slots and self.slot_owner.get(i) == appt.id:
                del self.slot_owner[i]
                store.set_status([i], FREE)
        appt.slots = slots
        for i in slots:
            self.slot_owner[i] = appt.id
        res = appt.resource
        res["status"] = status
        res["slot"] = [{"reference": f"Slot/{slot_id(i)}"} for i in slots]
        if slots and not (res.get("start") and res.get("end")):
            first = min(slots, key=lambda i: int(store.start[i]))
            last = max(slots, key=lambda i: int(store.start[i] + store.dur[i]))
            tz = _schedule_tz(store, int(store.sched[first]))
            a, b = int(store.start[first]), int(store.start[last] + store.dur[last])
            res["start"] = local_iso(a, offset_minutes(tz, a // 60))
            res["end"] = local_iso(b, offset_minutes(tz, a // 60))
            res["minutesDuration"] = b - a
        participant_status = "tentative" if status == "pending" else "accepted"
        for p in res.get("participant") or []:
            p["status"] = participant_status
        self._stamp(res, appt.version, codes.ARGO_APPT_PROFILE)
        store.set_status(slots, slot_status)

    # ----- updates -----------------------------------------------------------------------
    def update(self, appt: Appt, new_resource: dict[str, Any]) -> Appt:
        """Apply a PATCH/PUT result: only status (and descriptive fields) may change."""
        if self.config.plain:
            return self._store_plain(new_resource, appt)
        self.expire_holds()
        validate.check(self.config.fhir_version, new_resource, "Appointment")
        old = appt.resource
        for key in set(old) | set(new_resource):
            if key in NON_SLOT_FIELDS_PATCHABLE or key in ("id", "resourceType", "text"):
                continue
            if old.get(key) != new_resource.get(key):
                raise unprocessable(f"Appointment.{key} cannot be changed here; cancel and rebook")
        if new_resource.get("id", appt.id) != appt.id:
            raise bad_request("Appointment.id cannot be changed")
        old_refs, new_refs = participant_refs(old), participant_refs(new_resource)
        added = new_refs[len(old_refs) :]
        booking = new_resource.get("status") == "booked" and old.get("status") in (
            "pending",
            "proposed",
        )
        # Booking a hold may add the patient(s) (IG state diagram, step 7); nothing else changes.
        if new_refs[: len(old_refs)] != old_refs or (
            added and not (booking and all(r.startswith("Patient/") for r in added))
        ):
            raise unprocessable("participants cannot be changed; cancel and rebook")
        before, after = old.get("status"), new_resource.get("status")
        appt.resource = copy.deepcopy(new_resource)
        appt.resource["id"] = appt.id
        appt.resource["status"] = before
        if after == before:
            appt.version += 1
            self._stamp(appt.resource, appt.version)
        elif after in ("cancelled", "entered-in-error"):
            if before in ("cancelled", "entered-in-error"):
                raise conflict(f"Appointment/{appt.id} is already {before}")
            self._release(appt, after)
        elif after == "booked" and before in ("pending", "proposed"):
            self.book(appt.id, None, [], None, None)
        elif after == "pending" and before == "proposed":
            self.hold(appt.id, None)
        elif after in ("arrived", "checked-in", "fulfilled", "noshow") and before in LIVE:
            appt.resource["status"] = after
            appt.version += 1
            self._stamp(appt.resource, appt.version)
        else:
            raise unprocessable(f"Appointment status cannot go from {before} to {after}")
        return appt

    def create(self, resource: dict[str, Any], rid: str | None = None) -> Appt:
        """R4 create (POST, or PUT to a new id): proposed stores, pending holds, booked books."""
        if self.config.plain:
            return self._store_plain(resource, None, rid)
        self.expire_holds()
        validate.check(self.config.fhir_version, resource, "Appointment")
        status = resource.get("status")
        body = copy.deepcopy(resource)
        body.pop("id", None)
        if status == "pending":
            appt, _ = self.hold(None, body)
        elif status == "booked":
            patients = [r for r in participant_refs(body) if r.startswith("Patient/")]
            appt, _ = self.book(None, body, patients, None, None)
        elif status == "proposed":
            self.resolve_slots(body, None)  # must at least make sense
            appt = Appt(id=self._ids.next(self.by_id), resource=body)
            body["id"] = appt.id
            self._stamp(body, 1, codes.ARGO_APPT_PROFILE)
            self.by_id[appt.id] = appt
        else:
            raise unprocessable(f"cannot create an Appointment with status {status!r}")
        if rid and rid != appt.id:  # PUT to a client-chosen id
            self.by_id[rid] = self.by_id.pop(appt.id)
            for i in appt.slots:
                if self.slot_owner.get(i) == appt.id:
                    self.slot_owner[i] = rid
            appt.id = rid
            appt.resource["id"] = rid
        return appt

    def _store_plain(
        self, resource: dict[str, Any], appt: Appt | None, rid: str | None = None
    ) -> Appt:
        """Create (``appt`` None) or replace an Appointment as a generic R4 server does.

        Validated and its local references resolved (referential integrity, as HAPI
        FHIR enforces by default: 400 otherwise); no status rules, no conflict check,
        and the slots it references keep their status.
        """
        validate.check(self.config.fhir_version, resource, "Appointment")
        if resource.get("status") not in R4_STATUSES:
            raise bad_request(f"Appointment.status {resource.get('status')!r} is not an R4 code")
        if appt is not None and resource.get("id", appt.id) != appt.id:
            raise bad_request("Appointment.id does not match the URL")
        refs = [s.get("reference") or "" for s in slot_refs(resource)]
        refs += [(p.get("actor") or {}).get("reference") or "" for p in resource["participant"]]
        for ref in refs:
            self._check_reference(ref)
        body = copy.deepcopy(resource)
        if appt is None:
            appt = Appt(id=rid or self._ids.next(self.by_id), resource=body, version=0)
            self.by_id[appt.id] = appt
        appt.version += 1
        body["id"] = appt.id
        appt.resource = self._stamp(body, appt.version)
        return appt

    def _check_reference(self, ref: str) -> None:
        """A relative reference to a type this server holds must name an existing resource."""
        if not ref or ref.startswith("#") or "://" in ref or ref.count("/") != 1:
            return
        rtype, rid = ref.split("/")
        store, org = self.store, self.store.org
        if rtype == "Slot":
            i = slot_index(rid)
            if i is not None and store.was_deleted(i):
                raise bad_request(f"{ref} is deleted")
            found = i is not None and store.exists(i)
        elif rtype == "Patient":
            found = rid in self.patient_records.patients
        elif rtype == "Schedule":
            found = rid in org.schedule_index
        elif rtype in ("Practitioner", "Location", "Device", "Organization"):
            found = ref in org.resources
        else:
            return
        if not found:
            raise bad_request(f"{ref} is not known to this server")


def _schedule_tz(store: SlotStore, schedule: int) -> str:
    """The time zone of the schedule's clinic, in which an Appointment's start/end are written."""
    org = store.org
    return org.clinics[org.schedules[schedule].clinic_index].tz


def appointment_start(resource: dict[str, Any]) -> datetime | None:
    try:
        return parse_datetime(resource["start"])[0] if resource.get("start") else None
    except BadDateTime:
        return None
