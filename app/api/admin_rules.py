"""Rules changes over the admin API: ``POST /admin/rules/preview`` and ``/admin/rules/apply``.

Both take the new rules file as the body (YAML, or JSON with a JSON media type). An
invalid file is a 422 OperationOutcome with an issue per problem, each naming the
field (``expression``) and its line and column; a body over
:data:`rules.loader.MAX_RULES_BYTES` is a 413. Preview never changes the rules in
force; apply replaces the file atomically and puts it in force in this process, and
every other API process follows at its next change check (:class:`rules.loader.RulesStore`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from app.availability.preview import request_patient
from app.cache.db import read_session
from app.core.errors import Conflict, SlotsyncError, UnsupportedMediaType
from app.sync.windows import utcnow
from rules.loader import MAX_RULES_BYTES, RulesError, parse_rules
from rules.preview import EXAMPLES, diff_rules
from rules.schema import RulesFile

from .auth import AdminDep
from .deps import SettingsDep
from .responses import FhirResponse

router = APIRouter()

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")
JSON_TYPES = ("application/json", "application/fhir+json")
_BODY = {
    "required": True,
    "content": {
        media: {"schema": {"type": "string", "description": "a rules file"}}
        for media in (*YAML_TYPES[:1], *JSON_TYPES[:1])
    },
}


class RulesRejected(SlotsyncError):
    """The rules file in the body does not validate: nothing is previewed or applied."""

    http_status = 422
    code = "invalid"


class RulesTooLarge(SlotsyncError):
    http_status = 413
    code = "too-costly"


def rejected(exc: RulesError) -> RulesRejected:
    """An OperationOutcome issue per problem, with the field and where it is."""
    issues: list[dict[str, object]] = []
    for problem in exc.problems:
        issue: dict[str, object] = {
            "severity": "error",
            "code": "invalid",
            "diagnostics": f"{problem.path}{problem.where}: {problem.message}",
        }
        if not problem.path.startswith("("):
            issue["expression"] = [problem.path]
        if problem.line is not None:
            where = f"line {problem.line}"
            if problem.column is not None:
                where += f", column {problem.column}"
            issue["location"] = [where]
        issues.append(issue)
    return RulesRejected(
        f"the rules file is invalid ({len(exc.problems)} problem(s)); nothing changed",
        issues=issues,
    )


async def rules_body(request: Request) -> tuple[str, str]:
    """The body as text and its format (``yaml`` or ``json``), refused when too large,
    not text or of another media type."""
    media = request.headers.get("content-type", "application/yaml").split(";")[0].strip()
    media = media.lower()
    if media in JSON_TYPES:
        fmt = "json"
    elif media in YAML_TYPES:
        fmt = "yaml"
    else:
        raise UnsupportedMediaType(
            f"send the rules file as YAML ({YAML_TYPES[0]}) or JSON ({JSON_TYPES[0]}), not {media}"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_RULES_BYTES:
        raise RulesTooLarge(f"a rules file is at most {MAX_RULES_BYTES} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_RULES_BYTES:
            raise RulesTooLarge(f"a rules file is at most {MAX_RULES_BYTES} bytes")
    try:
        return raw.decode("utf-8"), fmt
    except UnicodeDecodeError as exc:
        raise RulesRejected(f"the rules file is not UTF-8 text: {exc}") from None


def _parse(text: str, fmt: str) -> RulesFile:
    try:
        return parse_rules(text, source="body", fmt=fmt)
    except RulesError as exc:
        raise rejected(exc) from None


@router.post(
    "/admin/rules/preview", response_class=FhirResponse, openapi_extra={"requestBody": _BODY}
)
async def preview(
    request: Request,
    _admin: AdminDep,
    age: Annotated[int | None, Query(ge=0, le=130, description="patient age, years")] = None,
    gender: Annotated[Literal["male", "female", "other", "unknown"] | None, Query()] = None,
    examples: Annotated[int, Query(ge=0, le=50)] = EXAMPLES,
) -> FhirResponse:
    """The offers gained and lost over the cached horizon if the body replaced the live
    rules (which stay in force), per schedule, visit type and day, with examples and
    the edit that caused them. Without ``age``/``gender``, eligibility changes are
    previewed for a patient on each side of every changed boundary."""
    text, fmt = await rules_body(request)
    new = _parse(text, fmt)
    store = request.app.state.rules_store
    finder = request.app.state.finder
    engine = request.app.state.engine

    def work() -> dict[str, Any]:
        now = utcnow()
        with read_session(engine) as session:
            patient = request_patient(now.date(), age, gender)
            result = finder.preview(session, new, now, patient=patient, examples=examples)
        return {"valid": True, "live": store.path.name, **result.as_json()}

    return FhirResponse(await run_in_threadpool(work))


@router.post(
    "/admin/rules/apply", response_class=FhirResponse, openapi_extra={"requestBody": _BODY}
)
async def apply(request: Request, settings: SettingsDep, _admin: AdminDep) -> FhirResponse:
    """Validate the body and, if valid, make it the rules file in force in every API
    process (this one at once, the others within their change check)."""
    text, fmt = await rules_body(request)
    if settings.rules_path is None:
        raise Conflict(
            "the server runs on the bundled example rules: set SLOTSYNC_RULES_PATH to a file"
            " of your own before applying a change"
        )
    store = request.app.state.rules_store
    store.reload_if_changed()
    old = store.current
    try:
        new = await run_in_threadpool(store.apply, text, fmt=fmt, source="body")
    except RulesError as exc:
        raise rejected(exc) from None
    return FhirResponse(
        {
            "applied": True,
            "rules": store.path.name,
            "version": new.version,
            "visit_types": len(new.visit_types),
            "changes": [c.as_json() for c in diff_rules(old, new)],
        }
    )
