"""The dashboard in real headless Chromium against real router, manager and API processes
during a real canary (embedded SQLite store, the demo's MLflow registry).

A viewer logs in (no buttons), opens the rollout page and sees its plots; a deployer logs in
and pauses the rollout with the page's button; a release on the model page leads to its
rollout. Screenshots go to a scratch directory, and also to ``$ROLLOUT_SCREENSHOTS`` when set
(``make screenshots`` sets it to ``docs/img``). Off CI a missing Chromium or chromedriver skips
with the reason; under ``CI=true`` it fails (``make tools`` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import MODEL, DemoHome, wait_until
from contract.sql.engine import open_engine
from rollout.manager import Manager
from rollout.store.looks import LookStore
from rollout.store.tokens import TokenStore
from rollout.tokens import issue
from rollout.up import Supervisor, api_spec, free_port, process_specs

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("ROLLOUT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ROLLOUT_CHROMEDRIVER", "/usr/bin/chromedriver")
SPEC = {
    "strategy": {"canary": {"steps": [{"weight": 30, "min_requests": 100_000}]}},
    "analysis": {
        "gates": [
            {"error_rate": {"max_increase": 0.2}},
            {"latency": {"quantile": 0.5, "max_ratio": 3.0}},
        ]
    },
}


def _browser_or_skip() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if not missing:
        return
    reason = f"{' and '.join(missing)} missing: run `make tools` (deploy/install-tools.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser test needs Chromium under CI: {reason}")
    pytest.skip(reason)


@dataclass
class Stack:
    api_url: str
    router_url: str
    rollout_id: str
    initial_rollout_id: str
    tokens: dict[str, str]


def _predict(client: httpx.Client, router_url: str, home: DemoHome, i: int) -> httpx.Response:
    rows = home.data.serve_X.iloc[i % 50 : i % 50 + 1]
    payload = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
    return client.post(
        f"{router_url}/v1/models/{MODEL}/invocations",
        json=payload,
        headers={"x-rollout-key": f"user-{i}"},
    )


@pytest.fixture
def stack(home: DemoHome, tmp_path: Path) -> Iterator[Stack]:
    _browser_or_skip()
    settings = home.settings
    engine = open_engine(settings.store_url)
    store = TokenStore(engine)
    tokens = {
        role: issue(store, f"{role}-1", [role], None, "1d", "test").token
        for role in ("viewer", "deployer", "admin")
    }
    router_port, api_port = free_port(), free_port()
    api = api_spec("127.0.0.1", api_port)  # as `rollout up` starts it
    supervisor = Supervisor(settings, log_dir=tmp_path / "logs")
    try:
        for spec in [
            *process_specs(settings, router_port=router_port, manager_interval_s=0.2),
            api,
        ]:
            supervisor.start(spec, timeout_s=120)
        api_url, router_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{router_port}"
        admin = {"authorization": f"Bearer {tokens['admin']}"}
        with httpx.Client(timeout=30) as client:
            first = {"model": MODEL, "candidate": home.versions["baseline"], "environment": "prod"}
            initial = client.post(f"{api_url}/v1/rollouts", json=first, headers=admin)
            assert initial.status_code == 201, initial.text
            wait_until(
                lambda: _predict(client, router_url, home, 0).status_code,
                "the router to serve the initial release",
                until=lambda status: status == 200,
                interval_s=0.1,
                ignoring=(httpx.HTTPError,),
            )
            body = {**first, "candidate": home.versions["better"], "spec": SPEC}
            started = client.post(f"{api_url}/v1/rollouts", json=body, headers=admin)
            assert started.status_code == 201, started.text
            rollout_id = started.json()["id"]
            looks = LookStore(engine)
            i = 0

            def traffic() -> int:  # a real canary: requests through the router
                nonlocal i
                for _ in range(40):
                    i += 1
                    _predict(client, router_url, home, i)
                return len(looks.looks(rollout_id))

            wait_until(traffic, "two kept looks of the canary", until=lambda n: n >= 2)
        yield Stack(api_url, router_url, rollout_id, initial.json()["id"], tokens)
    finally:
        supervisor.stop()
        engine.dispose()
        for log in sorted((tmp_path / "logs").glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-3000:]}")


@pytest.fixture
def browser() -> Iterator[object]:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait_text(driver: object, how: str, what: str, text: str) -> None:
    """Wait for the element to show ``text``: a click returns before the next page loads."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(
        expected_conditions.text_to_be_present_in_element((how, what), text)
    )


def _login(driver: object, api_url: str, token: str, identity: str) -> None:
    """Log in and wait for the overview to name ``identity``."""
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()  # type: ignore[attr-defined]
    driver.get(f"{api_url}/ui/login")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "token").send_keys(token)  # type: ignore[attr-defined]
    driver.find_element(By.ID, "login").click()  # type: ignore[attr-defined]
    _wait_text(driver, By.ID, "who", identity)


def _shoot(driver: object, scratch: Path, name: str, height: int) -> None:
    driver.set_window_size(1280, height)  # type: ignore[attr-defined]
    path = scratch / f"{name}.png"
    assert driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("ROLLOUT_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / f"dashboard-{name}.png")


def test_viewer_deployer_and_release_links_in_a_real_browser(
    stack: Stack, browser: object, tmp_path: Path, home: DemoHome
) -> None:
    from selenium.webdriver.common.by import By

    driver: object = browser
    find = driver.find_element  # type: ignore[attr-defined]
    finds = driver.find_elements  # type: ignore[attr-defined]
    # a viewer: the overview, then the rollout page with its plots and no buttons
    _login(driver, stack.api_url, stack.tokens["viewer"], "viewer-1")
    assert find(By.ID, "who").text == "viewer-1 (viewer)"
    row = find(By.XPATH, "//table[@id='overview']//tr[td[text()='prod']]")
    assert "progressing" in row.text and "30%" in row.text
    _shoot(driver, tmp_path, "overview", 700)
    row.find_element(By.CLASS_NAME, "rollout-link").click()
    _wait_text(driver, By.TAG_NAME, "h1", "Rollout")
    assert driver.current_url.endswith(f"/ui/rollouts/{stack.rollout_id}")  # type: ignore[attr-defined]
    for figure in ("plot-gates", "plot-traffic"):
        assert finds(By.CSS_SELECTOR, f"#{figure} svg"), figure
    gates = find(By.ID, "plot-gates").text
    assert "error_rate" in gates and "latency" in gates
    assert finds(By.CSS_SELECTOR, "#buttons button") == []
    _shoot(driver, tmp_path, "rollout", 3000)
    # a deployer: the pause button works
    _login(driver, stack.api_url, stack.tokens["deployer"], "deployer-1")
    driver.get(f"{stack.api_url}/ui/rollouts/{stack.rollout_id}")  # type: ignore[attr-defined]
    shown = {button.text for button in finds(By.CSS_SELECTOR, "#buttons button")}
    assert shown == {"pause", "resume", "promote", "abort", "rollback"}
    find(By.ID, "btn-pause").click()
    _wait_text(driver, By.ID, "state", "paused")
    assert find(By.ID, "state").text == "paused"
    manager = Manager(home.settings)
    try:
        assert manager.rollout(stack.rollout_id).state == "paused"
        rows = manager.audit.list(identity="deployer-1", limit=5)
        paused = [row for row in rows if row.verb == "pause"]
        assert [(row.outcome, json.loads(row.detail)["via"]) for row in paused] == [
            ("allowed", "dashboard")
        ]
    finally:
        manager.close()
    # the model page: a release leads to the rollout behind it
    driver.get(f"{stack.api_url}/ui/models/{MODEL}")  # type: ignore[attr-defined]
    links = finds(By.CSS_SELECTOR, "#releases-prod a.release-rollout")
    assert [link.text for link in links] == [stack.initial_rollout_id]
    links[0].click()
    _wait_text(driver, By.TAG_NAME, "h1", "Rollout")
    assert find(By.TAG_NAME, "h1").text == f"Rollout {stack.initial_rollout_id}"
