"""Operations: ``POST /admin/resync`` and ``GET /admin/sync-status`` (admin scope)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated

import msgspec
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from app.core.errors import InvalidParameter
from app.core.ids import FHIR_ID_PATTERN, is_fhir_id
from app.fhir.media import PLAIN_JSON
from app.fhir.parse import FhirParseError, parse_instant
from app.sync.messages import ResyncRequest
from app.sync.status import sync_status
from app.sync.windows import align, horizon, utcnow

from .auth import AdminDep
from .deps import SessionDep, SettingsDep
from .responses import FHIR_JSON, FhirResponse

router = APIRouter()

# Schedule ids per resync call: the run locks each one and records them all in its scope.
MAX_RESYNC_SCHEDULES = 1000
_PROBLEMS_SHOWN = 5


class ResyncBody(BaseModel):
    """All fields optional: no schedule and no actor = everything (a full load)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    schedule: list[str] | None = Field(default=None, description="Schedule ids")
    actor: str | None = Field(default=None, description="e.g. Practitioner/pr-1")
    start: str | None = Field(default=None, description="FHIR date or dateTime")
    end: str | None = Field(default=None, description="FHIR date or dateTime")
    subscribe: bool = Field(default=False, description="also create/renew the EHR Subscription")

    @field_validator("schedule", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        if isinstance(value, list) and len(value) > MAX_RESYNC_SCHEDULES:
            raise ValueError(
                f"at most {MAX_RESYNC_SCHEDULES} schedule ids per call, not {len(value)};"
                " split the request"
            )
        return [value] if isinstance(value, str) else value

    @field_validator("schedule")
    @classmethod
    def _plain_ids(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        ids = [v.removeprefix("Schedule/") for v in value]
        if not ids:
            raise ValueError("schedule must be one or more Schedule ids")
        for n, sid in enumerate(ids):
            if not sid.strip():
                raise ValueError(f"schedule id {n} is empty")
            if not is_fhir_id(sid):
                shown = sid if len(sid) <= 70 else sid[:67] + "..."
                raise ValueError(
                    f"schedule id {n} ({shown!r}) is not a FHIR id (1 to 64 of A-Z a-z 0-9 - .)"
                )
        return ids

    @field_validator("actor")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and (value.count("/") != 1 or not all(value.split("/"))):
            raise ValueError("actor must be a relative reference like Practitioner/123")
        return value


def _instant(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_instant(value, name)
    except FhirParseError as exc:
        raise InvalidParameter(str(exc), expression=name) from exc


def _resync_body_schema() -> dict[str, object]:
    """The body's JSON schema, saying (as the validator does) that one id may be a string."""
    schema = ResyncBody.model_json_schema()
    schedule_id = {"type": "string", "pattern": f"^(Schedule/)?{FHIR_ID_PATTERN}$"}
    schema["properties"]["schedule"] = {
        "anyOf": [
            schedule_id,
            {
                "type": "array",
                "items": schedule_id,
                "minItems": 1,
                "maxItems": MAX_RESYNC_SCHEDULES,
            },
            {"type": "null"},
        ],
        "description": "Schedule id(s)",
    }
    return schema


RESYNC_ACCEPTED = {
    "type": "object",
    "required": ["token", "kind"],
    "properties": {
        "token": {"type": "string", "description": "the run is recorded under this token"},
        "kind": {"type": "string", "enum": ["initial-load", "resync"]},
        "status": {"type": "string"},
    },
}
SYNC_STATUS = {
    "type": "object",
    "required": ["overall", "schedules"],
    "properties": {"overall": {"type": "object"}, "schedules": {"type": "array"}},
}


def _json_schema(schema: Mapping[str, object], description: str) -> dict[str, object]:
    media = {"schema": schema}
    return {"description": description, "content": {FHIR_JSON: media, PLAIN_JSON: media}}


async def _resync_body(request: Request) -> ResyncBody:
    """The optional JSON body; anything but an object with the known fields is a 400."""
    raw = await request.body()
    try:
        data = msgspec.json.decode(raw) if raw.strip() else {}
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidParameter(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidParameter("body must be a JSON object")
    try:
        return ResyncBody.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in errors[:_PROBLEMS_SHOWN]
        )
        if len(errors) > _PROBLEMS_SHOWN:
            problems += f"; and {len(errors) - _PROBLEMS_SHOWN} more"
        raise InvalidParameter(problems) from exc


@router.post(
    "/admin/resync",
    status_code=202,
    response_class=FhirResponse,
    responses={202: _json_schema(RESYNC_ACCEPTED, "resync queued")},
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {PLAIN_JSON: {"schema": _resync_body_schema()}},
        }
    },
)
async def resync(request: Request, settings: SettingsDep, _admin: AdminDep) -> FhirResponse:
    body = await _resync_body(request)
    if body.schedule and body.actor:
        raise InvalidParameter("give schedule or actor, not both")
    start, end = _instant(body.start, "start"), _instant(body.end, "end")
    if start and end and end < start:
        raise InvalidParameter("end is before start", expression="end")
    if align(start, end, horizon(utcnow(), settings.horizon_days)) is None:
        raise InvalidParameter("the window lies outside the cached horizon")
    everything = not body.schedule and not body.actor and start is None and end is None
    resync_request = ResyncRequest(
        kind="initial-load" if everything else "resync",
        schedule_ids=tuple(body.schedule) if body.schedule else None,
        actor=body.actor,
        start=start,
        end=end,
    )
    dispatcher = request.app.state.dispatcher
    token = await run_in_threadpool(dispatcher.resync, resync_request)
    if body.subscribe:
        await run_in_threadpool(dispatcher.subscribe)
    return FhirResponse(
        {
            "token": token,
            "kind": resync_request.kind,
            "schedules": body.schedule,
            "actor": body.actor,
            "start": body.start,
            "end": body.end,
            "subscribe": body.subscribe,
            "status": "/admin/sync-status",
        },
        status_code=202,
    )


@router.get(
    "/admin/sync-status",
    response_class=FhirResponse,
    responses={200: _json_schema(SYNC_STATUS, "per-schedule and overall sync state")},
)
def status(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _admin: AdminDep,
    schedule: Annotated[list[str], Query(default_factory=list)],
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> FhirResponse:
    # FastAPI takes the last of repeated values and pydantic reads "100.0" as 100:
    # refuse both rather than guess what the caller meant
    given = request.query_params.getlist("limit")
    if len(given) > 1 or not all(v.isascii() and v.isdigit() for v in given):
        raise InvalidParameter("parameter 'limit' must be given once, as a whole number",
                               expression="limit")  # fmt: skip
    ids = [s.removeprefix("Schedule/") for s in schedule] if schedule else None
    store = request.app.state.rules_store
    store.reload_if_changed()  # an invalid new file leaves the served rules in force
    report = sync_status(
        session,
        now=utcnow(),
        settings=settings,
        schedule_ids=ids,
        limit=limit,
        rules=store.current,  # coverage of the rules this API serves, not of the file alone
    )
    return FhirResponse(report)
