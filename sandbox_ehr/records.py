"""Resources clients write: Appointments (with real slot state), Patients, Coverage.

Appointment state machine (IG state diagram): hold -> Appointment ``pending``,
its slots held (busy-tentative in R4, busy in STU3) until the hold expires or is
released; book -> ``booked``, slots busy; cancel (PATCH/PUT status cancelled, or
``cancelled-appt-id`` on a reschedule) -> slots free again. Every slot change goes
through the store, so it is versioned and notified. A slot can belong to at most
one live appointment: a second hold/book of it is a 409 conflict.

The plain-r4 profile has none of this: create, PUT and PATCH store the Appointment
as a generic R4 server does (validated, references resolved, versioned), whatever
its status, without touching or checking its slots, so two Appointments may
reference one slot; :meth:`Records.slot_appointments` is the ground truth for that.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sandbox_ehr import codes, validate
from sandbox_ehr.errors import bad_request, conflict, not_found, unprocessable
from sandbox_ehr.org import BUSY, FREE, HELD, slot_id, slot_index
from sandbox_ehr.search import normalise_ref
from sandbox_ehr.timefmt import (
    BadDateTime,
    ceil_minute,
    instant_ms,
    local_iso,
    offset_minutes,
    parse_datetime,
)

if TYPE_CHECKING:
    from sandbox_ehr.state import Sandbox

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


def _participant_refs(resource: dict[str, Any]) -> list[str]:
    refs = []
    for p in resource.get("participant") or []:
        ref = (p.get("actor") or {}).get("reference")
        if ref:
            refs.append(normalise_ref(ref, None))
    return refs


class Records:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.clear()

    def clear(self) -> None:
        self.appointments: dict[str, Appt] = {}
        self.slot_owner: dict[int, str] = {}
        self.patients: dict[str, dict[str, Any]] = {}
        self.coverages: dict[str, dict[str, Any]] = {}
        self._counters: dict[str, int] = {}
        for p in _seed_patients():
            self.patients[p["id"]] = self._stamp(p, 1)

    # ----- helpers -----------------------------------------------------------------------
    @property
    def flavour(self) -> str:
        return self.sandbox.config.fhir_version

    def _next_id(self, prefix: str) -> str:
        tables: dict[str, dict[str, Any]] = {
            "appt": self.appointments,
            "pat": self.patients,
            "cov": self.coverages,
        }
        taken = tables[prefix]
        while True:
            self._counters[prefix] = self._counters.get(prefix, 0) + 1
            candidate = f"{prefix}-{self._counters[prefix]}"
            if candidate not in taken:
                return candidate

    def _stamp(
        self, resource: dict[str, Any], version: int, profile: str | None = None
    ) -> dict[str, Any]:
        meta = dict(resource.get("meta") or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = instant_ms(int(time.time() * 1000))
        if profile and self.flavour == "stu3":
            meta["profile"] = [profile]
        resource["meta"] = meta
        return resource

    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        if rtype == "Appointment" and rid in self.appointments:
            return self.appointments[rid].resource
        if rtype == "Patient" and rid in self.patients:
            return self.patients[rid]
        if rtype == "Coverage" and rid in self.coverages:
            return self.coverages[rid]
        subscription = self.sandbox.notifier.subscriptions.get(rid)
        if rtype == "Subscription" and subscription is not None:
            return subscription.resource()
        raise not_found(f"{rtype}/{rid}")

    def slot_appointments(self) -> dict[str, list[Appt]]:
        """Appointments (any status) by the slot ids their ``Appointment.slot`` references."""
        out: dict[str, list[Appt]] = {}
        for appt in self.appointments.values():
            refs = {
                normalise_ref(s.get("reference") or "", "Slot") for s in _slot_refs(appt.resource)
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
            a
            for a in self.appointments.values()
            if a.hold_expires is not None and a.hold_expires <= now
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
        return int(self.sandbox.store.status[idx]) == FREE

    def resolve_slots(
        self, resource: dict[str, Any], appt_id: str | None, released: frozenset[int] = frozenset()
    ) -> list[int]:
        """The slots an appointment needs: ``Appointment.slot`` or matched by time and actors.

        ``released`` slots count as free (a reschedule may reuse the cancelled ones).
        """
        store = self.sandbox.store
        org = store.org
        start = end = None
        if resource.get("start") and resource.get("end"):
            try:
                start = ceil_minute(parse_datetime(resource["start"])[0])
                end = ceil_minute(parse_datetime(resource["end"])[0])
            except BadDateTime as exc:
                raise bad_request(str(exc)) from exc
            if end <= start:
                raise bad_request("Appointment.end must be after Appointment.start")
        refs = [(s.get("reference") or "") for s in resource.get("slot") or []]
        if refs:
            chosen = []
            for ref in refs:
                idx = slot_index(normalise_ref(ref, "Slot").split("/", 1)[1])
                if idx is None or not store.exists(idx):
                    raise unprocessable(f"Appointment.slot {ref!r} is not a slot of this EHR")
                chosen.append(idx)
            chosen = sorted(set(chosen))
            if start is not None and end is not None:
                by_schedule: dict[int, list[int]] = {}
                for i in chosen:
                    by_schedule.setdefault(int(store.sched[i]), []).append(i)
                for slots in by_schedule.values():
                    if not _covers(store, slots, start, end):  # e.g. the EHR moved a slot
                        raise conflict(
                            "Appointment.start/end are not covered by its slots "
                            f"{[slot_id(i) for i in slots]}"
                        )
        else:
            if start is None or end is None:
                raise bad_request("an Appointment without slot references needs start and end")
            entity_schedules = {s.entity_ref: s.index for s in org.schedules}
            schedules = []
            for ref in _participant_refs(resource):
                if ref.startswith("Patient/"):
                    continue
                if ref in entity_schedules:
                    schedules.append(entity_schedules[ref])
                elif ref not in org.resources:
                    raise unprocessable(f"participant {ref} is not known to this EHR")
            if not schedules:
                raise unprocessable(
                    "no participant of the Appointment has a schedule "
                    "(reference a Practitioner, room Location or Device)"
                )
            chosen = []
            for s in schedules:
                slots = store.overlapping(s, start, end)
                if not _covers(store, slots, start, end):
                    raise conflict(
                        f"{org.schedules[s].entity_ref} has no slots covering the requested time"
                    )
                chosen.extend(slots)
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
        self.sandbox.store.set_status(mine, FREE)

    # ----- hold / book -------------------------------------------------------------------
    def _prepare(self, appt_id: str | None, resource: dict[str, Any] | None) -> tuple[Appt, bool]:
        """The appointment to act on: existing (by id) or new from a client resource."""
        if appt_id:
            rid = normalise_ref(appt_id, "Appointment").split("/", 1)[1]
            existing = self.appointments.get(rid)
            if existing is None:
                raise not_found(f"Appointment/{rid}")
            return existing, False
        if resource is None:
            raise bad_request("give appt-id or appt-resource (or an Appointment body)")
        validate.check(self.flavour, resource, "Appointment")
        if resource.get("id") in self.appointments:
            return self.appointments[resource["id"]], False
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
        appt.hold_expires = time.time() + self.sandbox.config.hold_seconds
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
            cancelled = self.appointments.get(cid)
            if cancelled is None:
                raise not_found(f"Appointment/{cid} (cancelled-appt-id)")
        patient_refs = [normalise_ref(p, "Patient") for p in patients]
        for ref in patient_refs + [
            r for r in _participant_refs(appt.resource) if r.startswith("Patient/")
        ]:
            if ref.split("/", 1)[1] not in self.patients:
                raise unprocessable(f"{ref} is not a registered patient", "not-found")
        # A reschedule may reuse slots of the appointment it cancels.
        if cancelled is not None:
            freed = frozenset(i for i in cancelled.slots if self.slot_owner.get(i) == cancelled.id)
            slots = self.resolve_slots(appt.resource, appt.id or None, freed)
            self._release(cancelled, "cancelled", reason="rescheduled")
        else:
            slots = self.resolve_slots(appt.resource, appt.id or None)
        known = set(_participant_refs(appt.resource))
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
        store = self.sandbox.store
        if new:
            appt.id = self._next_id("appt")
            appt.resource["id"] = appt.id
            self.appointments[appt.id] = appt
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
            tz = self.sandbox.renderer.sched_tz[int(store.sched[first])]
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
        if self.sandbox.plain:
            return self._store_plain(new_resource, appt)
        self.expire_holds()
        validate.check(self.flavour, new_resource, "Appointment")
        old = appt.resource
        for key in set(old) | set(new_resource):
            if key in NON_SLOT_FIELDS_PATCHABLE or key in ("id", "resourceType", "text"):
                continue
            if old.get(key) != new_resource.get(key):
                raise unprocessable(f"Appointment.{key} cannot be changed here; cancel and rebook")
        if new_resource.get("id", appt.id) != appt.id:
            raise bad_request("Appointment.id cannot be changed")
        old_refs, new_refs = _participant_refs(old), _participant_refs(new_resource)
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
        if self.sandbox.plain:
            return self._store_plain(resource, None, rid)
        self.expire_holds()
        validate.check(self.flavour, resource, "Appointment")
        status = resource.get("status")
        body = copy.deepcopy(resource)
        body.pop("id", None)
        if status == "pending":
            appt, _ = self.hold(None, body)
        elif status == "booked":
            patients = [r for r in _participant_refs(body) if r.startswith("Patient/")]
            appt, _ = self.book(None, body, patients, None, None)
        elif status == "proposed":
            self.resolve_slots(body, None)  # must at least make sense
            appt = Appt(id=self._next_id("appt"), resource=body)
            body["id"] = appt.id
            self._stamp(body, 1, codes.ARGO_APPT_PROFILE)
            self.appointments[appt.id] = appt
        else:
            raise unprocessable(f"cannot create an Appointment with status {status!r}")
        if rid and rid != appt.id:  # PUT to a client-chosen id
            self.appointments[rid] = self.appointments.pop(appt.id)
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
        validate.check(self.flavour, resource, "Appointment")
        if resource.get("status") not in R4_STATUSES:
            raise bad_request(f"Appointment.status {resource.get('status')!r} is not an R4 code")
        if appt is not None and resource.get("id", appt.id) != appt.id:
            raise bad_request("Appointment.id does not match the URL")
        refs = [s.get("reference") or "" for s in _slot_refs(resource)]
        refs += [(p.get("actor") or {}).get("reference") or "" for p in resource["participant"]]
        for ref in refs:
            self._check_reference(ref)
        body = copy.deepcopy(resource)
        if appt is None:
            appt = Appt(id=rid or self._next_id("appt"), resource=body, version=0)
            self.appointments[appt.id] = appt
        appt.version += 1
        body["id"] = appt.id
        appt.resource = self._stamp(body, appt.version)
        return appt

    def _check_reference(self, ref: str) -> None:
        """A relative reference to a type this server holds must name an existing resource."""
        if not ref or ref.startswith("#") or "://" in ref or ref.count("/") != 1:
            return
        rtype, rid = ref.split("/")
        store, org = self.sandbox.store, self.sandbox.store.org
        if rtype == "Slot":
            i = slot_index(rid)
            if i is not None and store.was_deleted(i):
                raise bad_request(f"{ref} is deleted")
            found = i is not None and store.exists(i)
        elif rtype == "Patient":
            found = rid in self.patients
        elif rtype == "Schedule":
            found = rid in org.schedule_index
        elif rtype in ("Practitioner", "Location", "Device", "Organization"):
            found = ref in org.resources
        else:
            return
        if not found:
            raise bad_request(f"{ref} is not known to this server")

    # ----- patients and coverage -------------------------------------------------------
    def register_patient(self, resource: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Return the matching patient (by identifier, else demographics) or create one."""
        validate.check(self.flavour, resource, "Patient")
        match = self._match_patient(resource)
        if match is not None:
            return match, False
        body = copy.deepcopy(resource)
        body["id"] = self._next_id("pat")
        body.setdefault("identifier", []).append(
            {"system": codes.MRN_SYSTEM, "value": f"MRN{body['id']}"}
        )
        self.patients[body["id"]] = self._stamp(body, 1)
        return body, True

    def _match_patient(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        wanted = {
            (i.get("system"), i.get("value"))
            for i in resource.get("identifier") or []
            if i.get("value")
        }
        for p in self.patients.values():
            if wanted & {(i.get("system"), i.get("value")) for i in p.get("identifier") or []}:
                return p
        key = _demographics(resource)
        if key is None:
            return None
        for p in self.patients.values():
            other = _demographics(p)
            if (
                other
                and other[:3] == key[:3]
                and (not key[3] or not other[3] or key[3] == other[3])
            ):
                return p
        return None

    def put_coverage(
        self, rid: str | None, resource: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        validate.check(self.flavour, resource, "Coverage")
        for field_ in ("beneficiary", "subscriber", "policyHolder"):
            ref = (resource.get(field_) or {}).get("reference")
            if ref and ref.startswith("Patient/") and ref.split("/", 1)[1] not in self.patients:
                raise unprocessable(f"Coverage.{field_} {ref} is not a registered patient")
        body = copy.deepcopy(resource)
        existing = self.coverages.get(rid) if rid else None
        if existing is not None:
            if _codes(existing.get("type")) != _codes(body.get("type")):
                raise unprocessable(
                    "Coverage.type cannot be changed; end this coverage and create a new one"
                )
            for field_ in ("beneficiary", "subscriber"):
                if (existing.get(field_) or {}).get("reference") != (body.get(field_) or {}).get(
                    "reference"
                ):
                    raise unprocessable(f"Coverage.{field_} cannot be changed")
            version = int(existing["meta"]["versionId"]) + 1
        else:
            version = 1
        body["id"] = rid or self._next_id("cov")
        self.coverages[body["id"]] = self._stamp(
            body, version, f"{codes.IG}/StructureDefinition/argo-coverage"
        )
        return body, existing is None


def _slot_refs(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in resource.get("slot") or [] if isinstance(s, dict)]


def _covers(store: Any, slots: list[int], start: int, end: int) -> bool:
    """The slots, in start order, cover [start, end) without a gap."""
    if not slots:
        return False
    ordered = sorted(slots, key=lambda i: int(store.start[i]))
    if int(store.start[ordered[0]]) > start:
        return False
    reach = int(store.start[ordered[0]] + store.dur[ordered[0]])
    for i in ordered[1:]:
        if int(store.start[i]) > reach:
            return False
        reach = max(reach, int(store.start[i] + store.dur[i]))
    return reach >= end


def _codes(cc: Any) -> set[tuple[str | None, str | None]]:
    return {(c.get("system"), c.get("code")) for c in (cc or {}).get("coding") or []}


def _demographics(p: dict[str, Any]) -> tuple[str, str, str, str | None] | None:
    names = p.get("name") or []
    if not names or not p.get("birthDate"):
        return None
    family = (names[0].get("family") or "").strip().lower()
    given = ((names[0].get("given") or [""])[0]).strip().lower()
    if not family or not given:
        return None
    return family, given, p["birthDate"], p.get("gender")


def _seed_patients() -> list[dict[str, Any]]:
    people = [
        ("LastName", "First", "male", "1964-06-19"),
        ("Wayne", "Bruce", "male", "1972-02-19"),
        ("Smith", "Hal", "male", "1958-11-03"),
        ("Garcia", "Maria", "female", "1990-04-12"),
        ("Nguyen", "Lan", "female", "2018-09-30"),
    ]
    return [
        {
            "resourceType": "Patient",
            "id": f"pat-{n}",
            "identifier": [{"system": codes.MRN_SYSTEM, "value": f"MRN{1000 + n}"}],
            "active": True,
            "name": [{"family": family, "given": [given]}],
            "gender": gender,
            "birthDate": birth,
        }
        for n, (family, given, gender, birth) in enumerate(people, start=1)
    ]


def appointment_start(resource: dict[str, Any]) -> datetime | None:
    try:
        return parse_datetime(resource["start"])[0] if resource.get("start") else None
    except BadDateTime:
        return None
