"""Sync work under faults, on both backends: leases, the reaper, follow-ups, planning.

Each test plays the fault by hand (a worker that died after claiming, messages that
never arrived, an EHR that cannot be reached) and then checks what the run tables,
the status report and the cache say against the EHR's data (the sandbox EHR, in-process).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from app.cache import recovery
from app.cache import repository as repo
from app.cache import runs as runs_repo
from app.cache.sync_health import collect_sync_health
from app.sync import follow_up
from app.sync.reaper import reap, send_chunks
from app.sync.runs import (
    ResyncRequest,
    execute_chunk,
    execute_chunks,
    plan_run,
    planning_failed,
    run_in_process,
)
from app.sync.status import sync_status
from tests.sync_support import DAY0, Clock, RecordingDispatcher, cached, context, view


def run_row(engine, run_id):
    with Session(engine) as s:
        return runs_repo.get_run(s, run_id)


def health(ctx):
    with Session(ctx.engine) as s:
        return collect_sync_health(s, now=ctx.clock(), stall_seconds=ctx.settings.run_stall_seconds)


def test_a_chunk_whose_worker_died_is_sent_again_and_completes(engine, sandbox):
    ehr = sandbox()
    clock = Clock(DAY0 + timedelta(hours=1))
    ctx = context(engine, ehr, clock=clock, chunk_lease_seconds=45)
    planned = plan_run(ctx, ResyncRequest(kind="initial-load"))
    dispatcher = RecordingDispatcher()
    send_chunks(ctx, dispatcher, planned.run_id, planned.seqs)
    dead = planned.seqs[0]
    with Session(engine) as s, s.begin():  # a worker claims it, then is SIGKILLed
        claim = runs_repo.claim_chunk(
            s, planned.run_id, dead, token="dead-worker", now=clock(), lease_seconds=45
        )
        assert claim.state == "claimed"
    for seq in planned.seqs[1:]:
        assert execute_chunk(ctx, planned.run_id, seq).status == "ok"
    # while the lease is fresh a duplicate message leaves the chunk alone
    assert execute_chunk(ctx, planned.run_id, dead).status == "held"
    assert reap(ctx, dispatcher).lost_workers == 0
    clock.now += timedelta(seconds=46)
    ctx.coord.release("pending:reaper")
    report = reap(ctx, dispatcher)
    assert report.lost_workers == 1
    assert dispatcher.of("run_chunks")[-1] == ("run_chunks", planned.run_id, (dead,))
    outcome = execute_chunk(ctx, planned.run_id, dead)
    assert outcome.status == "ok" and outcome.run_finished == "ok"
    assert view(cached(engine)) == ehr.truth()
    with Session(engine) as s:
        assert runs_repo.get_chunk(s, planned.run_id, dead).attempts == 2


def test_lost_messages_of_a_quiet_run_are_sent_again(engine, sandbox):
    ehr = sandbox()
    clock = Clock(DAY0 + timedelta(hours=1))
    ctx = context(engine, ehr, clock=clock, run_quiet_seconds=30, run_stall_seconds=600)
    planned = plan_run(ctx, ResyncRequest(kind="initial-load"))
    dispatcher = RecordingDispatcher()
    send_chunks(ctx, dispatcher, planned.run_id, planned.seqs)  # ... and Redis loses them
    assert execute_chunk(ctx, planned.run_id, planned.seqs[0]).status == "ok"
    clock.now += timedelta(seconds=10)
    assert reap(ctx, dispatcher).resent == 0  # not quiet yet: messages may still be queued
    clock.now += timedelta(seconds=25)
    ctx.coord.release("pending:reaper")
    report = reap(ctx, dispatcher)
    assert report.resent == len(planned.seqs) - 1
    assert dispatcher.of("run_chunks")[-1][2] == tuple(planned.seqs[1:])
    ctx.coord.release("pending:reaper")
    assert reap(ctx, dispatcher).resent == 0  # just sent: not again at once
    for seq in planned.seqs[1:]:
        execute_chunk(ctx, planned.run_id, seq)
    assert run_row(engine, planned.run_id).status == "ok"
    assert view(cached(engine)) == ehr.truth()


def test_a_chunk_waiting_for_its_retry_is_not_sent_early(engine, sandbox):
    ehr = sandbox()
    clock = Clock(DAY0 + timedelta(hours=1))
    ctx = context(
        engine,
        ehr,
        clock=clock,
        run_quiet_seconds=30,
        run_stall_seconds=600,
        task_retry_base_seconds=120,
        task_retry_max_seconds=120,
    )
    planned = plan_run(ctx, ResyncRequest(kind="initial-load"))
    ehr.fail("/Slot/$prefetch", status=503, times=2)
    retry = execute_chunk(ctx, planned.run_id, planned.seqs[0])
    assert retry.status == "retry" and 60 <= retry.delay <= 120
    for seq in planned.seqs[1:]:
        assert execute_chunk(ctx, planned.run_id, seq).status == "ok"
    dispatcher = RecordingDispatcher()
    clock.now += timedelta(seconds=50)
    assert reap(ctx, dispatcher).resent == 0
    clock.now += timedelta(seconds=130)  # past its due time and the quiet period
    ctx.coord.release("pending:reaper")
    assert reap(ctx, dispatcher).resent == 1  # its retry message was lost: sent again
    assert dispatcher.of("run_chunks")[-1] == ("run_chunks", planned.run_id, (planned.seqs[0],))


def test_a_stalled_run_is_failed_and_its_rest_replanned_by_a_follow_up(engine, sandbox):
    ehr = sandbox()
    clock = Clock(DAY0 + timedelta(hours=1))
    ctx = context(
        engine,
        ehr,
        clock=clock,
        run_stall_seconds=120,
        follow_up_base_seconds=15,
        ops_stale_after_minutes=600,
    )
    planned = plan_run(ctx, ResyncRequest(kind="initial-load"))
    assert execute_chunk(ctx, planned.run_id, planned.seqs[0]).status == "ok"
    clock.now += timedelta(seconds=121)  # nobody took the rest (no worker, lost messages)
    assert health(ctx).stuck_runs == [planned.run_id]
    dispatcher = RecordingDispatcher()
    assert reap(ctx, dispatcher).stalled == 1
    run = run_row(engine, planned.run_id)
    assert run.status == "failed" and "no progress" in run.error
    assert run.chunks_failed == len(planned.seqs) - 1
    with Session(engine) as s:
        follow = recovery.child_of(s, planned.run_id)
        assert follow.status == "scheduled" and follow.kind == "follow-up"
        wait = follow.due_at - run.finished_at  # the first follow-up's delay
        assert timedelta(seconds=15) <= wait < timedelta(seconds=16)
        specs = [runs_repo.chunk_spec(c) for c in runs_repo.failed_chunks(s, planned.run_id)]
        again = [
            runs_repo.chunk_spec(runs_repo.get_chunk(s, follow.id, i)) for i in range(len(specs))
        ]
        assert [(c.schedule_ids, c.start, c.end) for c in again] == [
            (c.schedule_ids, c.start, c.end) for c in specs
        ]  # exactly the failed windows
    state = health(ctx)
    assert state.unresolved_runs == [planned.run_id] and state.follow_ups_scheduled
    assert state.assess(stale_after_seconds=36000, max_load_age_hours=48)[0] == "degraded"

    ctx.coord.release("pending:reaper")
    assert reap(ctx, dispatcher).started == 0  # not due yet
    clock.now += timedelta(seconds=16)
    ctx.coord.release("pending:reaper")
    assert reap(ctx, dispatcher).started == 1
    _, run_id, seqs = dispatcher.of("run_chunks")[-1]
    assert run_id == follow.id
    execute_chunks(ctx, run_id, seqs)
    assert run_row(engine, follow.id).status == "ok"
    assert run_row(engine, planned.run_id).recovered_at is not None
    assert view(cached(engine)) == ehr.truth()
    state = health(ctx)
    assert not state.unresolved_runs and not state.stuck_runs
    assert state.last_full_load_at is not None  # the load counts as complete once recovered
    with Session(engine) as s:
        report = sync_status(s, now=clock(), settings=ctx.settings)
    assert report["overall"]["health"] == "ok", report["overall"]["problems"]


def test_follow_ups_are_bounded_and_the_failure_stays_visible(engine, sandbox):
    ehr = sandbox()
    clock = Clock(DAY0 + timedelta(hours=1))
    ctx = context(engine, ehr, clock=clock, follow_up_max=1, task_max_retries=0)
    ehr.fail("/Slot/$prefetch", status=503, times=10_000)
    result = run_in_process(ctx, ResyncRequest(kind="initial-load"))
    assert result.status == "failed"
    with Session(engine) as s:
        first = recovery.child_of(s, result.run_id)
        assert first is not None and first.generation == 1
        rows = repo.schedule_rows(s)
        assert len(rows) == len(ehr.schedules) and all("503" in r.last_error for r in rows)
    clock.now += timedelta(hours=1)
    dispatcher = RecordingDispatcher()
    reap(ctx, dispatcher)
    _, run_id, seqs = dispatcher.of("run_chunks")[-1]
    execute_chunks(ctx, run_id, seqs)
    assert run_row(engine, first.id).status == "failed"
    with Session(engine) as s:
        assert recovery.child_of(s, first.id) is None  # the bound: no second follow-up
        report = sync_status(s, now=clock(), settings=ctx.settings)
    overall = report["overall"]
    assert overall["health"] == "degraded" and overall["follow_ups"] == []
    assert any("no follow-up left" in p for p in overall["problems"])
    assert overall["failed_chunks"] >= 1 and overall["errored_schedules"] == len(ehr.schedules)


def test_a_planner_that_cannot_reach_the_ehr_leaves_a_failed_run_and_a_follow_up(engine, sandbox):
    ehr = sandbox()
    clock = Clock(DAY0 + timedelta(hours=1))
    ctx = context(engine, ehr, clock=clock)
    ehr.fail("/Schedule", status=503, times=10_000)
    try:
        plan_run(ctx, ResyncRequest(kind="initial-load"), token="planner-1")
    except Exception as exc:
        error = str(exc)
    else:  # pragma: no cover - the EHR refuses every Schedule search
        raise AssertionError("planning should have failed")
    with Session(engine) as s:
        run = runs_repo.run_by_token(s, "planner-1")
        assert run.status == "planning" and "503" in run.error  # retrying, and why
    planning_failed(ctx, "planner-1", error)
    run = run_row(engine, run.id)
    assert run.status == "failed" and run.finished_at is not None
    with Session(engine) as s:
        follow = recovery.child_of(s, run.id)
        assert follow.status == "scheduled" and follow.chunks_total > 0
    # the EHR is back: the follow-up loads every window without needing discovery
    ehr.clear_faults()
    clock.now += timedelta(minutes=5)
    dispatcher = RecordingDispatcher()
    reap(ctx, dispatcher)
    _, run_id, seqs = dispatcher.of("run_chunks")[-1]
    execute_chunks(ctx, run_id, seqs)
    assert run_row(engine, run_id).status == "ok"
    assert view(cached(engine)) == ehr.truth()


def test_a_refresh_out_of_retries_marks_its_schedule_and_is_followed_up(engine, sandbox):
    ehr = sandbox()
    clock = Clock(DAY0 + timedelta(hours=1))
    ctx = context(engine, ehr, clock=clock)
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    booked, (schedule, *_) = next(iter(ehr.truth().items()))
    ehr.book(booked)
    run_id = follow_up.refresh_failed(
        ctx, schedule, DAY0, DAY0 + timedelta(days=7), "EhrUnavailable: EHR answered 503"
    )
    with Session(engine) as s:
        assert "503" in repo.schedule_rows(s, [schedule])[0].last_error
        report = sync_status(s, now=clock(), settings=ctx.settings)
    assert report["overall"]["health"] == "degraded"
    assert report["overall"]["follow_ups"][0]["run_id"] == run_id
    clock.now += timedelta(minutes=1)
    dispatcher = RecordingDispatcher()
    reap(ctx, dispatcher)
    execute_chunks(ctx, run_id, dispatcher.of("run_chunks")[-1][2])
    with Session(engine) as s:
        assert repo.schedule_rows(s, [schedule])[0].last_error is None  # a success clears it
    assert booked not in cached(engine)
    assert view(cached(engine)) == ehr.truth()


def test_in_process_chunks_ride_out_an_outage_within_the_budget(engine, sandbox):
    ehr = sandbox()
    ctx = context(engine, ehr, task_max_retries=5)
    # three attempts' worth of failures (two HTTP tries each), then the EHR is back
    outage = ehr.fail("/Slot/$prefetch", status=503, times=6)
    result = run_in_process(ctx, ResyncRequest(kind="initial-load"))
    assert result.status == "ok" and result.failed == 0
    assert ehr.fired(outage) == 6
    assert view(cached(engine)) == ehr.truth()


def test_a_short_page_is_read_again_from_the_first_page(engine, sandbox):
    ehr = sandbox()
    assert len(ehr.truth()) > ehr.config.page_size  # more than one page
    ctx = context(engine, ehr, ehr_refetch_attempts=2, task_max_retries=0)
    short = ehr.fail("/Slot/$prefetch", kind="short-page", times=1)  # half, no next link
    result = run_in_process(ctx, ResyncRequest(kind="initial-load"))
    assert result.status == "ok" and ehr.fired(short) == 1
    assert view(cached(engine)) == ehr.truth()
