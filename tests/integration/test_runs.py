"""Runs: discovery, chunk planning, exactly-once counting, failures and pruning.

Against the sandbox EHR in-process (its organisation: practitioners, rooms and devices
of two clinics over the seven-day horizon, loaded in four two-day windows).
"""

from __future__ import annotations

import math
import time
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.cache import repository as repo
from app.cache import runs as runs_repo
from app.core.domain import Schedule
from app.fhir.versions import R4, STU3
from app.sync.runs import (
    ResyncRequest,
    execute_chunk,
    group_schedules,
    plan_run,
    run_in_process,
)
from benchmarks.processes import wait_until
from tests.sync_support import DAY0, cached, context, view

WINDOWS = 4  # ceil(7 days / 2)
PER_CHUNK = 10  # schedules a chunk (R4 names them: one Slot search each)


def test_full_load_by_schedule_chunks(engine, sandbox):
    ehr = sandbox("r4")
    ctx = context(engine, ehr, ehr_fhir_version="r4", load_schedules_per_chunk=PER_CHUNK)
    result = run_in_process(ctx, ResyncRequest(kind="initial-load"))
    assert result.status == "ok"
    assert result.chunks == math.ceil(len(ehr.schedules) / PER_CHUNK) * WINDOWS
    truth = ehr.truth()
    assert truth and view(cached(engine)) == truth
    assert result.seen == len(truth)
    with Session(engine) as s:
        rows = repo.schedule_rows(s)
        assert len(rows) == len(ehr.schedules)
        assert all(sch.last_error is None for sch in rows)
    discovery = [r for r in ehr.requests if r.url.path == "/fhir/Schedule"]
    assert discovery and discovery[0].url.params["_include"] == "Schedule:actor"


def test_window_chunking_when_the_ehr_has_no_schedule_search(engine, sandbox):
    ehr = sandbox("r4")
    ehr.fail("/Schedule", status=404)  # this EHR offers no Schedule search
    ctx = context(engine, ehr, ehr_fhir_version="r4", load_schedules_per_chunk=PER_CHUNK)
    result = run_in_process(ctx, ResyncRequest(kind="initial-load"))
    assert result.status == "ok" and result.chunks == WINDOWS
    assert view(cached(engine)) == ehr.truth()


def test_auto_chunking_loads_whole_windows_when_stu3_cannot_name_a_schedule(engine, sandbox):
    ehr = sandbox("stu3")
    assert any(
        actors == (f"Device/{sid.split('-', 1)[1]}",) for sid, actors in ehr.schedules.items()
    )
    ctx = context(engine, ehr, load_schedules_per_chunk=PER_CHUNK)
    result = run_in_process(ctx, ResyncRequest(kind="initial-load"))
    assert result.status == "ok" and result.chunks == WINDOWS  # windows, not schedules x windows
    assert view(cached(engine)) == ehr.truth()
    same = sandbox("r4")  # the same organisation (same seed), served as R4
    assert same.truth() == ehr.truth()
    r4 = run_in_process(
        context(engine, same, ehr_fhir_version="r4", load_schedules_per_chunk=PER_CHUNK),
        ResyncRequest(kind="initial-load"),
    )
    # R4 names schedules: chunks by schedule
    assert r4.chunks == math.ceil(len(same.schedules) / PER_CHUNK) * WINDOWS


def test_chunks_count_once_and_close_the_run_once(engine, sandbox):
    ehr = sandbox()
    ctx = context(engine, ehr)
    planned = plan_run(ctx, ResyncRequest(kind="initial-load"), token="task-1")
    assert plan_run(ctx, ResyncRequest(kind="initial-load"), token="task-1") == planned
    outcomes = [execute_chunk(ctx, planned.run_id, seq) for seq in planned.seqs]
    again = execute_chunk(ctx, planned.run_id, planned.seqs[0])
    assert again.status == "skipped"  # a redelivered chunk does nothing
    assert [o.run_finished for o in outcomes].count("ok") == 1
    with Session(engine) as s:
        run = runs_repo.get_run(s, planned.run_id)
        assert (run.status, run.chunks_done, run.chunks_failed) == ("ok", len(planned.seqs), 0)
        assert run.slots_seen == len(ehr.truth())


def test_a_failing_chunk_keeps_old_data_and_fails_the_run(engine, sandbox):
    ehr = sandbox("r4")
    ctx = context(engine, ehr, ehr_fhir_version="r4", load_schedules_per_chunk=PER_CHUNK)
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    before = cached(engine)
    ehr.book(*ehr.truth())
    planned = plan_run(ctx, ResyncRequest(kind="initial-load"))
    with Session(engine) as s:
        first = runs_repo.get_chunk(s, planned.run_id, planned.seqs[0])
    one_of_its_schedules = [first.schedule_ids[0]]
    budget = ctx.settings.task_max_retries + 1  # attempts, each of two HTTP tries
    for attempt in range(1, budget):
        ehr.fail("/Slot", status=500, times=2)
        retry = execute_chunk(ctx, planned.run_id, planned.seqs[0])
        assert retry.status == "retry" and "500" in retry.error and retry.delay > 0
        with Session(engine) as s:
            row = runs_repo.get_chunk(s, planned.run_id, planned.seqs[0])
            assert (row.status, row.attempts, row.claim_token) == ("pending", attempt, None)
            assert row.next_attempt_at is not None and "500" in row.error
            # a transient failure is not yet the schedule's error
            assert repo.schedule_rows(s, one_of_its_schedules)[0].last_error is None
    ehr.fail("/Slot", status=500, times=2)
    failed = execute_chunk(ctx, planned.run_id, planned.seqs[0])
    assert failed.status == "failed" and "500" in failed.error
    with Session(engine) as s:
        assert "500" in repo.schedule_rows(s, one_of_its_schedules)[0].last_error
    for seq in planned.seqs[1:]:
        assert execute_chunk(ctx, planned.run_id, seq).status == "ok"
    with Session(engine) as s:
        run = runs_repo.get_run(s, planned.run_id)
        assert (run.status, run.chunks_failed) == ("failed", 1)
        assert [c.seq for c in runs_repo.failed_chunks(s, planned.run_id)] == [first.seq]
        assert "500" in run.error
    # the failed chunk's schedules and window still hold the previous data, the rest is gone
    kept = {
        k: v
        for k, v in before.items()
        if v.schedule_id in first.schedule_ids and first.window_start <= v.start < first.window_end
    }
    assert kept and cached(engine) == kept


def test_full_load_forgets_schedules_the_ehr_dropped(engine, sandbox):
    ehr = sandbox("r4")
    ctx = context(engine, ehr, ehr_fhir_version="r4", load_schedules_per_chunk=PER_CHUNK)
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    dropped = next(sid for sid in ehr.schedules if sid.startswith("sch-pr-"))
    assert any(v.schedule_id == dropped for v in cached(engine).values())
    ehr.mutate({"op": "remove-schedule", "schedule": dropped})
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    with Session(engine) as s:
        assert set(repo.schedules_by_id(s)) == set(ehr.schedules) - {dropped}
    assert view(cached(engine)) == ehr.truth()
    assert not any(v.schedule_id == dropped for v in cached(engine).values())


def test_resync_of_one_actor_in_a_window(engine, sandbox):
    ehr = sandbox()
    ctx = context(engine, ehr)
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    day = DAY0 + timedelta(days=1)
    loaded = cached(engine).values()
    schedule = next(  # a practitioner's with slots on the first day and later
        sid
        for sid in sorted({v.schedule_id for v in loaded if v.start < day})
        if sid.startswith("sch-pr-")
        and any(v.schedule_id == sid and v.start >= day for v in loaded)
    )
    (actor,) = [a for a in ehr.schedules[schedule] if a.startswith("Practitioner/")]
    ehr.book(*ehr.truth())
    result = run_in_process(ctx, ResyncRequest(actor=actor, start=DAY0, end=day))
    assert result.status == "ok" and result.chunks == 1
    left = cached(engine)
    assert not any(s.schedule_id == schedule and s.start < day for s in left.values())
    # other schedules, and this one's later days, wait for their own refresh
    assert any(s.schedule_id != schedule and s.start < day for s in left.values())
    assert any(s.schedule_id == schedule and s.start >= day for s in left.values())


def test_stu3_groups_unnamed_schedules_into_one_fetch():
    schedules = [
        Schedule(id="sch-pr-1", actor_refs=("Practitioner/pr-1", "Location/clinic-1")),
        Schedule(id="sch-dev-1", actor_refs=("Device/dev-1",)),
        Schedule(id="sch-dev-2", actor_refs=("Device/dev-2",)),
        Schedule(id="sch-room-1", actor_refs=("Location/room-1",)),
    ]
    assert group_schedules(schedules, 1, STU3) == [
        ("sch-pr-1",),
        ("sch-room-1",),
        ("sch-dev-1", "sch-dev-2"),
    ]
    # a practitioner's and a room's schedule cannot share a practitioner AND location query
    schedules.append(Schedule(id="sch-pr-2", actor_refs=("Practitioner/pr-2", "Location/c-2")))
    assert group_schedules(schedules, 3, STU3) == [
        ("sch-pr-1", "sch-pr-2"),
        ("sch-room-1",),
        ("sch-dev-1", "sch-dev-2"),
    ]
    assert len(group_schedules(schedules, 1, R4)) == 5
    assert group_schedules(schedules, 3, R4)[0] == ("sch-dev-1", "sch-dev-2", "sch-pr-1")


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)  # what SQLite lacks
def test_a_run_over_every_schedule_leaves_fresh_planner_statistics(engine, sandbox):
    """PostgreSQL's advice after a bulk load: ANALYZE. A run over every schedule that
    wrote slots does it, so that plans do not wait for autovacuum (off on some
    servers, minutes late on big tables); a run of one schedule does not."""
    ehr = sandbox("r4")
    ctx = context(engine, ehr, ehr_fhir_version="r4", load_schedules_per_chunk=PER_CHUNK)

    def analyzed() -> int:
        with Session(engine) as s:
            return s.execute(
                text("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'slots'")
            ).scalar_one()

    before = analyzed()
    assert run_in_process(ctx, ResyncRequest(kind="initial-load")).status == "ok"
    # the statistics collector reports a little after the fact
    after_load = wait_until(lambda: (n := analyzed()) > before and n, 5, "ANALYZE of slots")
    with Session(engine) as s:
        estimate = s.execute(
            text("SELECT reltuples FROM pg_class WHERE relname = 'slots'")
        ).scalar_one()
    assert estimate == pytest.approx(len(ehr.truth()), rel=0.2)

    # a refresh of one practitioner that writes (the EHR took its slots): no ANALYZE
    day = DAY0 + timedelta(days=1)
    schedule = sorted(
        {
            v.schedule_id
            for v in cached(engine).values()
            if v.start < day and "-pr-" in v.schedule_id
        }
    )[0]
    (actor,) = [a for a in ehr.schedules[schedule] if a.startswith("Practitioner/")]
    ehr.book(*ehr.truth())
    result = run_in_process(ctx, ResyncRequest(actor=actor, start=DAY0, end=day))
    assert result.status == "ok" and result.deleted > 0
    time.sleep(0.6)  # as long as the collector could take to report one
    assert analyzed() == after_load
