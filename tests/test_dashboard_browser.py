"""The dashboard in a real headless Chromium (Debian's), on a store filled by a real run:
every page loads, the consolidate button queues a job, and screenshots are kept."""

import pathlib
import shutil
import socket
import threading
import time

import pytest

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                 reason="Debian chromium and chromium-driver are not installed (make browser)")]
ARTIFACTS = pathlib.Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    from agent.dashboard.app import create_app
    from agent.loop.runner import Runner
    from envs import make_env
    from envs.tasks import resolve_task
    from memory.store import Store

    store = Store.open(f"sqlite:///{tmp_path_factory.mktemp('dash')}/peam.db")
    env = make_env("crafter")
    store.sync_skills(env.catalog)
    run_id = store.start_run(env="crafter", task="make_wood_pickaxe", planner="symbolic",
                             memory_mode="none", config={})
    Runner(env, recorder=store, run_id=run_id).run(resolve_task("make_wood_pickaxe", env.catalog), [0, 1])
    store.finish_run(run_id, "finished")
    add_scores(store)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(store, token=None, read_only_bind=False), host="127.0.0.1",
                            port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def add_scores(store):
    """Worthiness factors and a forgetting curve for make_wood_pickaxe, as consolidation writes
    them: five promotions, a dip when a neighbouring expert was retrained, then recovery."""
    from datetime import datetime, timedelta, timezone

    from memory.store import Skill
    from memory.tables import Evaluation

    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    with store.session() as s:
        skill = s.query(Skill).filter_by(name="make_wood_pickaxe").one()
        skill.worthiness, skill.cost_saving, skill.stability = 3.42, 118.0, 0.86
        skill.redundancy, skill.interference = 0.1, 0.25
        for version, (n, won) in enumerate([(20, 14), (20, 17), (20, 18), (20, 13), (20, 17)], 1):
            s.add(Evaluation(expert_id=None, skill="make_wood_pickaxe", episodes=n,
                             successes=won, success_rate=won / n, registry_version=version,
                             created_at=t0 + timedelta(hours=6 * version)))


def wait_for_plot(browser, selector, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline and not browser.find_elements("css selector", selector):
        time.sleep(0.1)
    return browser.find_elements("css selector", selector)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900", f"--user-data-dir={tmp_path_factory.mktemp('chrome')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def shot(browser, name):
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"dashboard-{name}.png"))


@pytest.mark.parametrize("path, text", [
    ("/skills", "make_wood_pickaxe"),
    ("/skills/make_wood_pickaxe", "make_wood_pickaxe"),
    ("/experts", "No experts yet"),
    ("/jobs", "Consolidation jobs"),
    ("/runs", "make_wood_pickaxe"),
])
def test_every_page_loads(server, browser, path, text):
    browser.get(server + path)
    assert text in browser.find_element("tag name", "body").text
    shot(browser, path.strip("/").replace("/", "-"))


def test_skill_page_draws_its_chart_with_local_plotly(server, browser):
    browser.get(server + "/skills/make_wood_pickaxe")
    deadline = time.time() + 10
    while time.time() < deadline and not browser.find_elements("css selector", ".plot-container"):
        time.sleep(0.1)
    assert browser.find_elements("css selector", ".plot-container"), "plotly did not render"


def test_skill_page_draws_the_forgetting_curve(server, browser):
    browser.get(server + "/skills/make_wood_pickaxe")
    assert wait_for_plot(browser, "#forgetting-chart .plot-container"), "no forgetting curve"
    assert len(browser.find_elements("css selector", "#forgetting-chart .scatterlayer .point")) == 5
    table = browser.find_element("id", "worthiness").text
    assert "118.00" in table and "uses × seconds saved per use" in table
    shot(browser, "skill-forgetting")


def test_runs_page_draws_the_fast_path_share_chart(server, browser):
    browser.get(server + "/runs")
    assert wait_for_plot(browser, "#share-chart .plot-container"), "no fast-path share chart"
    assert browser.find_elements("css selector", "#share-chart .scatterlayer .trace")
    shot(browser, "runs-share")


def test_consolidate_button_queues_a_job(server, browser):
    from selenium.webdriver.support.ui import Select

    browser.get(server + "/jobs")
    Select(browser.find_element("name", "target")).select_by_value("category:craft")
    browser.find_element("css selector", "#queue-job button").click()
    deadline = time.time() + 10
    while time.time() < deadline and "craft" not in _jobs_text(browser):
        time.sleep(0.1)
    assert "craft" in _jobs_text(browser) and "queued" in _jobs_text(browser)
    shot(browser, "jobs-after-click")


def _jobs_text(browser):
    tables = browser.find_elements("id", "jobs")
    return tables[0].text if tables else ""
