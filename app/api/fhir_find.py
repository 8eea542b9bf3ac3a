"""``GET|POST /fhir/Appointment/$find``: proposed appointments composed from the cache."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict
from urllib.parse import urlencode

from anyio import CapacityLimiter, to_thread
from fastapi import APIRouter, Depends, Request, params
from fastapi.responses import Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from app.availability import page_cursor
from app.availability.answer_memo import AnswerMemo, FindInputs
from app.availability.finder import FindAnswer
from app.availability.params import ParsedFind, parse_find_parameters, parse_find_query
from app.cache.db import Session
from app.core.errors import CacheStale
from app.fhir.bundle import avail_bundle, included_actors, outcome_issue
from app.fhir.explain import explain_entry
from app.observability.metrics import find_answered
from rules.request import PageKey

from .auth import APPOINTMENT_READ, ensure_admin, require_scopes
from .body import json_body
from .deps import autocommit_session
from .encoding import packed_response
from .openapi import BUNDLE_REF, fhir_content
from .openapi_examples import FIND_EXAMPLES, query_parameter, request_body
from .responses import FhirResponse, fhir_json

router = APIRouter()
log = logging.getLogger(__name__)


def _query(name: str, description: str, example: str, **schema: object) -> dict[str, object]:
    return query_parameter(name, description, example, required=name in ("start", "end"), **schema)


VISIT_TYPE = "http://fhir.org/guides/argonaut-scheduling/CodeSystem/visit-type|office-visit"
# Documented for integrators (and fuzzed by the test suite); parsed by app.availability.params.
FIND_PARAMETERS = [
    _query("start", "FHIR date or dateTime with offset: the earliest start", "2030-01-07"),
    _query("end", "FHIR date or dateTime with offset: after start", "2030-01-08T00:00:00Z"),
    _query("visit-type", "system|code; comma = OR, in preference order", VISIT_TYPE),
    _query(
        "specialty",
        "system|code of the practitioner's specialty",
        "http://snomed.info/sct|419772000",
    ),
    _query("practitioner", "Practitioner/<id>; comma = OR (alias: provider)", "Practitioner/pr-1"),
    _query(
        "location-reference", "Location/<id>; comma = OR (alias: location)", "Location/clinic-1"
    ),
    _query("location-string", "part of a clinic address: city, state or zip", "Springfield"),
    _query("patient-reference", "Patient/<id>: eligibility of a known patient", "Patient/123"),
    _query(
        "_count",
        "page size, 1-1000 (default SLOTSYNC_FIND_MAX_RESULTS); Bundle.total counts all",
        "10",
        pattern="^[0-9]+$",
    ),
    _query(
        "_cursor",
        "where the page starts: only as found in a Bundle's next link",
        "WyIyMDMwLTAxLTA3VDA5OjAwOjAwKzAwOjAwIiwwLCJQcmFjdGl0aW9uZXIvcHItMSIsInNjaC1wci0xIl0",
    ),
    _query(
        "_explain",
        "true: one more OperationOutcome saying why cached slots were not offered (admin"
        " scope only)",
        "true",
        enum=["true", "false"],
    ),
    _query(
        "_include",
        "Appointment:practitioner | Appointment:location | Appointment:actor",
        "Appointment:actor",
    ),
]


class _RouteDoc(TypedDict):
    """Route options shared by both ``$find`` routes, typed as ``APIRouter.get`` and
    ``APIRouter.post`` take them so that the dict can be splatted into either."""

    dependencies: Sequence[params.Depends]
    response_class: type[Response]
    responses: dict[int | str, dict[str, Any]]


FIND_DOC: _RouteDoc = {
    "dependencies": [Depends(require_scopes(APPOINTMENT_READ))],
    "response_class": FhirResponse,
    "responses": {200: fhir_content(BUNDLE_REF, "avail-bundle of proposed appointments")},
}


def _answer(request: Request, parsed: ParsedFind, session: Session) -> FhirResponse:
    """The answer, from the memo of rendered answers when the inputs it was made from
    are still the inputs now (:mod:`app.availability.answer_memo`)."""
    state = request.app.state
    if parsed.explain:
        ensure_admin(request)
    now = datetime.now(UTC)
    finder = state.finder
    memo: AnswerMemo | None = state.answers
    if memo is None or parsed.explain or parsed.request.patient is not None:
        # a patient's answer also rests on what the EHR said of them (read apart)
        return FhirResponse(_rendered(request, parsed, finder.answer(session, parsed, now)))
    # a POST's parameters are in its body: the key is what was parsed, and the URL
    # (the links and fullUrls rendered carry it)
    key = (str(request.url), parsed)
    inputs = finder.inputs(session, parsed.request, now)
    packed = memo.get(key, inputs, now)
    if packed is None:
        answer = finder.answer(session, parsed, now, inputs)
        body = fhir_json(_rendered(request, parsed, answer))
        packed = memo.put(key, inputs, now, answer.same_until, body, answer.shown_schedules)
        find_answered("composed")
        return packed_response(request.headers, packed, body)
    find_answered("memo")
    response = packed_response(request.headers, packed)
    if (then := memo.due_next(key, now)) is not None:
        # made once this response is sent: the request that comes in a minute's last
        # seconds does not wait for the next minute's answer
        response.background = BackgroundTask(_make_ahead, request, parsed, key, inputs, then)
    return response


async def _make_ahead(
    request: Request, parsed: ParsedFind, key: Hashable, inputs: FindInputs, then: datetime
) -> None:
    """The answer from ``then`` on, kept in the memo as the one after the answer kept
    for ``key``, in the process's one made-ahead thread (:func:`ahead_limiter`)."""
    await to_thread.run_sync(
        _ahead_in_session,
        request,
        parsed,
        key,
        inputs,
        then,
        limiter=request.app.state.ahead_limiter,
    )


def _ahead_in_session(
    request: Request, parsed: ParsedFind, key: Hashable, inputs: FindInputs, then: datetime
) -> None:
    if datetime.now(UTC) >= then:
        return  # queued past the minute: its first request composes the answer it needs
    state = request.app.state
    try:
        with autocommit_session(request) as session:
            ahead = state.finder.answer(session, parsed, then, inputs)
        rendered = fhir_json(_rendered(request, parsed, ahead))
    except CacheStale:  # at then, not now: the requests of then are told
        return
    except Exception:  # the response has gone; the minute's first request composes
        log.exception("making the next minute's $find answer failed")
        return
    state.answers.put(
        key, inputs, then, ahead.same_until, rendered, ahead.shown_schedules, ahead=True
    )
    find_answered("ahead")


def _rendered(request: Request, parsed: ParsedFind, answer: FindAnswer) -> dict[str, Any]:
    """``answer`` as the avail-bundle of the request's FHIR version."""
    state = request.app.state
    result = answer.result
    version = state.fhir_version
    requested = (parsed.request.start, parsed.request.end)
    resources = [
        version.render_appointment(a, requested, result.actors) for a in result.appointments
    ]
    bundle = avail_bundle(
        resources,
        base_url=str(request.base_url).rstrip("/") + "/fhir",
        last_updated=result.oldest_confirmation,
        issues=[outcome_issue(i.severity, i.code, i.text) for i in answer.issues],
        included=included_actors(resources, parsed.includes, result.actors),
        profile=version.profiles_bundles,
        total=result.total,
        links=page_links(request, result.next_after),
    )
    if answer.reasons is not None:
        bundle["entry"].append(explain_entry(answer.reasons))
    return bundle


def page_links(request: Request, next_after: PageKey | None) -> list[dict[str, str]]:
    """``self``, and ``next`` while offers remain: this request's URL with the cursor of
    the next page. A POST's links carry only its query; the Parameters are sent again."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != page_cursor.NAME]
    links = [{"relation": "self", "url": str(request.url)}]
    if next_after is not None:
        query = urlencode([*kept, (page_cursor.NAME, page_cursor.encode(next_after))])
        links.append({"relation": "next", "url": str(request.url.replace(query=query))})
    return links


@router.get("/Appointment/$find", openapi_extra={"parameters": FIND_PARAMETERS}, **FIND_DOC)
async def find_get(request: Request) -> FhirResponse:
    parsed = parse_find_query(request.query_params.multi_items())
    return await _compose(request, parsed)


@router.post(
    "/Appointment/$find",
    openapi_extra=request_body(FIND_EXAMPLES, "Parameters: the GET parameters, typed"),
    **FIND_DOC,
)
async def find_post(request: Request) -> FhirResponse:
    body = await json_body(request)
    parsed = parse_find_parameters(body, request.query_params.multi_items())
    return await _compose(request, parsed)


# $find threads per API process. Composing is work for the CPU, under the GIL: more
# threads add no throughput, only contention. With the default pool (40 threads), 16
# concurrent clients of the mixed benchmark got ~1,200 req/s with a p99 of 80-900 ms
# on two processes; with two threads each, ~1,800 req/s with a p99 of 16-25 ms. Two
# rather than one, so that a request's database round trip overlaps another's work.
# Python's GIL switch interval stays at its 5 ms default: at 0.5 ms (tried so that a
# served answer waits less behind a composition), one `benchmarks find` run at 1M gave
# 1,295-1,474 mixed req/s at 4-16 clients against 1,435-1,655 at 5 ms, and no lower
# single-client p99 (benchmarks/results/find-1m-gil-*-2026-12-06.json).
FIND_THREADS = 2


def find_limiter() -> CapacityLimiter:
    """The thread limiter of ``$find``, apart from the default pool where requests wait
    on the EHR ($hold, $book, reads), so that neither holds the other up. Made in the
    app's lifespan: a limiter belongs to its event loop."""
    return CapacityLimiter(FIND_THREADS)


def ahead_limiter() -> CapacityLimiter:
    """The one thread per process that makes the next minute's answers (one at a time:
    requests come first, and two compositions at once would only take turns)."""
    return CapacityLimiter(1)


async def _compose(request: Request, parsed: ParsedFind) -> FhirResponse:
    """Answer in a ``$find`` thread (on the event loop, composing held every other
    request of the process up for its whole length). A patient is looked up first, in
    the default pool: the EHR's answer may take seconds, which no ``$find`` thread
    waits for (the lookup keeps it for :meth:`_answer` to find)."""
    patient = parsed.request.patient
    if patient is not None:
        await run_in_threadpool(request.app.state.finder.patients.resolve, patient)
    return await to_thread.run_sync(
        _answer_in_session, request, parsed, limiter=request.app.state.find_limiter
    )


def _answer_in_session(request: Request, parsed: ParsedFind) -> FhirResponse:
    with autocommit_session(request) as session:
        return _answer(request, parsed, session)
