"""``GET|POST /fhir/Appointment/$find``: proposed appointments composed from the cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request

from app.errors import CacheStale, InvalidParameter
from app.fhir.appointment import to_r4, to_stu3
from app.fhir.bundle import avail_bundle, included_actors, outcome_issue
from app.fhir.find_params import ParsedFind, parse_find_parameters, parse_find_query
from app.find import find_appointments

from .deps import SessionDep, SettingsDep
from .responses import FhirResponse

router = APIRouter()


def _answer(request: Request, parsed: ParsedFind, session: Any, settings: Any) -> FhirResponse:
    state = request.app.state
    state.rules_store.reload_if_changed()
    now = datetime.now(UTC)
    result = find_appointments(
        session,
        parsed.request,
        rules=state.rules_store.current,
        catalog=state.catalog.get(session),
        now=now,
        sign=state.sign_proposal,
    )
    issues = [outcome_issue("warning", "informational", n.message) for n in result.notices]
    issues += [
        outcome_issue("warning", "not-supported", f"parameter {name} was not used")
        for name in parsed.ignored
    ]
    if result.oldest_confirmation is not None:
        age = now - result.oldest_confirmation
        if settings.stale_refuse_seconds and age > timedelta(seconds=settings.stale_refuse_seconds):
            raise CacheStale(
                f"availability data is {int(age.total_seconds())} s old, beyond the limit; "
                "retry after the next sync"
            )
        if age > timedelta(seconds=settings.stale_warning_seconds):
            issues.append(
                outcome_issue(
                    "warning",
                    "informational",
                    f"availability was last confirmed {int(age.total_seconds())} s ago",
                )
            )
    if not result.appointments:
        issues.append(outcome_issue("information", "not-found", "no appointments available"))
    render = to_r4 if settings.ehr_fhir_version == "r4" else to_stu3
    requested = (parsed.request.start, parsed.request.end)
    resources = [render(a, requested, result.actors) for a in result.appointments]
    bundle = avail_bundle(
        resources,
        base_url=str(request.base_url).rstrip("/") + "/fhir",
        last_updated=result.oldest_confirmation,
        issues=issues,
        included=included_actors(resources, parsed.includes, result.actors),
        profile=settings.ehr_fhir_version != "r4",
    )
    return FhirResponse(bundle)


@router.get("/Appointment/$find", response_class=FhirResponse)
def find_get(request: Request, session: SessionDep, settings: SettingsDep) -> FhirResponse:
    parsed = parse_find_query(request.query_params.multi_items())
    return _answer(request, parsed, session, settings)


@router.post("/Appointment/$find", response_class=FhirResponse)
async def find_post(request: Request, session: SessionDep, settings: SettingsDep) -> FhirResponse:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidParameter("the body is not valid JSON") from None
    parsed = parse_find_parameters(body, request.query_params.multi_items())
    return _answer(request, parsed, session, settings)
