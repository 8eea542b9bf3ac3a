"""``slotsync status``: sync health at a glance, as a terminal table or JSON.

One verdict per concern (database, broker, full load, freshness, sync work, sync
errors, cache), the schedules lagging most, and the latest runs. The exit status
is 2 when any verdict is FAIL (down), 1 when any is WARN (degraded: serving, but the
cache may differ from the EHR), else 0, so the same command serves cron and monitoring.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.cache.sync_health import SyncHealth, collect_sync_health
from app.observability.checks import broker_check, database_check, full_load_age_check, guarded
from app.settings import Settings

OK, WARN, FAIL = "OK", "WARN", "FAIL"
_STYLE = {OK: "green", WARN: "yellow", FAIL: "bold red"}


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    state: str
    detail: str


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def verdicts(health: SyncHealth, settings: Settings) -> list[Verdict]:
    """Judge a health snapshot against the configured limits."""
    out = []
    load = full_load_age_check(
        health.last_full_load_at, settings.readiness_max_load_age_hours, now=health.now
    )
    out.append(Verdict("full load", OK if load.ok else FAIL, load.detail))

    stale_after = settings.ops_stale_after_minutes * 60
    stale = health.stale(stale_after)
    if not health.schedules:
        out.append(Verdict("freshness", FAIL, "no schedules in the cache"))
    else:
        worst = _age(health.max_lag_seconds or 0.0)
        state = OK if not stale else (FAIL if len(stale) == health.schedules else WARN)
        out.append(
            Verdict(
                "freshness",
                state,
                f"{len(stale)} of {health.schedules} schedules unconfirmed for over "
                f"{settings.ops_stale_after_minutes} min (max lag {worst})",
            )
        )

    work = []
    if health.stuck_runs:
        work.append(f"{len(health.stuck_runs)} runs stuck {health.stuck_runs[:5]}")
    if health.unresolved_runs:
        follow = (
            f"follow-up run {health.follow_ups_scheduled[0][0]} due"
            if health.follow_ups_scheduled
            else "no follow-up left"
        )
        work.append(
            f"{health.failed_chunks} chunks failed in runs {health.unresolved_runs[:5]}; {follow}"
        )
    if health.errored_schedules:
        work.append(f"{health.errored_schedules} schedules whose last sync failed")
    out.append(Verdict("sync work", WARN if work else OK, "; ".join(work) or "nothing failed"))

    failed = health.failed_recent()
    detail = f"{failed} failed runs in the last 24 h"
    if health.last_failure is not None:
        last = health.last_failure
        when = last.finished_at.isoformat(timespec="seconds") if last.finished_at else "?"
        detail += f"; last: {last.kind} {last.scope or ''} at {when}: {(last.error or '')[:80]}"
    out.append(Verdict("sync errors", OK, detail))  # history; what is unresolved is above

    by_status = ", ".join(f"{n:,} {s}" for s, n in sorted(health.slots_by_status.items()))
    out.append(
        Verdict(
            "cache",
            OK if health.slots else FAIL,
            f"{health.slots:,} slots ({by_status or 'none'}) in {health.schedules} schedules",
        )
    )
    return out


def _runs(session: Session, limit: int) -> list[dict[str, Any]]:
    from app.cache import runs as runs_repo

    def iso(value: datetime | None) -> str | None:
        return value.isoformat(timespec="seconds") if value else None

    return [
        {
            "id": run.id,
            "kind": run.kind,
            "scope": run.scope,
            "started": iso(run.started_at),
            "finished": iso(run.finished_at),
            "status": run.status,
            "seen": run.slots_seen,
            "written": run.slots_upserted,
            "removed": run.slots_deleted,
            "error": (run.error or "")[:60],
        }
        for run in runs_repo.recent_runs(session, limit)
    ]


def print_status(
    settings: Settings,
    *,
    runs: int = 10,
    lagging: int = 5,
    as_json: bool = False,
    console: Console | None = None,
) -> int:
    from app.runtime import get_engine

    out = console or Console()
    engine = get_engine(settings)
    checks = [
        Verdict(name, OK if result.ok else FAIL, result.detail)
        for name, result in (
            ("database", guarded("database", database_check(lambda: engine))),
            ("broker", guarded("broker", broker_check(settings.effective_redis_url))),
        )
    ]
    health: SyncHealth | None = None
    recent: list[dict[str, Any]] = []
    if checks[0].state == OK:
        with Session(engine) as session:
            health = collect_sync_health(session, stall_seconds=settings.run_stall_seconds)
            recent = _runs(session, runs)
        checks += verdicts(health, settings)
    worst = health.schedule_lags[:lagging] if health else []
    failing = any(v.state == FAIL for v in checks)
    code = 2 if failing else 1 if any(v.state == WARN for v in checks) else 0

    if as_json:
        # plain text: no colour codes even on a terminal, no wrapping
        out.print(
            json.dumps(
                {
                    "healthy": code == 0,
                    "health": ("ok", "degraded", "down")[code],
                    "checks": [_as_dict(v) for v in checks],
                    "lagging": [
                        {
                            "schedule": lag.schedule_id,
                            "last_confirmed": lag.last_confirmed_at.isoformat(),
                            "lag_seconds": round(lag.lag_seconds, 1),
                            "last_error": lag.last_error,
                        }
                        for lag in worst
                    ],
                    "runs": recent,
                },
                indent=2,
            ),
            markup=False,
            highlight=False,
            emoji=False,
            soft_wrap=True,
        )
        return code

    url = make_url(settings.effective_database_url).render_as_string(hide_password=True)
    out.print(f"[bold]slotsync[/bold] {settings.environment} · cache {url}")
    table = Table("check", "state", "detail", title="health", title_justify="left")
    for v in checks:
        table.add_row(v.name, f"[{_STYLE[v.state]}]{v.state}[/]", v.detail)
    out.print(table)
    if worst:
        lag_table = Table(
            "schedule",
            "last confirmed",
            "lag",
            "last error",
            title="most lagging schedules",
            title_justify="left",
        )
        for lag in worst:
            lag_table.add_row(
                lag.schedule_id,
                lag.last_confirmed_at.isoformat(timespec="seconds"),
                _age(lag.lag_seconds),
                (lag.last_error or "")[:60],
            )
        out.print(lag_table)
    if recent:
        run_table = Table(*recent[0].keys(), title="recent sync runs", title_justify="left")
        for run in recent:
            style = "red" if run["status"] == "failed" else None
            run_table.add_row(*("" if v is None else str(v) for v in run.values()), style=style)
        out.print(run_table)
    return code


def _as_dict(verdict: Verdict) -> dict[str, str]:
    return {"name": verdict.name, "state": verdict.state, "detail": verdict.detail}
