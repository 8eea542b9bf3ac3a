"""The ops console in a real browser (headless Chromium through selenium) against a
started ``slotsync demo``: log in, see the demo's schedules, resync one and watch its
run finish, hold a slot through the API and see it counted on the Bookings page,
upload a rules file with an error and see the error, log out, and be
turned away as an anonymous visitor. Screenshots of each step are kept in
``artifacts/console/`` (git-ignored); the path is printed.

Chromium comes from Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run``
installs them); where they are missing these tests are skipped, loudly.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from benchmarks.processes import free_port, process_env, slotsync, spawn
from tests.paths import REPO

pytestmark = pytest.mark.timeout(300)

KEY = "slotsync-demo-key"
ARTIFACTS = REPO / "artifacts" / "console"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
NO_BROWSER = (
    "NO BROWSER: the ops console's browser tests did not run, because Debian's chromium"
    " and chromium-driver are not installed (apt-get install -y chromium chromium-driver;"
    " .ci/run installs them)"
)
BROKEN_RULES = """\
version: 1
organization:
  name: Broken clinic
  timezone: Not/AZone
visit_types: []
"""

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a dev dependency")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``slotsync demo`` on spare ports; its base URL once ``$find`` answers."""
    directory = tmp_path_factory.mktemp("console-demo")
    port, sandbox_port = free_port(), free_port()
    env = process_env({"SLOTSYNC_DATA_DIR": str(directory / "data")})
    command = slotsync("demo", "--port", str(port), "--sandbox-port", str(sandbox_port))
    process = spawn("demo", command, env=env, log=directory / "demo.log")
    try:
        process.wait_for_http(
            f"http://127.0.0.1:{port}/fhir/metadata", timeout=120, headers={"X-API-Key": KEY}
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        print(f"\n{'!' * 20} {NO_BROWSER} {'!' * 20}")
        pytest.skip(NO_BROWSER)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--disable-gpu"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {ARTIFACTS}")
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait(driver: WebDriver, seconds: float = 30) -> WebDriverWait:
    return WebDriverWait(driver, seconds, poll_frequency=0.25)


def log_in(driver: WebDriver, base: str) -> None:
    driver.get(f"{base}/console/login")
    driver.find_element(By.ID, "credential").send_keys(KEY)
    driver.find_element(By.ID, "login").click()
    wait(driver).until(lambda d: d.current_url == f"{base}/console")


def _hold_one(base: str) -> str:
    """``$hold`` the first offer of the demo's next week through its API; the hold's
    Appointment id."""
    today = datetime.now(UTC).date()
    found = httpx.get(
        f"{base}/fhir/Appointment/$find",
        params={"start": str(today + timedelta(days=1)), "end": str(today + timedelta(days=8)),
                "_count": "5"},
        headers={"X-API-Key": KEY}, timeout=60,
    )  # fmt: skip
    assert found.status_code == 200, found.text
    offer = next(e["resource"] for e in found.json()["entry"] if e["search"]["mode"] == "match")
    token = offer["identifier"][0]["value"]
    body = {"resourceType": "Parameters", "parameter": [{"name": "appt-id", "valueUri": token}]}
    held = httpx.post(
        f"{base}/fhir/Appointment/$hold", json=body, headers={"X-API-Key": KEY}, timeout=60
    )
    assert held.status_code == 201, held.text
    return str(held.json()["entry"][0]["resource"]["id"])


def test_the_console_in_a_browser(demo: str, browser: WebDriver, tmp_path: Path) -> None:
    # anonymous: turned away to the login form
    browser.get(f"{demo}/console/schedules")
    assert browser.current_url == f"{demo}/console/login"
    assert browser.find_element(By.ID, "credential")
    shot(browser, "01-login")

    # log in; the overview says how the demo's cache is doing
    log_in(browser, demo)
    health = browser.find_element(By.ID, "health").text
    assert health in {"ok", "degraded", "down"}
    wait(browser, 90).until(
        lambda d: d.refresh() or d.find_element(By.ID, "health").text == "ok"
    )  # the demo's first load completes
    wait(browser, 90).until(
        lambda d: d.refresh() or d.find_element(By.ID, "slots-cached").text not in {"-", "0"}
    )  # and a sample of the loaded cache is recorded
    # a line needs two samples (one a minute): the first may predate the load or not
    wait(browser, 150).until(
        lambda d: d.refresh() or d.find_elements(By.CSS_SELECTOR, "svg polyline.series")
    )
    shot(browser, "02-overview")

    # the demo's schedules
    browser.get(f"{demo}/console/schedules")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-schedule]")
    assert rows, browser.page_source
    schedule = rows[0].get_attribute("data-schedule")
    shot(browser, "03-schedules")

    # resync one; its run goes to done while the page watches
    rows[0].find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser).until(lambda d: "/console/runs?token=" in d.current_url)
    token = browser.current_url.rpartition("token=")[2]
    status = f'tr[data-token="{token}"] [data-field=status]'
    wait(browser, 120).until(
        lambda d: any(e.text == "ok" for e in d.find_elements(By.CSS_SELECTOR, status))
    )
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-token="{token}"]')
    assert schedule in row.text
    shot(browser, "04-run-done")

    # on a phone: the schedules table fits the screen's width
    browser.set_window_size(390, 844)
    browser.get(f"{demo}/console/schedules")
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth"
    )
    assert overflow <= 0
    shot(browser, "04b-schedules-phone")
    browser.set_window_size(1280, 900)

    # a hold through the demo's API is counted, and shown beside the live claims
    held = _hold_one(demo)
    browser.get(f"{demo}/console/bookings")
    assert int(browser.find_element(By.ID, "count-hold").text) >= 1
    for kind in ("book", "cancel", "expire"):
        assert browser.find_element(By.ID, f"count-{kind}").text.isdigit()
    assert "Holds per hour" in browser.page_source
    assert browser.find_elements(By.CSS_SELECTOR, "#booking-counts ~ .charts svg polyline.series")
    assert held in browser.find_element(By.ID, "claims").text  # the hold's appointment id
    shot(browser, "04c-bookings")

    # a rules file with an error: the check says what is wrong
    broken = tmp_path / "broken-rules.yaml"
    broken.write_text(BROKEN_RULES)
    browser.get(f"{demo}/console/rules")
    browser.find_element(By.ID, "rules-file").send_keys(str(broken))
    browser.find_element(By.ID, "rules-check").click()
    error = wait(browser).until(lambda d: d.find_element(By.ID, "check-error"))
    assert "broken-rules.yaml is not valid" in browser.page_source
    assert error.text.strip()
    shot(browser, "05-rules-error")

    # log out; the console is closed again
    browser.find_element(By.ID, "logout").click()
    wait(browser).until(lambda d: d.current_url == f"{demo}/console/login")
    browser.get(f"{demo}/console")
    assert browser.current_url == f"{demo}/console/login"
    shot(browser, "06-logged-out")
