"""Runs: discovery, chunk planning, exactly-once counting, failures and pruning."""

from __future__ import annotations

from datetime import timedelta

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
from tests.factories import slot
from tests.fake_ehr import FakeEhr
from tests.sync_support import DAY0, cached, context


def org(n: int = 3, per_schedule: int = 5) -> FakeEhr:
    ehr = FakeEhr(page_size=4)
    for i in range(n):
        sid = f"sch-{i}"
        ehr.add_schedule(sid, f"Practitioner/pr-{i}", "Location/clinic-1")
        # spread over the week so that several windows hold slots
        ehr.put(*(slot(j * 100, schedule=sid) for j in range(per_schedule)))
    return ehr


def test_full_load_by_schedule_chunks(engine):
    ehr = org()
    ctx = context(engine, ehr)
    result = run_in_process(ctx, ResyncRequest(kind="initial-load"))
    assert result.status == "ok"
    assert result.chunks == 3 * 4  # 3 schedules x ceil(7 days / 2)
    assert cached(engine) == ehr.slots
    assert result.seen == len(ehr.slots)
    with Session(engine) as s:
        assert all(sch.last_error is None for sch in repo.schedule_rows(s))
    discovery = [r for r in ehr.requests if r.url.path == "/fhir/Schedule"]
    assert discovery and discovery[0].url.params["_include"] == "Schedule:actor"


def test_window_chunking_when_the_ehr_has_no_schedule_search(engine):
    ehr = org()
    ehr.schedule_search = False
    result = run_in_process(context(engine, ehr), ResyncRequest(kind="initial-load"))
    assert result.status == "ok" and result.chunks == 4
    assert cached(engine) == ehr.slots


def test_auto_chunking_loads_whole_windows_when_stu3_cannot_name_a_schedule(engine):
    ehr = org(n=2)
    ehr.add_schedule("sch-dev-1", "Device/dev-1")
    ehr.put(*(slot(j * 100, schedule="sch-dev-1") for j in range(5)))
    result = run_in_process(context(engine, ehr), ResyncRequest(kind="initial-load"))
    assert result.status == "ok" and result.chunks == 4  # windows, not schedules x windows
    assert cached(engine) == ehr.slots
    r4 = run_in_process(
        context(engine, ehr, ehr_fhir_version="r4"), ResyncRequest(kind="initial-load")
    )
    assert r4.chunks == 3 * 4  # R4 names schedules: chunks by schedule


def test_chunks_count_once_and_close_the_run_once(engine):
    ehr = org(n=2)
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
        assert run.slots_seen == len(ehr.slots)


def test_a_failing_chunk_keeps_old_data_and_fails_the_run(engine):
    ehr = org(n=2)
    ctx = context(engine, ehr)
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    before = cached(engine)
    for sid in list(ehr.slots):
        ehr.book(sid)
    planned = plan_run(ctx, ResyncRequest(kind="initial-load"))
    budget = ctx.settings.task_max_retries + 1  # attempts, each of two HTTP tries
    for attempt in range(1, budget):
        ehr.fail("/Slot/$prefetch", status=500, times=2)
        retry = execute_chunk(ctx, planned.run_id, planned.seqs[0])
        assert retry.status == "retry" and "500" in retry.error and retry.delay > 0
        with Session(engine) as s:
            row = runs_repo.get_chunk(s, planned.run_id, planned.seqs[0])
            assert (row.status, row.attempts, row.claim_token) == ("pending", attempt, None)
            assert row.next_attempt_at is not None and "500" in row.error
            # a transient failure is not yet the schedule's error
            assert repo.schedule_rows(s, ["sch-0"])[0].last_error is None
    ehr.fail("/Slot/$prefetch", status=500, times=2)
    failed = execute_chunk(ctx, planned.run_id, planned.seqs[0])
    assert failed.status == "failed" and "500" in failed.error
    with Session(engine) as s:
        assert "500" in repo.schedule_rows(s, ["sch-0"])[0].last_error
    for seq in planned.seqs[1:]:
        assert execute_chunk(ctx, planned.run_id, seq).status == "ok"
    with Session(engine) as s:
        run = runs_repo.get_run(s, planned.run_id)
        assert (run.status, run.chunks_failed) == ("failed", 1)
        first = runs_repo.get_chunk(s, planned.run_id, planned.seqs[0])
        assert [c.seq for c in runs_repo.failed_chunks(s, planned.run_id)] == [first.seq]
        assert "500" in run.error
    # the failed chunk's schedule and window still hold the previous data
    kept = {
        k: v
        for k, v in before.items()
        if v.schedule_id in first.schedule_ids and first.window_start <= v.start < first.window_end
    }
    assert kept and kept.items() <= cached(engine).items()


def test_full_load_forgets_schedules_the_ehr_dropped(engine):
    ehr = org(n=3)
    ctx = context(engine, ehr)
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    del ehr.schedules["sch-2"]
    for sid in [k for k, v in ehr.slots.items() if v.schedule_id == "sch-2"]:
        del ehr.slots[sid]
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    with Session(engine) as s:
        assert set(repo.schedules_by_id(s)) == {"sch-0", "sch-1"}
    assert cached(engine) == ehr.slots


def test_resync_of_one_actor_in_a_window(engine):
    ehr = org(n=2)
    ctx = context(engine, ehr)
    run_in_process(ctx, ResyncRequest(kind="initial-load"))
    for sid in list(ehr.slots):
        ehr.book(sid)
    request = ResyncRequest(actor="Practitioner/pr-1", start=DAY0, end=DAY0 + timedelta(days=1))
    result = run_in_process(ctx, request)
    assert result.status == "ok" and result.chunks == 1
    left = cached(engine)
    assert not any(
        s.schedule_id == "sch-1" and s.start < DAY0 + timedelta(days=1) for s in left.values()
    )
    assert any(s.schedule_id == "sch-0" for s in left.values())


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
