"""The ops console's pages: server-rendered HTML over the same services the CLI and the
admin API use (sync status, runs, the dispatcher, the rules check).

Every page but the login form needs a console session (anonymous -> 303 to the login
form); every POST needs the session's CSRF token. Nothing here shows patient data:
schedules, runs and claims are named by their resource ids only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from app.cache import booking_counts, slot_reads
from app.cache import claims as claims_repo
from app.cache import repository as repo
from app.cache import runs as runs_repo
from app.cache import samples as samples_repo
from app.cache.db import Session, read_session
from app.settings import Settings
from app.sync.messages import ResyncRequest
from app.sync.status import feed_json, sync_verdict
from app.sync.windows import utcnow
from rules.check import format_report, summarise
from rules.loader import MAX_RULES_BYTES, RulesError, parse_rules
from rules.schema import horizon_days

from . import session as console_session
from .charts import Chart, line_chart
from .rules_preview import preview_context
from .session import ConsoleSession

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
PAGE_SIZE = 50
RUNS_SHOWN = 50
CLAIMS_SHOWN = 50
MAX_RULES_UPLOAD = MAX_RULES_BYTES
CHART_SPAN = timedelta(hours=24)

router = APIRouter(prefix="/console", include_in_schema=False)


class LoginRequired(Exception):
    """An anonymous (or expired) visitor: sent to the login form."""


def _ago(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None or moment <= repo.NEVER:
        return "never"
    seconds = int(((now or utcnow()) - moment).total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _instant(moment: datetime | None) -> str:
    if moment is None or moment <= repo.NEVER:
        return "-"
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    whole = int(seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if whole >= size:
            return f"{whole // size} {unit} ago"
    return f"{whole} s ago"


TEMPLATES.env.filters["ago"] = _ago
TEMPLATES.env.filters["duration"] = _duration
TEMPLATES.env.filters["instant"] = _instant


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _logged_in(request: Request) -> ConsoleSession | None:
    """The logged-in operator, whose API key still holds the admin scope, or None."""
    settings = _settings(request)
    found = console_session.current(request, settings)
    admins = request.app.state.authenticator.api_key_subjects(settings.admin_scope)
    return found if found is not None and found.subject in admins else None


def _user(request: Request) -> ConsoleSession:
    found = _logged_in(request)
    if found is None:
        raise LoginRequired
    return found


def _checked(request: Request, csrf: str | None) -> ConsoleSession:
    user = _user(request)
    if not console_session.csrf_matches(user, csrf):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
    return user


@contextmanager
def _reading(request: Request) -> Iterator[Session]:
    with read_session(request.app.state.engine) as session:
        yield session


def _page(request: Request, name: str, user: ConsoleSession | None, **context: Any) -> Response:
    return TEMPLATES.TemplateResponse(
        request, name, {"user": user, "page": name.removesuffix(".html"), **context}
    )


# -- login ---------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    if _logged_in(request) is not None:
        return RedirectResponse("/console", status_code=303)
    return _login_form(request, None, status=200)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    credential: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    settings = _settings(request)
    if not console_session.login_token_matches(request, settings, csrf):
        return _login_form(request, "the form expired: log in again", status=403)
    throttle = request.app.state.auth_throttle
    client = request.client.host if request.client else "-"
    if throttle.retry_after(client) is not None:
        return _login_form(request, "too many failed logins: wait a minute", status=429)
    try:
        principal = await request.app.state.authenticator.authenticate(None, credential)
    except HTTPException:
        throttle.failed(client)
        return _login_form(request, "that is not a valid API key", status=401)
    if settings.admin_scope not in principal.scopes:
        return _login_form(request, "that key does not hold the admin scope", status=403)
    response = RedirectResponse("/console", status_code=303)
    console_session.start(request, response, settings, principal.subject)
    return response


def _login_form(request: Request, error: str | None, *, status: int) -> Response:
    """The login form with a fresh CSRF token (its signed copy goes in a cookie)."""
    token = console_session.new_login_token()
    context = {"user": None, "page": "login", "error": error, "login_csrf": token}
    response = TEMPLATES.TemplateResponse(request, "login.html", context, status_code=status)
    console_session.remember_login_token(request, response, _settings(request), token)
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    _checked(request, csrf)
    response = RedirectResponse("/console/login", status_code=303)
    console_session.end(response)
    return response


# -- overview ------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview(request: Request) -> Response:
    """Healthy, degraded or down, and why; from indexed reads and the recorded samples,
    never a scan of the slots (see :mod:`app.sync.samples`)."""
    user = _user(request)
    settings = _settings(request)
    now = utcnow()
    day_ago = now - CHART_SPAN
    with _reading(request) as session:
        verdict = sync_verdict(session, now=now, settings=settings)
        running = runs_repo.running_runs(session)
        history = samples_repo.since(session, day_ago)
        latest = samples_repo.latest(session)
    health = verdict.health
    charts = [
        line_chart(
            "Freshness lag (most lagging schedule)",
            [(s.sampled_at, s.max_lag_seconds) for s in history],
            start=day_ago, end=now, unit="s",
        ),
        line_chart(
            "Slots cached",
            [(s.sampled_at, float(s.slots_cached)) for s in history],
            start=day_ago, end=now,
        ),
    ]  # fmt: skip
    return _page(
        request,
        "overview.html",
        user,
        state=verdict.state,
        problems=verdict.problems,
        health=health,
        load_age=health.full_load_age_seconds,
        stale=len(health.stale(settings.ops_stale_after_minutes * 60)),
        feed_state=verdict.feed_state,
        feeds=[
            feed_json(row, poll_interval_seconds=settings.poll_interval_seconds, now=now)
            for row in verdict.feeds
        ],
        running=[_progress(r) for r in running],
        latest=latest,
        charts=charts,
        now=now,
    )


# -- schedules -----------------------------------------------------------------


def _state(row: Any, now: datetime, stale_after: timedelta) -> str:
    if row.last_error:
        return "error"
    if row.last_confirmed_at <= repo.NEVER:
        return "never loaded"
    return "stale" if now - row.last_confirmed_at > stale_after else "fresh"


@router.get("/schedules", response_class=HTMLResponse)
def schedules(
    request: Request,
    q: Annotated[str, Query(max_length=200)] = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    user = _user(request)
    settings = _settings(request)
    now = utcnow()
    search = q.strip()
    with _reading(request) as session:
        rows, total = repo.schedule_page(
            session, search=search or None, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
        )
        counts = repo.slots_in_schedules(session, [r.id for r in rows])
    stale_after = timedelta(minutes=settings.ops_stale_after_minutes)
    table = [
        {
            "id": r.id,
            "actors": r.actor_refs,
            "service_types": r.service_types,
            "slots": counts.get(r.id, 0),
            "last_confirmed_at": r.last_confirmed_at,
            "state": _state(r, now, stale_after),
            "last_error": r.last_error,
        }
        for r in rows
    ]
    pages = max(1, -(-total // PAGE_SIZE))
    return _page(
        request, "schedules.html", user, rows=table, total=total, q=search, page=page,
        pages=pages, now=now,
    )  # fmt: skip


@router.post("/schedules/{schedule_id}/resync")
async def resync_schedule(
    request: Request, schedule_id: str, csrf: Annotated[str, Form()] = ""
) -> Response:
    _checked(request, csrf)
    resync = ResyncRequest(
        kind="resync", schedule_ids=(schedule_id,), actor=None, start=None, end=None
    )
    token = await run_in_threadpool(request.app.state.dispatcher.resync, resync)
    return RedirectResponse(f"/console/runs?token={token}", status_code=303)


# -- runs ----------------------------------------------------------------------


def _progress(run: Any) -> dict[str, Any]:
    return {
        "id": run.id,
        "token": run.token,
        "kind": run.kind,
        "scope": run.scope,
        "status": run.status,
        "chunks_total": run.chunks_total,
        "chunks_done": run.chunks_done,
        "chunks_failed": run.chunks_failed,
        "slots_seen": run.slots_seen,
        "error": run.error,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


@router.get("/runs", response_class=HTMLResponse)
def runs(request: Request, token: Annotated[str, Query(max_length=100)] = "") -> Response:
    user = _user(request)
    with _reading(request) as session:
        recent = [_progress(r) for r in runs_repo.recent_runs(session, RUNS_SHOWN)]
        asked = runs_repo.run_by_token(session, token) if token else None
    pending = bool(token) and asked is None
    return _page(
        request, "runs.html", user, runs=recent, token=token, pending=pending,
        asked=_progress(asked) if asked else None, now=utcnow(),
    )  # fmt: skip


@router.get("/runs/{run_id}/progress")
def run_progress(request: Request, run_id: int) -> Response:
    _user(request)
    with _reading(request) as session:
        run = runs_repo.get_run(session, run_id)
    if run is None:
        return JSONResponse({"error": "no such run"}, status_code=404)
    progress = _progress(run)
    progress["started_at"] = _instant(run.started_at)
    progress["finished_at"] = _instant(run.finished_at)
    return JSONResponse(progress)


@router.post("/runs/resync-all")
async def resync_all(
    request: Request,
    csrf: Annotated[str, Form()] = "",
    confirm: Annotated[str, Form()] = "",
) -> Response:
    _checked(request, csrf)
    if confirm != "yes":
        raise HTTPException(400, "a full resync needs confirmation")
    load = ResyncRequest(kind="initial-load", schedule_ids=None, actor=None, start=None, end=None)
    token = await run_in_threadpool(request.app.state.dispatcher.resync, load)
    return RedirectResponse(f"/console/runs?token={token}", status_code=303)


# -- rules ---------------------------------------------------------------------


def _rules_context(request: Request) -> dict[str, Any]:
    store = request.app.state.rules_store
    store.reload_if_changed()
    return {"rules": store.current, "rules_path": store.path.name, "rules_error": store.last_error}


@router.get("/rules", response_class=HTMLResponse)
def rules_page(request: Request) -> Response:
    user = _user(request)
    return _page(request, "rules.html", user, check=None, **_rules_context(request))


@router.post("/rules/check", response_class=HTMLResponse)
async def rules_check(
    request: Request, file: UploadFile, csrf: Annotated[str, Form()] = ""
) -> Response:
    user = _checked(request, csrf)
    raw = await file.read(MAX_RULES_UPLOAD + 1)
    name = Path(file.filename or "rules.yaml").name
    check = await run_in_threadpool(_check_rules, request, raw, name)
    return _page(request, "rules.html", user, check=check, **_rules_context(request))


def _check_rules(request: Request, raw: bytes, name: str) -> dict[str, Any]:
    """`slotsync rules diff` (what it gains and loses against the rules in force) and
    `slotsync rules check` of an uploaded file, against the cache."""
    if len(raw) > MAX_RULES_UPLOAD:
        return {"file": name, "valid": False, "error": "the file is larger than 512 KiB"}
    try:
        text = raw.decode("utf-8")
        rules = parse_rules(text, source=name, fmt="json" if name.endswith(".json") else "yaml")
    except UnicodeDecodeError:
        return {"file": name, "valid": False, "error": "the file is not UTF-8 text"}
    except RulesError as exc:
        return {"file": name, "valid": False, "error": str(exc)}
    now = utcnow()
    horizon = horizon_days(rules)
    with _reading(request) as session:
        slots = slot_reads.free_slots(session, now, now + timedelta(days=horizon + 1), now=now)
        schedules_by_id = repo.schedules_by_id(session)
        actors = repo.actors_by_ref(session)
    summaries = summarise(rules, slots, schedules_by_id, actors, now)
    return {
        "file": name,
        "valid": True,
        "report": format_report(rules, summaries, source=name),
        "empty": [s.code for s in summaries if s.offers == 0],
        "preview": preview_context(request, rules),
    }


# -- bookings ------------------------------------------------------------------


# What the Bookings page counts, as its charts name them.
EVENT_TITLES = {
    booking_counts.HOLD: "Holds per hour",
    booking_counts.BOOK: "Bookings per hour",
    booking_counts.CANCEL: "Cancellations per hour",
    booking_counts.EXPIRE: "Expired holds per hour",
}


def _event_charts(
    counts: booking_counts.HourlyCounts, start: datetime, end: datetime
) -> list[Chart]:
    """A chart per kind of event, a point per hour at the middle of its hour (the
    current hour so far at ``end``), unbroken across the hours without events."""
    middles = [min(max(hour + timedelta(minutes=30), start), end) for hour in counts.hours]
    return [
        line_chart(
            title, [(m, float(n)) for m, n in zip(middles, counts.by_kind[kind], strict=True)],
            start=start, end=end, gap_seconds=2 * 3600,
        )
        for kind, title in EVENT_TITLES.items()
    ]  # fmt: skip


@router.get("/bookings", response_class=HTMLResponse)
def bookings(request: Request) -> Response:
    """The overlay's live claims, and the holds, bookings and cancellations counted as
    they happened (per hour, :mod:`app.cache.booking_counts`): resource ids only."""
    user = _user(request)
    now = utcnow()
    day_ago = now - CHART_SPAN
    with _reading(request) as session:
        by_kind = claims_repo.live_claims_by_kind(session, now)
        recent = claims_repo.recent_live_claims(session, now, CLAIMS_SHOWN)
        history = samples_repo.since(session, day_ago)
        counts = booking_counts.hourly(session, day_ago, now)
    charts = [
        line_chart(
            "Holds (pending or held)",
            [(s.sampled_at, float(s.claims_held)) for s in history],
            start=day_ago, end=now,
        ),
        line_chart(
            "Bookings", [(s.sampled_at, float(s.claims_booked)) for s in history],
            start=day_ago, end=now,
        ),
    ]  # fmt: skip
    return _page(
        request, "bookings.html", user, by_kind=by_kind, claims=recent, charts=charts, now=now,
        totals={kind: counts.total(kind) for kind in booking_counts.KINDS},
        counted_since=counts.hours[0], event_charts=_event_charts(counts, day_ago, now),
    )  # fmt: skip
