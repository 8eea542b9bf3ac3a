"""The ops console over HTTP (TestClient) on both cache backends: login over a signed
session cookie, CSRF refusal, redirects of anonymous visitors, the security headers,
and every page rendering what the cache holds."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.api.main import create_app
from app.cache import claims as claims_repo
from app.cache import runs as runs_repo
from app.cache import samples as samples_repo
from app.cache.db import transaction
from app.console.session import SESSION_COOKIE
from app.settings import Settings
from app.sync.context import SyncContext
from app.sync.coordination import LocalCoordinator
from app.sync.messages import ResyncRequest
from app.sync.samples import record_sample
from app.sync.windows import utcnow
from tests.factories import OPEN_RULES, slot
from tests.integration.api.conftest import record_full_load, seed
from tests.sync_support import RecordingDispatcher

ADMIN_KEY = "admin-key-0123456789abcdefgh"
READER_KEY = "reader-key-0123456789abcdef"
KEYS = {ADMIN_KEY: ["slotsync/admin"], READER_KEY: ["system/Appointment.read"]}
PAGES = ["/console", "/console/schedules", "/console/runs", "/console/rules", "/console/bookings"]


def console_settings(engine: Engine, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": engine.url.render_as_string(hide_password=False),
        "data_dir": tmp_path,
        "api_keys": KEYS,
        "rules_path": OPEN_RULES,
        "find_warm_up": False,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(console_settings(engine, tmp_path))
    with TestClient(app, base_url="http://testserver") as test_client:
        app.state.dispatcher = RecordingDispatcher()
        yield test_client


def login_token(client: TestClient) -> str:
    page = client.get("/console/login")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def csrf_of(page_html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page_html)
    assert found, page_html
    return found.group(1)


def log_in(client: TestClient, key: str = ADMIN_KEY) -> str:
    """Log in; returns the session's CSRF token, read from a page as a browser would."""
    token = login_token(client)
    answer = client.post(
        "/console/login", data={"credential": key, "csrf": token}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/console"
    return csrf_of(client.get("/console").text)


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_the_login_form(client: TestClient, path: str) -> None:
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"


def test_the_session_cookie_is_httponly_samesite_and_scoped(client: TestClient) -> None:
    token = login_token(client)
    answer = client.post(
        "/console/login", data={"credential": ADMIN_KEY, "csrf": token}, follow_redirects=False
    )
    cookie = next(
        v for k, v in answer.headers.multi_items()
        if k == "set-cookie" and v.startswith(SESSION_COOKIE + "=")
    )  # fmt: skip
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/console" in attributes
    assert "secure" not in attributes  # plain HTTP here; see the TLS test


def test_the_session_cookie_is_secure_over_tls(engine: Engine, tmp_path: Path) -> None:
    app = create_app(console_settings(engine, tmp_path))
    with TestClient(app, base_url="https://testserver") as client:
        token = login_token(client)
        answer = client.post(
            "/console/login", data={"credential": ADMIN_KEY, "csrf": token},
            follow_redirects=False,
        )  # fmt: skip
    cookies = [v for k, v in answer.headers.multi_items() if k == "set-cookie"]
    session_cookie = next(c for c in cookies if c.startswith(SESSION_COOKIE + "="))
    assert "secure" in {part.strip().lower() for part in session_cookie.split(";")}


def test_wrong_keys_and_keys_without_the_admin_scope_do_not_log_in(client: TestClient) -> None:
    for key, status in (("not-a-key", 401), (READER_KEY, 403)):
        token = login_token(client)
        answer = client.post(
            "/console/login", data={"credential": key, "csrf": token}, follow_redirects=False
        )
        assert answer.status_code == status
        assert SESSION_COOKIE not in answer.cookies
        assert client.get("/console", follow_redirects=False).status_code == 303


def test_the_login_form_needs_its_csrf_token(client: TestClient) -> None:
    login_token(client)
    answer = client.post(
        "/console/login", data={"credential": ADMIN_KEY, "csrf": "forged"}, follow_redirects=False
    )
    assert answer.status_code == 403
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_a_session_ends_when_its_key_no_longer_holds_the_admin_scope(
    engine: Engine, tmp_path: Path
) -> None:
    first = create_app(console_settings(engine, tmp_path))
    with TestClient(first) as client:
        log_in(client)
        cookie = client.cookies.get(SESSION_COOKIE)
    # the same secrets, the key now without the admin scope (a restart with new settings)
    demoted = create_app(console_settings(engine, tmp_path, api_keys={ADMIN_KEY: ["x/y"]}))
    with TestClient(demoted) as client:
        client.cookies.set(SESSION_COOKIE, cookie or "", path="/console")
        assert client.get("/console", follow_redirects=False).status_code == 303
        assert client.get("/console/login", follow_redirects=False).status_code == 200
    again = create_app(console_settings(engine, tmp_path))
    with TestClient(again) as client:  # the cookie itself was good
        client.cookies.set(SESSION_COOKIE, cookie or "", path="/console")
        assert client.get("/console", follow_redirects=False).status_code == 200


def test_a_forged_session_cookie_is_anonymous(client: TestClient) -> None:
    client.cookies.set(SESSION_COOKIE, "eyJzdWIiOiJtZSJ9.forged.sig", path="/console")
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_posts_without_the_csrf_token_are_refused_and_do_nothing(client: TestClient) -> None:
    log_in(client)
    dispatcher = client.app.state.dispatcher  # type: ignore[attr-defined]
    for path, data in (
        ("/console/schedules/sch-0/resync", {}),
        ("/console/schedules/sch-0/resync", {"csrf": "wrong"}),
        ("/console/runs/resync-all", {"confirm": "yes"}),
        ("/console/logout", {"csrf": "wrong"}),
    ):
        answer = client.post(path, data=data, follow_redirects=False)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.headers["x-frame-options"] == "DENY"
    assert dispatcher.calls == []
    assert client.get("/console", follow_redirects=False).status_code == 200  # still logged in


def test_a_logged_in_operator_skips_the_login_form(client: TestClient) -> None:
    log_in(client)
    answer = client.get("/console/login", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/console"


def test_logout_ends_the_session(client: TestClient) -> None:
    csrf = log_in(client)
    answer = client.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/login"
    assert client.get("/console", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("path", [*PAGES, "/console/login", "/console/static/console.css"])
def test_console_responses_carry_the_security_headers(client: TestClient, path: str) -> None:
    if path != "/console/login":
        log_in(client)
    answer = client.get(path)
    assert answer.status_code == 200
    csp = answer.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_pages_use_no_inline_script_or_style_and_no_other_origin(client: TestClient) -> None:
    log_in(client)
    for path in PAGES:
        html = client.get(path).text
        assert "<script>" not in html and " style=" not in html and "<style" not in html
        assert not re.search(r'(src|href)="(https?:)?//', html), path


def test_the_overview_shows_state_load_age_and_problems(client: TestClient, engine: Engine) -> None:
    log_in(client)
    empty = client.get("/console").text
    assert 'id="health">down<' in empty
    assert "nothing cached yet" in empty
    assert "not sampled yet" in empty
    now = utcnow()
    seed(engine, confirmed_at=now)
    record_full_load(engine, finished_at=now - timedelta(hours=2))
    page = client.get("/console").text
    assert 'id="health">ok<' in page
    assert re.search(r'id="load-age">2 h ago<', page)
    with transaction(engine) as session:
        running = runs_repo.start_run(
            session, kind="resync", scope="sch-1", window=None, started_at=now
        )
    assert f"run {running}</a> (resync, sch-1)" in client.get("/console").text


def test_the_overview_charts_the_recorded_samples(client: TestClient, engine: Engine) -> None:
    log_in(client)
    now = utcnow()
    with transaction(engine) as session:
        for n in range(6):
            samples_repo.record(
                session,
                samples_repo.Sample(
                    sampled_at=now - timedelta(minutes=5 * (6 - n)),
                    slots_cached=1000 + n,
                    schedules=2,
                    max_lag_seconds=30.0 * n,
                    stale_schedules=0,
                ),
            )
        samples_repo.record(  # older than the chart's 24 h: left out
            session,
            samples_repo.Sample(now - timedelta(hours=30), 5, 1, 1.0, 0),
        )
    page = client.get("/console").text
    assert re.search(r'id="slots-cached">1005<', page)  # the latest sample
    assert page.count('<polyline class="series"') == 2
    assert "Slots cached: <strong>1005</strong>" in page
    assert "(6 samples)" in page


def test_a_sample_records_the_cache_size_and_lag(engine: Engine, tmp_path: Path) -> None:
    now = utcnow()
    seed(engine, confirmed_at=now - timedelta(minutes=10))
    settings = console_settings(engine, tmp_path)
    ctx = SyncContext(
        engine=engine, client=None, coord=LocalCoordinator(), settings=settings,  # type: ignore[arg-type]
        clock=lambda: now,
    )  # fmt: skip
    with transaction(engine) as session:
        samples_repo.record(session, samples_repo.Sample(now - timedelta(hours=49), 1, 1, 1.0, 0))
    sample = record_sample(ctx)
    assert (sample.slots_cached, sample.schedules) == (6, 2)
    assert sample.max_lag_seconds == pytest.approx(600, abs=1)
    with transaction(engine) as session:
        kept = samples_repo.since(session, now - timedelta(days=7))
    assert kept == [sample]  # the 49 h old one is pruned


def test_schedules_are_searchable_and_paged(client: TestClient, engine: Engine) -> None:
    log_in(client)
    seed(engine, confirmed_at=utcnow(), schedules=60, per=1)
    first = client.get("/console/schedules").text
    assert "(60)" in first and "page 1 of 2" in first
    assert first.count("data-schedule=") == 50
    second = client.get("/console/schedules?page=2").text
    assert second.count("data-schedule=") == 10
    found = client.get("/console/schedules", params={"q": "Practitioner/pr-42"}).text
    assert re.findall(r'data-schedule="([^"]+)"', found) == ["sch-42"]
    none = client.get("/console/schedules", params={"q": "<script>x</script>%_"}).text
    assert "<script>x</script>" not in none and "&lt;script&gt;" in none  # escaped
    assert "data-schedule=" not in none


def test_a_schedule_resync_goes_to_the_dispatcher(client: TestClient, engine: Engine) -> None:
    csrf = log_in(client)
    seed(engine, confirmed_at=utcnow())
    answer = client.post(
        "/console/schedules/sch-1/resync", data={"csrf": csrf}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/runs?token=")
    dispatcher = client.app.state.dispatcher  # type: ignore[attr-defined]
    assert dispatcher.calls == [
        ("resync", ResyncRequest(kind="resync", schedule_ids=("sch-1",), actor=None, start=None,
                                 end=None))
    ]  # fmt: skip
    pending = client.get(answer.headers["location"]).text
    assert "data-pending-run" in pending


def test_resync_all_needs_confirmation(client: TestClient) -> None:
    csrf = log_in(client)
    dispatcher = client.app.state.dispatcher  # type: ignore[attr-defined]
    refused = client.post("/console/runs/resync-all", data={"csrf": csrf}, follow_redirects=False)
    assert refused.status_code == 400
    assert dispatcher.calls == []
    done = client.post(
        "/console/runs/resync-all", data={"csrf": csrf, "confirm": "yes"}, follow_redirects=False
    )
    assert done.status_code == 303
    assert dispatcher.calls[0][1].kind == "initial-load"


def test_runs_show_progress_and_failures(client: TestClient, engine: Engine) -> None:
    log_in(client)
    now = utcnow()
    record_full_load(engine, finished_at=now - timedelta(hours=1), status="failed")
    with transaction(engine) as session:
        running = runs_repo.start_run(
            session, kind="resync", scope="sch-0", window=None, started_at=now, token="tok-1"
        )
        run = runs_repo.get_run(session, running)
        assert run is not None
        run.chunks_total, run.chunks_done = 4, 1
    page = client.get("/console/runs?token=tok-1").text
    assert "EhrTimeout: slow" in page
    assert f'data-run="{running}"' in page and "data-live" in page and 'class="highlight"' in page
    progress = client.get(f"/console/runs/{running}/progress").json()
    assert progress["status"] == run.status
    assert (progress["chunks_done"], progress["chunks_total"]) == (1, 4)
    assert client.get("/console/runs/99999/progress").status_code == 404


def test_rules_page_and_upload_check(client: TestClient) -> None:
    csrf = log_in(client)
    page = client.get("/console/rules").text
    assert "is valid and in force" in page
    good = client.post(
        "/console/rules/check",
        data={"csrf": csrf},
        files={"file": ("rules.yaml", OPEN_RULES.read_bytes(), "application/yaml")},
    )
    assert good.status_code == 200
    assert "rules.yaml is valid" in good.text and "visit type" in good.text
    bad = client.post(
        "/console/rules/check",
        data={"csrf": csrf},
        files={"file": ("broken.yaml", b"version: 1\nvisit_types: <oops>\n", "application/yaml")},
    )
    assert "broken.yaml is not valid" in bad.text
    assert 'id="check-error"' in bad.text
    assert "<oops>" not in bad.text  # escaped, whatever the message quotes
    forged = client.post(
        "/console/rules/check",
        data={"csrf": "nope"},
        files={"file": ("rules.yaml", b"x", "application/yaml")},
    )
    assert forged.status_code == 403


def test_the_rules_upload_previews_what_the_file_gains_and_loses(
    client: TestClient, engine: Engine
) -> None:
    seed(engine, confirmed_at=utcnow(), schedules=2, per=3)  # six 15-minute slots on T0
    csrf = log_in(client)
    same = client.post(
        "/console/rules/check",
        data={"csrf": csrf},
        files={"file": ("same.yaml", OPEN_RULES.read_bytes(), "application/yaml")},
    )
    assert 'id="preview-same"' in same.text
    text = (
        OPEN_RULES.read_text()
        .replace("min_lead_minutes: 0", "min_lead_minutes: 525600")  # a year ahead
        .replace("name: Test organisation", 'name: "<script>alert(1)</script>"')
    )
    answer = client.post(
        "/console/rules/check",
        data={"csrf": csrf},
        files={"file": ("later.yaml", text.encode(), "application/yaml")},
    )
    assert answer.status_code == 200
    page = answer.text
    assert 'id="preview"' in page and 'id="preview-changes"' in page
    assert "defaults.min_lead_minutes" in page and "525600" in page
    assert "any patient: 6 offers &rarr; 0" in page and "6 lost" in page
    examples = page.split('class="preview-examples"', 1)[1].split("</table>", 1)[0]
    assert examples.count("lead-time") == 5  # the first five of six, each explained
    assert "defaults.min_lead_minutes: 0 -&gt; 525600" in examples
    assert "sch-0" in examples and "Patient" not in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_bookings_show_live_claims_by_kind(client: TestClient, engine: Engine) -> None:
    log_in(client)
    now = utcnow()
    seed(engine, confirmed_at=now)
    with transaction(engine) as session:
        claims_repo.insert_claims(
            session, [slot(0, schedule="sch-0")], claim_id="c-1", kind="held",
            expires_at=now + timedelta(minutes=10), now=now,
        )  # fmt: skip
    page = client.get("/console/bookings").text
    assert re.search(r'id="claims-held">1<', page)
    assert re.search(r'id="claims-booked">0<', page)
    assert "sch-0-s0" in page
    assert "Holds (pending or held): <strong>no data</strong>" in page
    settings = console_settings(engine, Path("."))
    ctx = SyncContext(
        engine=engine, client=None, coord=LocalCoordinator(), settings=settings,  # type: ignore[arg-type]
        clock=lambda: now,
    )  # fmt: skip
    sample = record_sample(ctx)
    assert (sample.claims_held, sample.claims_booked) == (1, 0)
    charted = client.get("/console/bookings").text
    assert "Holds (pending or held): <strong>1</strong>" in charted
    assert "Bookings: <strong>0</strong>" in charted


def test_the_overview_reads_no_slots(client: TestClient, engine: Engine) -> None:
    """Its cost does not grow with the cache: the slot count comes from the samples."""
    from sqlalchemy import event

    log_in(client)
    seed(engine, confirmed_at=utcnow())
    statements: list[str] = []
    app_engine = client.app.state.engine  # type: ignore[attr-defined]

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split()).lower())

    event.listen(app_engine, "before_cursor_execute", record)
    try:
        assert client.get("/console").status_code == 200
    finally:
        event.remove(app_engine, "before_cursor_execute", record)
    assert statements
    assert not [s for s in statements if re.search(r"\b(from|join) slots\b", s)], statements
