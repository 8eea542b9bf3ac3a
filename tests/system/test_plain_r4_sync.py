"""Sync against a generic FHIR R4 server (the sandbox's plain-r4 profile) over real HTTP:
capabilities discovered, `_count` negotiated down, polls incremental and one at a time,
deletions seen through `Slot/_history`, and after an outage the requests of the recovery
poll proportional to what changed, not to the cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.orm import Session

from app.cache.models import SlotRow
from app.ehr.client import EhrClient
from app.ehr.transport import RetryPolicy
from app.sync import capabilities, feed, refresh
from app.sync.context import SyncContext
from app.sync.coordination import LocalCoordinator
from app.sync.messages import ResyncRequest
from app.sync.runs import run_in_process
from sandbox_ehr.process import start_sandbox
from tests.sync_support import RecordingDispatcher, settings

HORIZON_DAYS = 7
CAP = 100


@pytest.fixture(scope="module")
def ehr() -> Iterator[object]:
    with start_sandbox(
        profile="plain-r4",
        size=2500,
        page_size=CAP,
        max_count=CAP,
        extra_args=("--horizon-days", str(HORIZON_DAYS)),
    ) as sandbox:
        yield sandbox


def control(ehr, method: str, path: str, **kw):
    answer = httpx.request(method, f"{ehr.control_url}{path}", timeout=30, **kw)
    answer.raise_for_status()
    return answer.json() if answer.content else None


def truth(ehr) -> dict[str, tuple[str, datetime, datetime]]:
    """The free slots no active Appointment references (a plain server leaves booked
    Slots free), by the sandbox's own state."""
    start = datetime.now(UTC).date()
    window = {"start": str(start), "end": str(start + timedelta(days=HORIZON_DAYS))}
    found = control(ehr, "GET", "/truth", params=window | {"available": "true"})
    return {
        s["id"]: (s["schedule"], _instant(s["start"]), _instant(s["end"])) for s in found["slots"]
    }


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def cache(engine) -> dict[str, tuple[str, datetime, datetime]]:
    with Session(engine) as s:
        rows = s.query(SlotRow.id, SlotRow.schedule_id, SlotRow.start, SlotRow.end, SlotRow.status)
        assert all(r.status == "free" for r in rows)
        return {r.id: (r.schedule_id, r.start, r.end) for r in rows}


def requests_served(ehr) -> int:
    return sum(control(ehr, "GET", "/stats")["requests"].values())


@pytest.fixture
def ctx(ehr, engine) -> Iterator[SyncContext]:
    control(ehr, "POST", "/reset")
    control(ehr, "DELETE", "/faults")
    client = EhrClient(
        ehr.base_url,
        fhir_version="r4",
        page_size=500,  # above the server's cap: negotiated down
        retry=RetryPolicy(attempts=2, base_delay=0.01),
    )
    s = settings(
        ehr_fhir_version="r4",
        ehr_base_url=ehr.base_url,
        horizon_days=HORIZON_DAYS,
        load_window_days=HORIZON_DAYS,
        load_schedules_per_chunk=8,
        ehr_subscriptions=False,
    )
    yield SyncContext(engine=engine, client=client, coord=LocalCoordinator(), settings=s)
    client.close()


def test_load_negotiates_the_page_size_and_discovers_what_the_server_has(ehr, ctx):
    result = run_in_process(ctx, ResyncRequest(kind="initial-load"))
    assert result.status == "ok", result
    assert cache(ctx.engine) == truth(ehr)  # every slot, field by field
    assert ctx.client.page_size is not None and ctx.client.page_size <= CAP
    found = capabilities.known(ctx)
    assert found is not None
    assert not found.prefetch and not found.hold_and_book and not found.subscriptions
    assert found.slot_changes_since and found.slot_history
    assert capabilities.current_booking_path(ctx.engine, ctx.settings) == "appointment"


def refresh_all(ctx, dispatcher: RecordingDispatcher) -> None:
    """Run the refreshes a poll asked for, here (the workers' job)."""
    for _, schedule_id, start, end in dispatcher.of("refresh"):
        refresh.refresh_schedule(ctx, schedule_id, start, end)
    dispatcher.calls.clear()


def test_a_deleted_slot_is_seen_by_the_next_poll(ehr, ctx):
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    dispatcher = RecordingDispatcher()
    feed.poll(ctx, dispatcher)  # from the load's start: nothing changed yet
    refresh_all(ctx, dispatcher)
    victim = sorted(truth(ehr))[len(truth(ehr)) // 2]
    assert httpx.delete(f"{ehr.base_url}/Slot/{victim}", timeout=10).status_code == 204
    assert victim in cache(ctx.engine)
    result = feed.poll(ctx, dispatcher)
    assert result.mode == "since" and result.deleted_slots == 1
    refresh_all(ctx, dispatcher)
    assert victim not in cache(ctx.engine)
    assert cache(ctx.engine) == truth(ehr)


def test_a_poll_sees_appointments_written_by_another_client(ehr, ctx):
    """A plain server leaves a booked Slot free: the poll learns of the booking from the
    Appointment search, and of its cancellation too (the slot is offered again)."""
    time.sleep(feed.CURSOR_MARGIN.total_seconds() + 1)  # the reset leaves the poll's overlap
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    dispatcher = RecordingDispatcher()
    feed.poll(ctx, dispatcher)
    refresh_all(ctx, dispatcher)
    victim = sorted(truth(ehr))[len(truth(ehr)) // 3]
    schedule, start, end = truth(ehr)[victim]
    appointment = {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "slot": [{"reference": f"Slot/{victim}"}],
        "participant": [{"actor": {"reference": "Patient/pat-2"}, "status": "accepted"}],
    }
    made = httpx.post(f"{ehr.base_url}/Appointment", json=appointment, timeout=10)
    assert made.status_code == 201, made.text
    assert victim in cache(ctx.engine)
    result = feed.poll(ctx, dispatcher)
    assert result.changed_appointments == 1
    assert [c[1] for c in dispatcher.of("refresh")] == [schedule]
    refresh_all(ctx, dispatcher)
    assert victim not in cache(ctx.engine)
    assert cache(ctx.engine) == truth(ehr)

    cancelled = made.json() | {"status": "cancelled"}
    url = f"{ehr.base_url}/Appointment/{cancelled['id']}"
    assert httpx.put(url, json=cancelled, timeout=10).status_code == 200
    assert feed.poll(ctx, dispatcher).changed_appointments == 1
    refresh_all(ctx, dispatcher)
    assert victim in cache(ctx.engine)
    assert cache(ctx.engine) == truth(ehr)


def test_after_an_outage_the_recovery_poll_reads_what_changed_not_everything(ehr, ctx):
    # the reset above is itself a change of every slot: let it leave the poll's overlap
    time.sleep(feed.CURSOR_MARGIN.total_seconds() + 1)
    control(ehr, "DELETE", "/stats")
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    load_requests = requests_served(ehr)
    dispatcher = RecordingDispatcher()
    feed.poll(ctx, dispatcher)
    refresh_all(ctx, dispatcher)
    # the EHR is unreachable for a while: every poll fails, the cursor stays
    control(ehr, "POST", "/faults", json={"kind": "error", "path": "/fhir/*", "status": 503})
    for _ in range(3):
        assert feed.poll(ctx, dispatcher).mode == "failed"
    # meanwhile three slots were booked at the EHR
    changed = control(ehr, "POST", "/mutate", json={"op": "random", "count": 3, "seed": 7})
    control(ehr, "DELETE", "/faults")
    control(ehr, "DELETE", "/stats")
    result = feed.poll(ctx, dispatcher)
    refresh_all(ctx, dispatcher)
    recovery = requests_served(ehr)
    assert result.mode == "since" and result.changed_slots >= 1
    assert cache(ctx.engine) == truth(ehr)
    touched = len({c["schedule"] for c in changed["changes"]})
    # a slot search, a history read and an appointment search, then per schedule
    # refreshed a page of its slots and one of its appointments (and a page's slack); a
    # full read of the cache took load_requests, and grows with the cache where this does not
    routes = control(ehr, "GET", "/stats")["requests"]
    assert recovery <= 3 + 3 * touched, (recovery, touched, load_requests, routes)
    assert recovery * 3 < load_requests


def test_polls_never_run_twice_at_once(ehr, ctx):
    time.sleep(feed.CURSOR_MARGIN.total_seconds() + 1)  # the reset leaves the poll's overlap
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    control(
        ehr, "POST", "/faults", json={"kind": "latency", "path": "/fhir/Slot", "latency_ms": 700}
    )
    results: list[str] = []

    def one() -> None:
        results.append(feed.poll(ctx, RecordingDispatcher()).mode)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == ["busy", "busy", "since"]


def test_the_near_reconcile_removes_what_the_ehr_deleted_without_a_change_feed(ehr, ctx):
    from app.sync.periodic import periodic_jobs

    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    victim = sorted(truth(ehr))[0]  # the nearest slot: inside the reconciled days
    assert httpx.delete(f"{ehr.base_url}/Slot/{victim}", timeout=10).status_code == 204
    job = next(j for j in periodic_jobs(ctx.settings) if j.name == "near-reconcile")
    dispatcher = RecordingDispatcher()
    job.run(ctx, dispatcher)
    [(_, request)] = dispatcher.of("resync")
    assert request.kind == "reconcile"
    assert request.end - request.start == timedelta(days=ctx.settings.reconcile_days)
    assert run_in_process(ctx, request).status == "ok"
    assert victim not in cache(ctx.engine)
    assert cache(ctx.engine) == truth(ehr)
