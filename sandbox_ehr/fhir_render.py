"""FHIR JSON for the sandbox's resources, as plain dicts, per FHIR version.

The only module that knows how STU3 (Argonaut) and R4 shapes differ for what the
sandbox emits (Location.type cardinality, Device naming, status codes, profiles,
terminology system URLs). Hot paths (slot pages) build small dicts that share the
per-schedule sub-objects and leave serialisation to msgspec.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from sandbox_ehr import codes
from sandbox_ehr.model import (
    BUSY,
    FREE,
    HELD,
    TENTATIVE,
    UNAVAILABLE,
    Clinic,
    Device,
    Organisation,
    Organization,
    Practitioner,
    Room,
    ScheduleDef,
)
from sandbox_ehr.timefmt import instant_ms, local_iso, offset_minutes, offset_text

STATUS_CODES = {
    "stu3": ("free", "busy", "busy-unavailable", "busy-unavailable", "busy"),
    "r4": ("free", "busy", "busy-tentative", "busy-unavailable", "busy-tentative"),
}
ALL_STATUSES = (FREE, BUSY, TENTATIVE, UNAVAILABLE, HELD)
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition"


def statuses_for(flavour: str, code: str) -> frozenset[int] | None:
    """Internal status codes that render as ``code`` in this flavour (None: unknown code)."""
    names = STATUS_CODES[flavour]
    if code == "entered-in-error":
        return frozenset()
    found = frozenset(s for s in ALL_STATUSES if names[s] == code)
    return found or None


def _raw(value: Any) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(value))


_MATCH = _raw({"mode": "match"})


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


class Renderer:
    """Renders one organisation's resources for one FHIR version."""

    def __init__(self, org: Organisation, flavour: str, generated_ms: int) -> None:
        self.org = org
        self.flavour = flavour
        self.stu3 = flavour == "stu3"
        self.status_names = STATUS_CODES[flavour]
        self.generated = instant_ms(generated_ms)
        self._v3 = (
            "http://hl7.org/fhir/v3" if self.stu3 else "http://terminology.hl7.org/CodeSystem/v3"
        )
        self.slot_meta_profile = [codes.PREFETCH_SLOT_PROFILE] if self.stu3 else None
        # Per-schedule pieces shared by every slot of the schedule.
        self.sched_ref = [{"reference": f"Schedule/{s.id}"} for s in org.schedules]
        self.sched_service = [
            [_cc(codes.VISIT_TYPE_SYSTEM, c, codes.VISIT_TYPES[c]) for c in s.service_types]
            for s in org.schedules
        ]
        self.sched_specialty = [
            [_cc(codes.SNOMED, s.specialty, codes.SPECIALTIES[s.specialty])]
            if s.specialty
            else None
            for s in org.schedules
        ]
        # The same pieces already encoded, for search pages (see slot_entries).
        self._encoded = (
            [_raw(x) for x in self.sched_service],
            [None if x is None else _raw(x) for x in self.sched_specialty],
            [_raw(x) for x in self.sched_ref],
            None if self.slot_meta_profile is None else _raw(self.slot_meta_profile),
        )
        self.sched_tz = [org.clinics[s.clinic_index].tz for s in org.schedules]
        self._schedules: dict[tuple[int, int | None], dict[str, Any]] = {}
        self._entries: dict[tuple[str, str, int | None], msgspec.Raw | None] = {}
        self.zone_names = sorted(set(self.sched_tz))
        self.sched_tz_index = np.array(
            [self.zone_names.index(tz) for tz in self.sched_tz], dtype=np.int64
        )

    # ----- slots -----------------------------------------------------------------------
    def _local_times(
        self, starts: np.ndarray, ends: np.ndarray, scheds: np.ndarray
    ) -> tuple[list[str], list[str]]:
        """Start/end texts at each clinic's offset, vectorised (the hot part of a page)."""
        zone_of = self.sched_tz_index[scheds]
        keys = zone_of * 100_000_000 + starts // 60
        unique, inverse = np.unique(keys, return_inverse=True)
        zones = self.zone_names
        offsets_u = np.array(
            [offset_minutes(zones[k // 100_000_000], k % 100_000_000) for k in unique.tolist()],
            dtype=np.int64,
        )
        offsets = offsets_u[inverse]
        suffix_u = [offset_text(o) for o in offsets_u.tolist()]
        suffixes = [suffix_u[j] for j in inverse.tolist()]
        start_txt = np.datetime_as_string(
            (starts + offsets).astype("datetime64[m]"), unit="s"
        ).tolist()
        end_txt = np.datetime_as_string((ends + offsets).astype("datetime64[m]"), unit="s").tolist()
        return (
            [a + z for a, z in zip(start_txt, suffixes, strict=True)],
            [b + z for b, z in zip(end_txt, suffixes, strict=True)],
        )

    def slot_resources(self, store: Any, indices: list[int]) -> list[dict[str, Any]]:
        """Slot resources for the given indices, columns fetched in one numpy gather each."""
        parts = (self.sched_service, self.sched_specialty, self.sched_ref, self.slot_meta_profile)
        return self._slots(store, indices, parts, None)

    def slot_entries(self, store: Any, indices: list[int], base: str) -> list[dict[str, Any]]:
        """A search page's match entries of the given slots: ``entry(base, resource)`` of
        :meth:`slot_resources`, with the per-schedule parts (service types, specialty,
        schedule reference, profile) already encoded, since they repeat on every slot of
        their schedule; for the response body only (the parts are ``msgspec.Raw``)."""
        return self._slots(store, indices, self._encoded, base)

    def _slots(
        self, store: Any, indices: list[int], parts: tuple[Any, ...], base: str | None
    ) -> list[dict[str, Any]]:
        if not indices:
            return []
        arr = np.asarray(indices, dtype=np.int64)
        start_np, sched_np = store.start[arr], store.sched[arr]
        start_txt, end_txt = self._local_times(start_np, start_np + store.dur[arr], sched_np)
        scheds = sched_np.tolist()
        statuses = store.status[arr].tolist()
        versions = store.version[arr].tolist()
        updated = store.updated[arr].tolist()
        out = []
        names = self.status_names
        service, specialty, ref, profile = parts
        prefix = f"{base}/Slot/" if base is not None else None
        # one meta object per distinct version and time on the page, shared by its slots
        # (read-only: they are encoded, never changed): most slots of a page have the
        # same, and formatting the time per slot was an eighth of a page's rendering
        metas: dict[tuple[int, int], dict[str, Any]] = {}
        for i, s, st, v, up, a, b in zip(
            indices, scheds, statuses, versions, updated, start_txt, end_txt, strict=True
        ):
            meta = metas.get((v, up))
            if meta is None:
                meta = metas[v, up] = {"versionId": str(v), "lastUpdated": instant_ms(up)}
                if profile:
                    meta["profile"] = profile
            sid = f"sl-{i:08d}"
            res: dict[str, Any] = {
                "resourceType": "Slot",
                "id": sid,
                "meta": meta,
                "serviceType": service[s],
            }
            if specialty[s]:
                res["specialty"] = specialty[s]
            res["schedule"] = ref[s]
            res["status"] = names[st]
            res["start"] = a
            res["end"] = b
            if prefix is None:
                out.append(res)
            else:
                out.append({"fullUrl": prefix + sid, "resource": res, "search": _MATCH})
        return out

    # ----- schedules and actors ------------------------------------------------------------
    def schedule(self, s: ScheduleDef, horizon_end_minute: int | None = None) -> dict[str, Any]:
        """The Schedule resource (cached: pages with ``_include`` repeat the same few)."""
        key = (s.index, horizon_end_minute)
        cached = self._schedules.get(key)
        if cached is None:
            cached = self._schedules[key] = self._schedule(s, horizon_end_minute)
        return cached

    def schedule_entry(
        self, base: str, s: ScheduleDef, horizon_end_minute: int | None
    ) -> msgspec.Raw:
        """The Schedule as an ``include`` entry of a search Bundle, encoded once.

        Every page of a search with ``_include`` repeats its schedules and their actors
        (hundreds a page on a large organisation); they change only with the
        schedule's horizon (part of the key) or a reset (a new renderer), so each is
        encoded once, as servers cache their serialised resources.
        """
        key = (base, f"Schedule/{s.id}", horizon_end_minute)
        found = self._entries.get(key)
        if found is None:
            res = self.schedule(s, horizon_end_minute)
            found = self._entries[key] = msgspec.Raw(
                msgspec.json.encode(entry(base, res, "include"))
            )
        return found

    def resource_entry(self, base: str, ref: str) -> msgspec.Raw | None:
        """An actor as an ``include`` entry, encoded once (see :meth:`schedule_entry`)."""
        key = (base, ref, None)
        if key not in self._entries:
            res = self.resource(ref)
            self._entries[key] = (
                None
                if res is None
                else msgspec.Raw(msgspec.json.encode(entry(base, res, "include")))
            )
        return self._entries[key]

    def _schedule(self, s: ScheduleDef, horizon_end_minute: int | None) -> dict[str, Any]:
        res: dict[str, Any] = {
            "resourceType": "Schedule",
            "id": s.id,
            "meta": {"versionId": "1", "lastUpdated": self.generated},
            "active": True,
            "serviceType": self.sched_service[s.index],
        }
        if self.sched_specialty[s.index]:
            res["specialty"] = self.sched_specialty[s.index]
        res["actor"] = [{"reference": ref, "display": self.display(ref)} for ref in s.actor_refs]
        end = self.org.horizon_end.isoformat()
        if horizon_end_minute is not None:
            end = max(end, local_iso(horizon_end_minute, 0)[:10])
        res["planningHorizon"] = {"start": self.org.start_date.isoformat(), "end": end}
        return res

    def stripped_schedule(self, s: ScheduleDef, lo: int, hi: int) -> dict[str, Any]:
        """argo-sched-notif: the changed schedule's entity and the period that changed."""
        tz = self.sched_tz[s.index]
        return {
            "resourceType": "Schedule",
            "id": s.id,
            "meta": {"profile": [codes.SCHED_NOTIF_PROFILE]},
            "actor": [{"reference": s.entity_ref, "display": self.display(s.entity_ref)}],
            "planningHorizon": {
                "start": local_iso(lo, offset_minutes(tz, lo // 60)),
                "end": local_iso(hi, offset_minutes(tz, hi // 60)),
            },
        }

    def display(self, ref: str) -> str:
        entity = self.org.resources.get(ref)
        if isinstance(entity, Practitioner):
            return f"Dr. {entity.given} {entity.family}"
        return getattr(entity, "name", ref)

    def resource(self, ref: str) -> dict[str, Any] | None:
        """Practitioner, Location, Device or Organization by ``Type/id``."""
        entity = self.org.resources.get(ref)
        if isinstance(entity, Practitioner):
            return self.practitioner(entity)
        if isinstance(entity, Clinic):
            return self.clinic(entity)
        if isinstance(entity, Room):
            return self.room(entity)
        if isinstance(entity, Device):
            return self.device(entity)
        if isinstance(entity, Organization):
            return self.organization(entity)
        return None

    def _meta(self, profile: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"versionId": "1", "lastUpdated": self.generated}
        if profile and self.stu3:
            meta["profile"] = [profile]
        return meta

    def practitioner(self, p: Practitioner) -> dict[str, Any]:
        return {
            "resourceType": "Practitioner",
            "id": p.id,
            "meta": self._meta(f"{US_CORE}/us-core-practitioner"),
            "identifier": [{"system": codes.NPI_SYSTEM, "value": p.npi}],
            "active": True,
            "name": [
                {
                    "text": f"Dr. {p.given} {p.family}",
                    "family": p.family,
                    "given": [p.given],
                    "prefix": ["Dr."],
                }
            ],
            "gender": p.gender,
            "qualification": [
                {"code": _cc(codes.SNOMED, p.specialty, codes.SPECIALTIES[p.specialty])}
            ],
        }

    def _address(self, c: Clinic) -> dict[str, Any]:
        return {
            "use": "work",
            "line": [c.line],
            "city": c.city,
            "district": c.county,
            "state": c.state,
            "postalCode": c.postal_code,
            "country": "US",
        }

    def _physical(self, code: str, display: str) -> dict[str, Any]:
        system = (
            "http://hl7.org/fhir/location-physical-type"
            if self.stu3
            else "http://terminology.hl7.org/CodeSystem/location-physical-type"
        )
        return {"coding": [{"system": system, "code": code, "display": display}]}

    def clinic(self, c: Clinic) -> dict[str, Any]:
        return {
            "resourceType": "Location",
            "id": c.id,
            "meta": self._meta(f"{US_CORE}/us-core-location"),
            "extension": [{"url": codes.TIMEZONE_EXT, "valueCode": c.tz}],
            "status": "active",
            "name": c.name,
            "mode": "instance",
            "telecom": [
                {"system": "phone", "value": c.phone, "use": "work"},
                {"system": "url", "value": c.website, "use": "work"},
                {"system": "email", "value": c.email, "use": "work"},
            ],
            "address": self._address(c),
            "position": {"latitude": c.latitude, "longitude": c.longitude},
            "physicalType": self._physical("bu", "Building"),
            "managingOrganization": {"reference": f"Organization/{c.organization_id}"},
        }

    def room(self, r: Room) -> dict[str, Any]:
        clinic = self.org.clinic_of(r.clinic_id)
        kind = _cc(codes.ROOM_KIND_SYSTEM, r.kind, codes.ROOM_KINDS[r.kind])
        return {
            "resourceType": "Location",
            "id": r.id,
            "meta": self._meta(f"{US_CORE}/us-core-location"),
            "extension": [{"url": codes.TIMEZONE_EXT, "valueCode": clinic.tz}],
            "status": "active",
            "name": r.name,
            "mode": "instance",
            "type": kind if self.stu3 else [kind],
            "address": self._address(clinic),
            "physicalType": self._physical("ro", "Room"),
            "managingOrganization": {"reference": f"Organization/{clinic.organization_id}"},
            "partOf": {"reference": f"Location/{clinic.id}", "display": clinic.name},
        }

    def device(self, d: Device) -> dict[str, Any]:
        res: dict[str, Any] = {
            "resourceType": "Device",
            "id": d.id,
            "meta": self._meta(),
            "identifier": [
                {"system": "http://sandbox-ehr.example/fhir/sid/device-serial", "value": d.serial}
            ],
            "status": "active",
            "type": _cc(codes.DEVICE_KIND_SYSTEM, d.kind, codes.DEVICE_KINDS[d.kind]),
            "manufacturer": "Acme Medical Devices",
            "location": {"reference": f"Location/{d.clinic_id}"},
        }
        if self.stu3:
            res["model"] = d.name
        else:
            res["deviceName"] = [{"name": d.name, "type": "user-friendly-name"}]
            res["serialNumber"] = d.serial
        return res

    def organization(self, o: Organization) -> dict[str, Any]:
        return {
            "resourceType": "Organization",
            "id": o.id,
            "meta": self._meta(),
            "active": True,
            "name": o.name,
        }


def bundle(
    entries: list[dict[str, Any]],
    *,
    total: int | None,
    self_url: str,
    next_url: str | None = None,
    profile: str | None = None,
    bundle_type: str = "searchset",
) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Bundle"}
    if profile:
        out["meta"] = {"profile": [profile]}
    out["type"] = bundle_type
    if total is not None:
        out["total"] = total
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    out["link"] = links
    out["entry"] = entries
    return out


def entry(base: str, resource: dict[str, Any], mode: str | None = "match") -> dict[str, Any]:
    e: dict[str, Any] = {
        "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
    }
    if mode:
        e["search"] = {"mode": mode}
    return e
