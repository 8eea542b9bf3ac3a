"""$find answers served again from the answer memo, through the app on both backends:
never an answer the inputs of the moment would not give."""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.api.main import create_app
from app.cache import claims
from app.cache import repository as repo
from app.settings import Settings
from app.sync.load import load_window
from tests.booking_support import claim_slots
from tests.integration.test_find_api import (
    AUTH,
    BASE,
    OFFICE,
    RULES,
    WINDOW,
    find,
    iso,
    post_find,
    slot,
)
from tests.integration.test_load_window import ScriptedEhr, client_for

CONSULT = RULES["visit_types"][1]["code"]
LOAD_WINDOW = (BASE - timedelta(hours=1), BASE + timedelta(days=1))


def _app(engine, tmp_path, **settings):
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(RULES))
    return create_app(
        Settings(
            database_url=engine.url.render_as_string(hide_password=False),
            rules_path=rules_path,
            **settings,
        )
    )


@pytest.fixture
def loaded(engine, tmp_path):
    slots = [slot(i) for i in range(6)] + [slot(i, "sch-2") for i in (0, 1, 3)]
    load_window(engine, client_for(ScriptedEhr(slots)), *LOAD_WINDOW)
    with TestClient(_app(engine, tmp_path), headers=AUTH) as client:
        yield client, slots


def _offered(response) -> set[str]:
    return {
        ref["reference"].removeprefix("Slot/")
        for e in response.json()["entry"]
        if e["resource"]["resourceType"] == "Appointment"
        for ref in e["resource"]["slot"]
    }


def test_the_same_request_is_served_again_byte_for_byte(loaded):
    client, slots = loaded
    memo = client.app.state.answers
    first = find(client, **WINDOW, **{"visit-type": OFFICE})
    hits = memo.hits
    again = find(client, **WINDOW, **{"visit-type": OFFICE})
    assert memo.hits == hits + 1
    assert again.content == first.content
    assert again.headers["content-type"] == first.headers["content-type"]
    assert _offered(again) == {s.id for s in slots}


def _raw(client, accept_encoding: str | None, **params):
    """$find as sent: the body's bytes before any decoding, and the headers."""
    request = client.build_request("GET", "/fhir/Appointment/$find", params=params)
    if accept_encoding is None:
        del request.headers["accept-encoding"]
    else:
        request.headers["accept-encoding"] = accept_encoding
    response = client.send(request, stream=True)
    try:
        assert response.status_code == 200
        return b"".join(response.iter_raw()), response.headers
    finally:
        response.close()


@pytest.mark.parametrize("served", ["composed", "memo"])
def test_a_client_taking_gzip_gets_the_kept_bytes_and_others_the_plain_body(loaded, served):
    """Composed or served again, an answer goes out gzip-coded to a client that takes
    gzip (as it is kept), and plain to one that does not: the same JSON either way."""
    client, _ = loaded
    params = {**WINDOW, "visit-type": OFFICE}
    if served == "memo":
        find(client, **params)
    hits = client.app.state.answers.hits
    packed, headers = _raw(client, "gzip", **params)
    assert (client.app.state.answers.hits - hits == 1) == (served == "memo")
    assert headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
    assert packed[:2] == b"\x1f\x8b"  # gzip's magic number
    assert int(headers["content-length"]) == len(packed)
    body = gzip.decompress(packed)
    assert json.loads(body)["resourceType"] == "Bundle"
    for refused in (None, "identity", "gzip;q=0, deflate", "br"):
        plain, headers = _raw(client, refused, **params)
        assert "content-encoding" not in headers and headers["vary"] == "Accept-Encoding"
        assert plain == body
    for taken in ("deflate, gzip;q=0.5", "*", "x-gzip", "GZIP"):
        got, headers = _raw(client, taken, **params)
        assert headers["content-encoding"] == "gzip" and gzip.decompress(got) == body


def test_a_claim_hides_its_slot_from_the_next_request_and_its_release_shows_it(loaded, engine):
    client, slots = loaded
    params = {**WINDOW, "visit-type": OFFICE}
    assert slots[2].id in _offered(find(client, **params))
    assert slots[2].id in _offered(find(client, **params))  # now held in the memo
    claim_slots(engine, [slots[2]], "held-1")
    assert slots[2].id not in _offered(find(client, **params))
    with Session(engine) as session, session.begin():
        claims.release(session, "held-1")
    assert slots[2].id in _offered(find(client, **params))


def test_a_sync_that_takes_a_slot_away_reaches_the_next_request(loaded, engine):
    client, slots = loaded
    params = {**WINDOW, "visit-type": OFFICE}
    find(client, **params)
    assert slots[0].id in _offered(find(client, **params))
    load_window(engine, client_for(ScriptedEhr(slots[1:])), *LOAD_WINDOW)
    assert slots[0].id not in _offered(find(client, **params))


def test_posts_to_one_url_with_other_parameters_get_their_own_answers(loaded):
    client, _ = loaded
    office = {
        "name": "visit-type",
        "valueCoding": {"system": OFFICE.split("|")[0], "code": "office-visit"},
    }
    consult = {
        "name": "visit-type",
        "valueCoding": {"system": CONSULT.split("|")[0], "code": "consult"},
    }
    for _ in range(2):
        a = post_find(client, office).json()
        b = post_find(client, consult).json()
        assert a["total"] != b["total"]
        assert {e["resource"]["minutesDuration"] for e in a["entry"][: a["total"]]} == {15}
        assert {e["resource"]["minutesDuration"] for e in b["entry"][: b["total"]]} == {30}


def test_answers_are_those_of_a_process_keeping_none(loaded, engine, tmp_path):
    client, _ = loaded
    requests = [
        {**WINDOW, "visit-type": OFFICE},
        {**WINDOW, "_count": "2"},
        {**WINDOW, "visit-type": CONSULT, "_include": "Appointment:actor"},
    ]
    with TestClient(_app(engine, tmp_path, find_answer_memo_bytes=0), headers=AUTH) as plain:
        assert plain.app.state.answers is None
        for params in requests * 2:
            mine, theirs = find(client, **params), find(plain, **params)
            assert mine.status_code == theirs.status_code == 200
            assert mine.content == theirs.content
    assert client.app.state.answers.hits >= len(requests)


def test_a_sync_confirming_the_schedules_shown_moves_meta_last_updated(loaded, engine):
    client, slots = loaded
    params = {**WINDOW, "visit-type": OFFICE}
    before = find(client, **params).json()["meta"]["lastUpdated"]
    assert find(client, **params).json()["meta"]["lastUpdated"] == before  # from the memo
    time.sleep(1.1)  # meta.lastUpdated is in whole seconds
    load_window(engine, client_for(ScriptedEhr(slots)), *LOAD_WINDOW)  # the same slots
    # the catalog is read again once its TTL (2 s) is over, behind the request that
    # finds it expired: the new sync time shows within the TTL and one read
    deadline = time.monotonic() + 5.0
    while (after := find(client, **params).json()["meta"]["lastUpdated"]) == before:
        assert time.monotonic() < deadline, "the answer kept the old sync time"
        time.sleep(0.1)
    assert after > before


class _Clock:
    """``datetime`` as app.api.fhir_find sees it, with ``now`` set by the test."""

    at: datetime

    @classmethod
    def now(cls, tz=None):
        return cls.at


def _clamped_window(minute: datetime) -> dict[str, str]:
    """The test window from two hours before ``minute``: its start is clamped to the
    next whole minute, so that each answer holds to the end of its minute only."""
    return {**WINDOW, "start": iso(minute - timedelta(hours=2)), "visit-type": OFFICE}


def test_the_next_minutes_answer_is_made_ahead_and_served_after_the_minute(
    loaded, engine, tmp_path, monkeypatch
):
    """A request in a minute's last seconds makes the answer the next minute holds; the
    first request past the minute is served it, as a process keeping none answers."""
    client, _ = loaded
    memo = client.app.state.answers
    monkeypatch.setattr("app.api.fhir_find.datetime", _Clock)
    minute = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    params = _clamped_window(minute)
    _Clock.at = minute - timedelta(seconds=50)
    find(client, **params)  # composed, holds to the end of the minute
    composed, hits = memo.misses, memo.hits
    _Clock.at = minute - timedelta(seconds=5)
    find(client, **params)  # served, and asked to make the next minute's answer
    assert (memo.misses, memo.hits) == (composed, hits + 1)
    _Clock.at = minute + timedelta(seconds=3)
    served = find(client, **params)
    assert (memo.misses, memo.hits) == (composed, hits + 2)  # not composed again
    with TestClient(_app(engine, tmp_path, find_answer_memo_bytes=0), headers=AUTH) as plain:
        assert served.content == find(plain, **params).content


def test_the_next_minutes_answer_is_made_after_the_response_is_sent(loaded, monkeypatch):
    """The request that asks for the next minute's answer gets its own response first:
    the composition runs once the body has gone, not in the request's time."""
    client, _ = loaded
    app = client.app
    monkeypatch.setattr("app.api.fhir_find.datetime", _Clock)
    minute = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    params = _clamped_window(minute)
    _Clock.at = minute - timedelta(seconds=50)
    find(client, **params)  # composed
    events: list[str] = []
    answer = app.state.finder.answer

    def noted(*args, **kwargs):
        events.append("composed")
        return answer(*args, **kwargs)

    monkeypatch.setattr(app.state.finder, "answer", noted)

    async def send(message):
        if message["type"] == "http.response.body" and not message.get("more_body"):
            events.append("sent")

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/fhir/Appointment/$find",
        "raw_path": b"/fhir/Appointment/$find",
        "root_path": "",
        "query_string": urlencode(params).encode(),
        "headers": [(b"host", b"testserver")]
        + [(k.lower().encode(), v.encode()) for k, v in AUTH.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    _Clock.at = minute - timedelta(seconds=5)
    client.portal.call(app, scope, receive, send)  # served, and the next answer made
    assert events == ["sent", "composed"]
    _Clock.at = minute + timedelta(seconds=3)
    misses = app.state.answers.misses
    find(client, **params)
    assert app.state.answers.misses == misses  # served the answer made ahead


def test_answers_warning_of_a_failed_sync_are_served_again(loaded, engine):
    """A failed sync is warned of by every answer searching the schedule until a sync of
    it succeeds: such answers do not depend on the clock, and are kept like others."""
    client, _ = loaded
    memo = client.app.state.answers
    with Session(engine) as session, session.begin():
        repo.record_schedule_error(session, ["sch-1"], "EhrUnavailable: EHR answered 503")
    params = {**WINDOW, "visit-type": OFFICE}
    deadline = time.monotonic() + 5.0  # the catalog's TTL and one read
    while "last sync" not in (first := find(client, **params)).text:
        assert time.monotonic() < deadline, "the failed sync never showed"
        time.sleep(0.1)
    hits = memo.hits
    again = find(client, **params)
    assert again.content == first.content
    assert memo.hits == hits + 1
