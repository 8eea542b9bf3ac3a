"""CLI parsing, the child-process helper, and the sandbox's serving speed."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest

from sandbox_ehr.cli import build_parser, config_from_args, main
from sandbox_ehr.process import start_sandbox


def test_parser_defaults_match_the_documented_interface() -> None:
    cfg = config_from_args(build_parser().parse_args([]))
    assert (cfg.host, cfg.port, cfg.fhir_version, cfg.size, cfg.seed) == (
        "127.0.0.1",
        8100,
        "stu3",
        5000,
        42,
    )
    assert (cfg.horizon_days, cfg.page_size, cfg.hold_seconds) == (90, 500, 300)
    assert cfg.start_date == datetime.now(UTC).date() and cfg.callback_secret is None
    cfg = config_from_args(
        build_parser().parse_args(
            ["--fhir-version", "r4", "--start-date", "2026-11-26", "--callback-secret", "x"]
        )
    )
    assert (
        cfg.fhir_version == "r4"
        and str(cfg.start_date) == "2026-11-26"
        and cfg.callback_secret == "x"
    )


@pytest.mark.parametrize(
    "argv", [["--fhir-version", "r5"], ["--size", "0"], ["--start-date", "soon"]]
)
def test_bad_arguments_exit_with_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_module_entry_point_prints_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sandbox_ehr", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "--fhir-version" in out.stdout and "--callback-secret" in out.stdout


def test_start_sandbox_serves_and_stops_idempotently() -> None:
    sp = start_sandbox(fhir_version="r4", size=400, start_date="2026-11-26")
    try:
        assert sp.base_url.startswith("http://127.0.0.1:") and sp.control_url.endswith("/_sandbox")
        assert httpx.get(f"{sp.control_url}/config").json()["fhirVersion"] == "r4"
    finally:
        sp.stop()
        sp.stop()
    assert not sp.alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{sp.base_url}/metadata")


def test_prefetch_pages_a_large_window_in_full_pages_to_the_end() -> None:
    """100k slots of a 300k-slot sandbox in 1000-slot pages, following next links: every
    page full, no slot twice. (How fast the sandbox serves pages is measured by
    ``python -m benchmarks load``, not asserted here.)"""
    next_link = re.compile(rb'"relation":"next","url":"([^"]+)"')
    slot_id = re.compile(rb'"resourceType":"Slot","id":"([^"]+)"')
    seen: set[bytes] = set()
    pages = 0
    with (
        start_sandbox(size=300_000, start_date="2026-11-26", page_size=1000) as sp,
        httpx.Client(timeout=30) as c,
    ):
        url: str | None = (
            f"{sp.base_url}/Slot/$prefetch?start=2026-11-26&end=2027-03-01&_count=1000"
        )
        while url and len(seen) < 100_000:
            body = c.get(url).content
            ids = slot_id.findall(body)
            assert len(ids) == 1000, f"page {pages} held {len(ids)} slots"
            assert seen.isdisjoint(ids), f"page {pages} repeats slots"
            seen.update(ids)
            pages += 1
            found = next_link.search(body)
            url = found.group(1).decode() if found else None
    assert (len(seen), pages) == (100_000, 100)


def test_create_app_serves_in_process() -> None:
    import asyncio
    from datetime import date

    from sandbox_ehr.app import SandboxConfig, create_app

    async def scenario() -> tuple[int, int, int]:
        app = create_app(SandboxConfig(size=500, start_date=date(2026, 11, 26), fhir_version="r4"))
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://sandbox"
        ) as c:
            slots = await c.get("/fhir/Slot", params={"_count": 2})
            missing = await c.get("/fhir/Slot/sl-99999999")
            broken = await c.post("/fhir/Appointment", content=b"{not json")
            assert slots.json()["link"][1]["url"].startswith("http://sandbox/fhir/Slot?_cursor=")
            return slots.status_code, missing.status_code, broken.status_code

    assert asyncio.run(scenario()) == (200, 404, 400)
