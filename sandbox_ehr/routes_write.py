"""Write side of the FHIR API: $hold, $book, PATCH/PUT/POST Appointment, Appointment
search, Patient registration and search, Coverage create/update.

HTTP parsing only; the state machine (or, in the plain-r4 profile, plain storage)
lives in :mod:`sandbox_ehr.appointments` and :mod:`sandbox_ehr.patients`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from sandbox_ehr import codes, search
from sandbox_ehr.appointments import Appt, appointment_start
from sandbox_ehr.errors import FhirError, bad_request, not_found
from sandbox_ehr.fhir_render import bundle, entry
from sandbox_ehr.listing import offset_bundle, page_params
from sandbox_ehr.patch import apply_fhirpath_patch, apply_json_patch
from sandbox_ehr.timefmt import ceil_minute, http_date, to_ms
from sandbox_ehr.web import (
    fhir_base,
    fhir_response,
    json_body,
    query_pairs,
    sandbox,
    sandbox_operation,
)

router = APIRouter()
OPERATION = [Depends(sandbox_operation)]


def _op_inputs(body: Any) -> dict[str, list[Any]]:
    """Operation inputs from a Parameters body (or a bare Appointment = appt-resource)."""
    if not isinstance(body, dict):
        raise bad_request("body must be a Parameters or Appointment resource")
    if body.get("resourceType") == "Appointment":
        return {"appt-resource": [body]}
    if body.get("resourceType") != "Parameters":
        raise bad_request("body must be a Parameters or Appointment resource")
    out: dict[str, list[Any]] = {}
    for p in search.parameter_list(body):
        name = p.get("name")
        if not isinstance(name, str):
            raise bad_request("every parameter needs a name")
        if "resource" in p:
            value = p["resource"]
        else:
            values = [v for k, v in p.items() if k.startswith("value")]
            if not values:
                raise bad_request(f"parameter {name!r} has no value")
            value = values[0]
            if isinstance(value, dict) and "reference" in value:
                value = value["reference"]
        out.setdefault(name, []).append(value)
    return out


def _appointment_response(request: Request, appt: Appt, created: bool, hold: bool) -> Response:
    sb = sandbox(request)
    base = fhir_base(request)
    profile = codes.AVAIL_BUNDLE_PROFILE if sb.stu3 else None
    body = bundle([entry(base, appt.resource)], total=1, self_url=str(request.url), profile=profile)
    headers = {}
    if hold and appt.hold_expires is not None:
        headers["Expires"] = http_date(datetime.fromtimestamp(appt.hold_expires, UTC))
    if created:
        headers["Location"] = f"{base}/Appointment/{appt.id}/_history/{appt.version}"
    return fhir_response(body, 201 if created else 200, headers)


async def _operation(request: Request, rid: str | None, hold: bool) -> Response:
    sb = sandbox(request)
    inputs = _op_inputs(await json_body(request))
    appt_ids = inputs.get("appt-id") or ([rid] if rid else [])
    resources = inputs.get("appt-resource") or []
    if len(appt_ids) + len(resources) != 1:
        raise bad_request("give exactly one of appt-id and appt-resource")
    appt_id = str(appt_ids[0]) if appt_ids else None
    resource = resources[0] if resources else None
    if hold:
        appt, created = sb.appointments.hold(appt_id, resource)
    else:
        patients = [str(p) for p in inputs.get("patient-id") or []]
        comment = (inputs.get("comment") or [None])[0]
        cancelled = (inputs.get("cancelled-appt-id") or [None])[0]
        appt, created = sb.appointments.book(
            appt_id, resource, patients, comment, str(cancelled) if cancelled else None
        )
    return _appointment_response(request, appt, created, hold)


@router.post("/fhir/Appointment/$hold", dependencies=OPERATION)
async def hold(request: Request) -> Response:
    return await _operation(request, None, hold=True)


@router.post("/fhir/Appointment/{rid}/$hold", dependencies=OPERATION)
async def hold_instance(request: Request, rid: str) -> Response:
    return await _operation(request, rid, hold=True)


@router.post("/fhir/Appointment/$book", dependencies=OPERATION)
async def book(request: Request) -> Response:
    return await _operation(request, None, hold=False)


@router.post("/fhir/Appointment/{rid}/$book", dependencies=OPERATION)
async def book_instance(request: Request, rid: str) -> Response:
    return await _operation(request, rid, hold=False)


def _appointment(request: Request, rid: str) -> Appt:
    appt = sandbox(request).appointments.by_id.get(rid)
    if appt is None:
        raise not_found(f"Appointment/{rid}")
    return appt


@router.patch("/fhir/Appointment/{rid}")
async def patch_appointment(request: Request, rid: str) -> Response:
    sb = sandbox(request)
    appt = _appointment(request, rid)
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    body = await json_body(request)
    if ctype == "application/json-patch+json" or isinstance(body, list):
        new = apply_json_patch(appt.resource, body)
    elif ctype in ("application/fhir+json", "application/json", ""):
        new = apply_fhirpath_patch(appt.resource, body)
    else:
        raise FhirError(415, f"unsupported PATCH content type {ctype!r}", "not-supported")
    sb.appointments.update(appt, new)
    return fhir_response(appt.resource)


def _r4_only(request: Request, what: str) -> None:
    if sandbox(request).stu3:
        raise FhirError(
            405,
            f"{what} is not supported by this Argonaut (STU3) server; use $hold / $book",
            "not-supported",
        )


@router.post("/fhir/Appointment")
async def create_appointment(request: Request) -> Response:
    _r4_only(request, "Appointment create")
    appt = sandbox(request).appointments.create(await json_body(request))
    headers = {"Location": f"{fhir_base(request)}/Appointment/{appt.id}/_history/{appt.version}"}
    if appt.hold_expires is not None:
        headers["Expires"] = http_date(datetime.fromtimestamp(appt.hold_expires, UTC))
    return fhir_response(appt.resource, 201, headers)


@router.put("/fhir/Appointment/{rid}")
async def put_appointment(request: Request, rid: str) -> Response:
    _r4_only(request, "Appointment update")
    sb = sandbox(request)
    body = await json_body(request)
    if isinstance(body, dict) and body.get("id") not in (None, rid):
        raise bad_request("Appointment.id does not match the URL")
    existing = sb.appointments.by_id.get(rid)
    if existing is None:
        appt = sb.appointments.create(body, rid)
        return fhir_response(
            appt.resource, 201, {"Location": f"{fhir_base(request)}/Appointment/{rid}"}
        )
    sb.appointments.update(existing, body)
    return fhir_response(existing.resource)


def updated_ms(resource: dict[str, Any]) -> int:
    """The resource's ``meta.lastUpdated`` in epoch milliseconds (0 if it has none)."""
    text = (resource.get("meta") or {}).get("lastUpdated")
    if not isinstance(text, str):
        return 0
    return to_ms(datetime.fromisoformat(text.replace("Z", "+00:00")))


@router.get("/fhir/Appointment")
async def search_appointments(request: Request) -> Response:
    sb = sandbox(request)
    sb.appointments.expire_holds()
    params, count, after, _ = page_params(request, query_pairs(request))
    ids = set(search.split_values(params, "_id"))
    statuses = set(search.split_values(params, "status"))
    wanted_refs = [
        {search.normalise_ref(v, rtype) for v in search.split_values(params, name)}
        for name, rtype in (
            ("patient", "Patient"),
            ("practitioner", "Practitioner"),
            ("actor", None),
            ("location", "Location"),
        )
    ]
    slots = {search.normalise_ref(v, "Slot") for v in search.split_values(params, "slot")}
    dates = search.split_values(params, "date")
    lo, hi = search.date_window(dates, "date") if dates else (None, None)
    updated_after = search.updated_after_ms(params)
    out = []
    for appt in sb.appointments.by_id.values():
        res = appt.resource
        if updated_after is not None and updated_ms(res) <= updated_after:
            continue
        refs = {
            search.normalise_ref((p.get("actor") or {}).get("reference") or "", None)
            for p in res.get("participant") or []
        }
        if (ids and appt.id not in ids) or (statuses and res.get("status") not in statuses):
            continue
        if any(w and not (w & refs) for w in wanted_refs):
            continue
        if slots and not any(
            search.normalise_ref(s.get("reference") or "", "Slot") in slots
            for s in res.get("slot") or []
        ):
            continue
        if lo is not None or hi is not None:
            start = appointment_start(res)
            if start is None:
                continue
            m = ceil_minute(start)
            if (lo is not None and m < lo) or (hi is not None and m >= hi):
                continue
        out.append(res)
    return offset_bundle(request, "Appointment", params, out, count, after or 0)


@router.post("/fhir/Patient")
async def register_patient(request: Request) -> Response:
    patient, created = sandbox(request).patient_records.register_patient(await json_body(request))
    location = f"{fhir_base(request)}/Patient/{patient['id']}"
    return fhir_response(patient, 201 if created else 200, {"Location": location})


@router.get("/fhir/Patient")
async def search_patients(request: Request) -> Response:
    sb = sandbox(request)
    params, count, after, _ = page_params(request, query_pairs(request))
    out = []
    for p in sb.patient_records.patients.values():
        names = p.get("name") or [{}]
        family = (names[0].get("family") or "").lower()
        given = [g.lower() for g in names[0].get("given") or []]
        ok = True
        for v in search.split_values(params, "_id"):
            ok &= p["id"] == v
        for v in search.split_values(params, "identifier"):
            system, value = codes.split_token(v)
            ok &= any(
                i.get("value") == value and (system is None or i.get("system") == system)
                for i in p.get("identifier") or []
            )
        for v in search.split_values(params, "family"):
            ok &= family.startswith(v.lower())
        for v in search.split_values(params, "given"):
            ok &= any(g.startswith(v.lower()) for g in given)
        for v in search.split_values(params, "name"):
            ok &= family.startswith(v.lower()) or any(g.startswith(v.lower()) for g in given)
        for v in search.split_values(params, "birthdate"):
            ok &= p.get("birthDate") == v
        for v in search.split_values(params, "gender"):
            ok &= p.get("gender") == v
        if ok:
            out.append(p)
    return offset_bundle(request, "Patient", params, out, count, after or 0)


@router.post("/fhir/Coverage")
async def create_coverage(request: Request) -> Response:
    body = await json_body(request)
    coverage, _ = sandbox(request).patient_records.put_coverage(None, body)
    return fhir_response(
        coverage, 201, {"Location": f"{fhir_base(request)}/Coverage/{coverage['id']}"}
    )


@router.put("/fhir/Coverage/{rid}")
async def put_coverage(request: Request, rid: str) -> Response:
    body = await json_body(request)
    if isinstance(body, dict) and body.get("id") not in (None, rid):
        raise bad_request("Coverage.id does not match the URL")
    coverage, created = sandbox(request).patient_records.put_coverage(rid, body)
    return fhir_response(coverage, 201 if created else 200)
