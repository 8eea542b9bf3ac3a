"""Operations endpoints: ``/healthz`` (alive), ``/readyz`` (can serve), ``/metrics`` (Prometheus).

Readiness is a set of named checks; other parts of the server add theirs with one
line, e.g. the rules engine::

    add_readiness_check(app, "rules", lambda: Check(engine.loaded, engine.describe()))

The checks themselves live in :mod:`app.observability.checks` (``slotsync status``
runs the same ones).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from app.cache.db import Engine, read_session
from app.cache.sync_health import collect_sync_health
from app.core.recent import Recent
from app.observability.checks import (
    Check,
    ReadinessCheck,
    broker_check,
    database_check,
    full_load_check,
    guarded,
)
from app.observability.metrics import SyncHealthCollector, render
from app.settings import Settings

from .auth import API_KEY_HEADER, MetricsDep, authenticate, is_operator

__all__ = ["Check", "ReadinessCheck", "add_readiness_check", "install_health", "router"]

router = APIRouter(tags=["ops"])


class CheckReport(BaseModel):
    ok: bool
    detail: str


class ReadinessReport(BaseModel):
    status: str  # ready | degraded (serving; the cache may differ from the EHR) | unready
    # for the admin or metrics credential only
    checks: dict[str, CheckReport] | None = None


class Liveness(BaseModel):
    status: str


def add_readiness_check(app: FastAPI, name: str, check: ReadinessCheck) -> None:
    """Register (or replace) a named readiness check; it must be quick and must not raise."""
    app.state.readiness_checks[name] = check


def install_health(app: FastAPI, settings: Settings) -> None:
    """The ops router, the default readiness checks and the scrape-time sync gauges."""

    def engine() -> Engine:
        return app.state.engine  # type: ignore[no-any-return]

    app.state.readiness_checks = {}
    add_readiness_check(app, "database", database_check(engine))
    add_readiness_check(app, "broker", broker_check(settings.effective_redis_url))
    add_readiness_check(
        app, "full_load", full_load_check(engine, settings.readiness_max_load_age_hours)
    )

    def load_health() -> Any:
        with read_session(app.state.engine) as session:
            return collect_sync_health(session, stall_seconds=settings.run_stall_seconds)

    def sync_check() -> Check:
        with read_session(app.state.engine) as session:
            health = collect_sync_health(
                session, count_slots=False, stall_seconds=settings.run_stall_seconds
            )
        state, problems = health.assess(
            stale_after_seconds=settings.ops_stale_after_minutes * 60,
            max_load_age_hours=settings.readiness_max_load_age_hours,
        )
        return Check(state == "ok", "; ".join(problems) or "in sync")

    # probes come every few seconds from every orchestrator replica
    app.state.sync_check = Recent(sync_check, ttl=5.0)

    app.state.sync_health_collector = SyncHealthCollector(load_health)
    app.include_router(router)


@router.get("/healthz", response_model=Liveness)
def healthz() -> JSONResponse:
    """Liveness: the process answers. Depends on nothing else."""
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    response_model=ReadinessReport,
    responses={503: {"model": ReadinessReport, "description": "a dependency is not ready"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: database, broker, a recent full load, and any registered check.

    ``degraded`` (still 200: the API can serve) when sync work is stuck or failed, or
    schedules are stale, so that monitoring sees it apart from "down" (503). The checks
    and their details are shown to the admin or metrics credential only.
    """
    ready, status, results = await run_in_threadpool(_readiness, request.app)
    body: dict[str, Any] = {"status": status}
    if await _may_see_details(request):
        body["checks"] = {name: {"ok": r.ok, "detail": r.detail} for name, r in results.items()}
    return JSONResponse(body, status_code=200 if ready else 503)


def _readiness(app: FastAPI) -> tuple[bool, str, dict[str, Check]]:
    """Run the checks (blocking I/O: off the event loop)."""
    results = {name: guarded(name, check) for name, check in app.state.readiness_checks.items()}
    ready = all(result.ok for result in results.values())
    sync = guarded("sync", app.state.sync_check) if ready else None
    if sync is not None:
        results["sync"] = sync
    status = "unready" if not ready else "ready" if sync is None or sync.ok else "degraded"
    return ready, status, results


async def _may_see_details(request: Request) -> bool:
    """The checks' details (paths, error names) are for operators: callers with the admin
    or the metrics credential. Probes need only the status and its HTTP code."""
    settings: Settings = request.app.state.settings
    if not (request.headers.get("authorization") or request.headers.get(API_KEY_HEADER)):
        return False
    try:
        principal = await authenticate(request)
    except HTTPException:
        return False
    return is_operator(principal, settings)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, _caller: MetricsDep) -> Response:
    settings: Settings = request.app.state.settings
    body, content_type = render(
        settings.metrics_multiproc_dir, request.app.state.sync_health_collector
    )
    return Response(body, media_type=content_type)
