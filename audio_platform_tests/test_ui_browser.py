"""The Dagster UI as an operator sees it: a real dagster-webserver over a real instance with one
materialized shard, driven by headless Debian Chromium through Selenium.

The UI is a React app that renders after the page loads, so every check is an explicit wait for
what the page must end up showing. Screenshots go to ``$TEST_ARTIFACTS_DIR/ui`` (default
``test-artifacts/ui`` at the repository root); on a failed wait the page and its HTML are saved
there too, so a CI failure can be read without rerunning it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from audio_platform.definitions import build_definitions
from audio_platform.defs.jobs import SHARD_ASSETS
from audio_platform.defs.partitions import shard_partitions
from audio_platform.runs import CODE_LOCATION, REPOSITORY
from audio_platform.settings import Settings
from audio_platform_tests.conftest import REPO_ROOT, demo_shard_home, stop_process_group

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
# CI installs both (.ci/run); elsewhere the test is skipped with the command that enables it.
pytestmark = pytest.mark.skipif(
    (CHROMIUM is None or CHROMEDRIVER is None) and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "test-artifacts")) / "ui"
# Without these, headless Chromium in a closed network keeps trying (and failing) to phone home.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Tall and wide enough that the expanded lineage graph (7 groups) is drawn whole: the graph
    # renders only the nodes inside the viewport.
    "--window-size=2560,2560",
)
SERVER_START_TIMEOUT_S = 120.0
UI_TIMEOUT_S = 60.0
# What a selected partition's panel shows once it has a materialization (a missing one has none).
MATERIALIZED_PARTITION = ("Latest materialization", "process_shard")


@pytest.fixture(scope="module")
def shard_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str]:
    return demo_shard_home(tmp_path_factory.mktemp("ui"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def webserver(shard_home: tuple[Settings, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``dagster-webserver`` as an operator starts it, on a free loopback port; yields its URL."""
    settings, _ = shard_home
    port = _free_port()
    log = tmp_path_factory.mktemp("webserver") / "webserver.log"
    env = {**os.environ, "DAGSTER_HOME": str(settings.dagster_home), "AUDIO_PLATFORM_HOME": str(settings.home)}
    command = [
        str(Path(sys.executable).with_name("dagster-webserver")),
        # workspace.yaml names the code location as `dg dev` (audio-platform serve) and the CLI's runs do.
        *("-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)),
    ]
    with open(log, "w") as out:
        # Its own process group: the code server it spawns goes down with it.
        server = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"dagster-webserver exited ({server.returncode}):\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no /server_info after {SERVER_START_TIMEOUT_S:.0f} s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield url
    finally:
        stop_process_group(server)


@pytest.fixture
def browser(webserver: str) -> Iterator[webdriver.Chrome]:
    assert CHROMIUM and CHROMEDRIVER, "CI must install chromium and chromium-driver (see .ci/run)"
    options = webdriver.ChromeOptions()
    # Explicit binary and driver: Selenium Manager would otherwise try to download a browser.
    options.binary_location = CHROMIUM
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            # Any same-origin page will do to pre-answer the first-visit "join the community"
            # dialog (the value its Skip button stores), which would otherwise cover the page.
            driver.get(f"{webserver}/server_info")
            driver.execute_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")
            yield driver
        finally:
            driver.quit()


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """The whole document (not only the viewport) as ``ARTIFACTS/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    options = {"format": "png", "captureBeyondViewport": True, "clip": clip}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", options)
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def wait_until(driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], object], what: str, name: str) -> None:
    """Wait for ``condition``; on timeout keep the page (PNG + HTML) as ``failed-<name>`` and fail."""
    try:
        WebDriverWait(driver, UI_TIMEOUT_S, ignored_exceptions=(WebDriverException,)).until(condition)
    except TimeoutException:
        shot = screenshot(driver, f"failed-{name}")
        shot.with_suffix(".html").write_text(driver.page_source)
        pytest.fail(f"the UI never showed {what} within {UI_TIMEOUT_S:.0f} s; page kept as {shot}")


def rendered_asset_names(driver: webdriver.Chrome) -> set[str]:
    # Asset nodes are HTML inside the graph's SVG; their name element's CSS-module class starts
    # with "AssetNode_assetName" (the hash suffix changes between UI builds).
    names = "//*[local-name()='foreignObject']//*[contains(@class, 'AssetNode_assetName')]"
    return {node.text.strip() for node in driver.find_elements(By.XPATH, names)}


def test_asset_graph_and_shard_partition_render(
    browser: webdriver.Chrome, webserver: str, shard_home: tuple[Settings, str], capsys: pytest.CaptureFixture[str]
) -> None:
    settings, shard = shard_home
    graph = build_definitions(settings).resolve_asset_graph()
    expected = {key.to_user_string() for key in graph.get_all_asset_keys()}
    # The assets one shard run materializes (curated_exports is shard-partitioned but runs apart).
    in_shard_run = SHARD_ASSETS.resolve(graph)
    shard_assets = [key for key in graph.toposorted_asset_keys if key in in_shard_run]
    assert shard_assets and all(graph.get(key).partitions_def == shard_partitions for key in shard_assets)

    # The global lineage graph opens with every group collapsed; expanding them all is one item
    # of the graph's settings menu.
    browser.get(f"{webserver}/asset-groups")
    # The graph's own settings button opens a popover; the navigation's Settings item does not.
    options = "//*[@aria-haspopup][.//*[@aria-label='settings']]//button"
    wait_until(browser, lambda d: d.find_element(By.XPATH, options).is_displayed(), "the graph", "graph")
    browser.find_element(By.XPATH, options).click()
    expand = "//button[@role='menuitem'][contains(., 'Expand all groups')]"
    wait_until(browser, lambda d: d.find_element(By.XPATH, expand).is_displayed(), "the graph menu", "graph-menu")
    browser.find_element(By.XPATH, expand).click()
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait_until(browser, lambda d: expected <= rendered_asset_names(d), f"every asset {sorted(expected)}", "graph")
    shots = [screenshot(browser, "asset-graph")]
    assert rendered_asset_names(browser) == expected

    # Each shard-partitioned asset lists the shard, and selecting it shows its materialization.
    for key in shard_assets:
        name = key.to_user_string()
        browser.get(f"{webserver}/assets/{'/'.join(key.path)}?view=partitions")
        row = f"[title='{shard}']"
        wait_until(browser, lambda d, row=row: d.find_elements(By.CSS_SELECTOR, row), f"{shard} under {name}", name)
        browser.find_element(By.CSS_SELECTOR, row).click()
        wait_until(
            browser,
            lambda d: all(text in d.find_element(By.TAG_NAME, "body").text for text in MATERIALIZED_PARTITION),
            f"the materialization of {name} {shard}",
            name,
        )
        shots.append(screenshot(browser, f"partition-{name}"))
    with capsys.disabled():
        print(f"\nUI screenshots: {', '.join(str(path) for path in shots)}")


def test_drops_view_and_accuracy_metadata_render(
    browser: webdriver.Chrome, webserver: str, shard_home: tuple[Settings, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The drops view (the warehouse asset's `drops` table) and the shard's accuracy figures."""
    _, shard = shard_home
    drop_id = shard.rsplit("-", 1)[0]
    shots = []
    browser.get(f"{webserver}/assets/warehouse")
    wait_until(
        browser,
        lambda d: drop_id in d.find_element(By.TAG_NAME, "body").text and "drops_done" in d.page_source,
        f"the drops view listing {drop_id}",
        "drops-view",
    )
    # Only the drop entries: the table, and the counts per state that the Plots switch draws.
    browser.find_element(By.CSS_SELECTOR, "input[placeholder='Filter metadata keys']").send_keys("drops")
    shots.append(screenshot(browser, "drops-view"))
    browser.get(f"{webserver}/assets/asr_evaluation?view=partitions")
    row = f"[title='{shard}']"
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, row), f"{shard} under asr_evaluation", "accuracy")
    browser.find_element(By.CSS_SELECTOR, row).click()
    wait_until(
        browser,
        lambda d: "by_source_group" in d.find_element(By.TAG_NAME, "body").text,
        "the shard's accuracy by source group",
        "accuracy",
    )
    shots.append(screenshot(browser, "accuracy-by-source"))
    with capsys.disabled():
        print(f"\nUI screenshots: {', '.join(str(path) for path in shots)}")


def test_the_job_page_lists_the_runs_the_cli_executed(webserver: str, shard_home: tuple[Settings, str]) -> None:
    """The job page's own query (runs of the job in this code location) returns the shard run that
    `process_drop` executed in the test's process: CLI runs are not hidden from the UI."""
    _, shard = shard_home
    query = (
        "query JobRuns($selector: PipelineSelector!) { pipelineOrError(params: $selector) "
        "{ ... on Pipeline { runs(limit: 5) { runId status tags { key value } } } } }"
    )
    selector = {"pipelineName": "process_shard", "repositoryName": REPOSITORY, "repositoryLocationName": CODE_LOCATION}
    request = urllib.request.Request(
        f"{webserver}/graphql",
        data=json.dumps({"query": query, "variables": {"selector": selector}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        runs = json.load(response)["data"]["pipelineOrError"]["runs"]
    assert [run["status"] for run in runs] == ["SUCCESS"]
    assert {"key": "dagster/partition", "value": shard} in runs[0]["tags"]
