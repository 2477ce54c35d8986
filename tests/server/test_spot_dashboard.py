"""The spot dashboard in headless Chromium (Debian's chromium + chromium-driver, driven by
selenium; ./scripts/test installs both): sign in with the account, cause an interruption and
its failover, and the four charts render with data. A screenshot is kept in the test's tmp dir.

Also, without a browser: the page, its script and its stylesheet are served with a policy that
loads nothing from elsewhere, and an unknown file is a 404.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.instancefixtures import fast_server_fixture
from tests.server.spotfixtures import SPOT, deploy, template_of, wait_status
from tests.support import PASSWORD, LocalServer, new_user

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHARTS = ("chart-interruptions", "chart-failovers", "chart-spend", "chart-prices")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
)


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    yield from fast_server_fixture(tmp_path_factory)


def test_the_page_and_its_files_are_served_with_a_strict_policy(fast: LocalServer) -> None:
    for path, kind in [
        ("/dashboard", "text/html"),
        ("/dashboard/dashboard.js", "text/javascript"),
        ("/dashboard/dashboard.css", "text/css"),
    ]:
        response = httpx.get(fast.url + path, timeout=10)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(kind)
        assert "default-src 'none'" in response.headers["content-security-policy"]
    page = httpx.get(fast.url + "/dashboard", timeout=10).text
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere
    missing = httpx.get(fast.url + "/dashboard/secrets.json", timeout=10)
    assert missing.status_code == 404


def _browser(tmp_path: Path) -> Any:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed "
            "(./scripts/test installs them when run as root)"
        )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "driver.log"))
    return webdriver.Chrome(options=options, service=service)


@pytest.mark.slow
def test_dashboard_charts_render_after_an_interruption(
    fast: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium must not fetch a driver or a browser
    user = new_user(fast.url)
    with user.http() as http:
        template = template_of(fast, http, {"a.txt": "1"})
        deployed = deploy(http, template["template_id"], sync_interval_seconds=0)
        wait_status(http, deployed["instance_id"], lambda b: b["instance_status"] == "running")
        assert http.post(f"{SPOT}/interrupt/{deployed['instance_id']}").status_code == 200
        fast.reconcile()
        wait_status(http, deployed["instance_id"], lambda b: b["last_recover_seconds"] is not None)
    driver = _browser(tmp_path)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        driver.get(fast.url + "/dashboard")
        driver.find_element(By.ID, "email").send_keys(user.email)
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return document.body.dataset.loaded") == "true"
        )
        counts = {
            chart: driver.execute_script(
                "const svg = document.getElementById(arguments[0]);"
                "return [svg.dataset.points, svg.querySelectorAll('.point').length];",
                chart,
            )
            for chart in CHARTS
        }
        shot = tmp_path / "dashboard.png"
        driver.save_screenshot(str(shot))
        totals = driver.find_element(By.ID, "totals").text
        token = driver.execute_script("return sessionStorage.getItem('dumont-dashboard-token')")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    finally:
        driver.quit()
    for chart, (points, drawn) in counts.items():
        assert int(points) > 0 and drawn > 0, (chart, points, drawn)
    assert counts["chart-interruptions"] == ["1", 1]
    assert counts["chart-failovers"] == ["1", 1]
    assert "Interruptions\n1" in totals and "Failovers\n1" in totals
    assert token and shot.stat().st_size > 10_000
    assert errors == []
