"""``load_window`` (every schedule x a window) against a scripted EHR, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from msgspec import structs
from sqlalchemy.orm import Session

from app.cache import repository as repo
from app.ehr.client import EhrClient
from app.ehr.errors import EhrUnavailable
from app.ehr.transport import RetryPolicy
from app.sync.load import load_window
from tests.factories import T0, bundle, practitioner_json, schedule_json, slot, slot_json

WINDOW = (T0 - timedelta(hours=1), T0 + timedelta(days=1))


class ScriptedEhr:
    """Serves $prefetch from a list of slots in pages of ``page`` and can fail on a page."""

    def __init__(self, slots, page=2, fail_on_page=None):
        self.slots = slots
        self.page = page
        self.fail_on_page = fail_on_page
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        n = int(request.url.params.get("page", "0"))
        if self.fail_on_page is not None and n == self.fail_on_page:
            return httpx.Response(503)
        chunk = self.slots[n * self.page : (n + 1) * self.page]
        resources = [slot_json(s) for s in chunk]
        resources += [
            schedule_json(sid, [f"Practitioner/{sid}"]) for sid in {s.schedule_id for s in chunk}
        ]
        resources += [practitioner_json(sid, f"Dr {sid}") for sid in {s.schedule_id for s in chunk}]
        more = (n + 1) * self.page < len(self.slots)
        next_url = f"http://ehr.test/fhir/Slot/$prefetch?page={n + 1}" if more else None
        return httpx.Response(200, json=bundle(resources, next_url))


def client_for(ehr: ScriptedEhr) -> EhrClient:
    return EhrClient(
        "http://ehr.test/fhir",
        transport=httpx.MockTransport(ehr),
        retry=RetryPolicy(attempts=2, base_delay=0.001),
    )


def cached(engine):
    with Session(engine) as s:
        return repo.cached_slots(s, None, *WINDOW)


def test_window_load_then_replace(engine):
    first = [slot(i) for i in range(5)] + [slot(i, schedule="sch-2") for i in range(3)]
    result = load_window(engine, client_for(ScriptedEhr(first)), *WINDOW)
    assert result.upserted == 8 and result.deleted == 0
    assert cached(engine) == {s.id: s for s in first}
    with Session(engine) as s:
        assert repo.actors_by_ref(s)["Practitioner/sch-1"].display == "Dr sch-1"
        assert set(repo.schedules_by_id(s)) == {"sch-1", "sch-2"}

    # second answer: one vanished, one changed time, one new
    moved = structs.replace(first[1], start=first[1].start + timedelta(minutes=5))
    second = [first[0], moved, *first[2:4], *first[5:], slot(9)]
    result = load_window(engine, client_for(ScriptedEhr(second)), *WINDOW)
    assert cached(engine) == {s.id: s for s in second}
    assert result.deleted == 1 and result.upserted == 2 and result.unchanged == 6


def test_failed_page_leaves_cache_untouched(engine):
    first = [slot(i) for i in range(6)]
    load_window(engine, client_for(ScriptedEhr(first)), *WINDOW)
    broken = ScriptedEhr([slot(i) for i in range(2)], page=1, fail_on_page=1)
    with pytest.raises(EhrUnavailable):
        load_window(engine, client_for(broken), *WINDOW)
    assert cached(engine) == {s.id: s for s in first}
    assert broken.calls == 3  # page 0, then page 1 tried twice
