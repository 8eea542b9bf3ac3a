"""An API process's start-up warm-up as readiness reports it: the slots first, then the
offers worked out from them, and only then ``warm`` (a benchmark that waited for the
slots alone measured ``$find`` beside a warm-up still working out offers)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import yaml
from fastapi.testclient import TestClient

from app.api.main import create_app
from app.availability.service import warm_offers
from app.settings import Settings
from app.sync.load import load_window
from tests.integration.test_find_api import AUTH, BASE, RULES, slot
from tests.integration.test_load_window import ScriptedEhr, client_for


def _detail(client: TestClient) -> str:
    return client.get("/readyz").json()["checks"]["slot-index"]["detail"]


def _until(client: TestClient, prefix: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while not (detail := _detail(client)).startswith(prefix):
        assert time.monotonic() < deadline, f"still {detail!r}, never {prefix!r}"
        time.sleep(0.02)
    return detail


@pytest.mark.parametrize("offers_fail", [False, True])
def test_readiness_says_warm_only_once_the_offers_are_worked_out(
    engine, tmp_path, monkeypatch, offers_fail
):
    slots = [slot(i) for i in range(6)]
    load_window(
        engine, client_for(ScriptedEhr(slots)), BASE - timedelta(hours=1), BASE + timedelta(days=1)
    )
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text(yaml.safe_dump(RULES))
    released = threading.Event()
    reached = threading.Event()

    def held_warm_offers(*args, **kwargs):
        reached.set()
        assert released.wait(20)
        if offers_fail:
            raise RuntimeError("offers could not be worked out")
        return warm_offers(*args, **kwargs)

    monkeypatch.setattr("app.availability.finder.warm_offers", held_warm_offers)
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False), rules_path=rules_path
    )
    with TestClient(create_app(settings), headers=AUTH) as client:
        assert reached.wait(20), "the offer warm-up never started"
        detail = _until(client, "warming up offers:")
        assert detail == f"warming up offers: {len(slots)} free slots held in this process"
        assert client.get("/readyz").json()["checks"]["slot-index"]["ok"] is True
        released.set()
        # a failed offer warm-up is over too: the first requests work the offers out
        assert _until(client, "warm:") == f"warm: {len(slots)} free slots held in this process"
        memo_state = client.app.state.finder.offer_memo._state
        assert (memo_state is not None) != offers_fail  # warmed offers are in the memo
