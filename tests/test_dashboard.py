"""The dashboard over a real store filled by a real short run: every page renders what was
practised, the API answers JSON, bad input is 404/422 (never 500), and only a POST carrying
the token queues a job."""

import hashlib
from datetime import datetime, timedelta, timezone
import os
import pathlib
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from agent.dashboard.app import create_app
from agent.runner import Runner
from envs import make_env
from envs.tasks import resolve_task
from memory.store import Expert, Job, Store

PRACTISED = ("collect_wood", "place_table", "make_wood_pickaxe")
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("dash") / "peam.db"
    store = Store.open(f"sqlite:///{path}")
    env = make_env("crafter")
    store.sync_skills(env.catalog)
    run_id = store.start_run(env="crafter", task="make_wood_pickaxe", planner="symbolic",
                             memory_mode="none", config={})
    results = Runner(env, recorder=store, run_id=run_id).run(
        resolve_task("make_wood_pickaxe", env.catalog), seeds=[0, 1])
    assert all(r.success for r in results)
    store.finish_run(run_id, "finished")
    store.path = path
    yield store
    store.close()


@pytest.fixture(scope="module")
def client(store):
    return TestClient(create_app(store, token=TOKEN, read_only_bind=False))


@pytest.mark.parametrize("url", ["/skills", "/skills?sort=attempts&order=desc",
                                 "/skills/make_wood_pickaxe", "/jobs", "/runs", "/runs?run_id=1"])
def test_pages_render_the_practised_skills(client, url):
    page = client.get(url)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "make_wood_pickaxe" in page.text
    if not url.startswith("/skills/"):
        return
    assert 'src="/static/plotly.min.js"' in page.text and "success-chart" in page.text


def test_skills_page_sorts_and_filters(client):
    by_attempts = client.get("/skills?sort=attempts&order=desc").text
    assert by_attempts.index("collect_wood") < by_attempts.index("make_wood_pickaxe")
    crafted = client.get("/skills?category=craft").text
    assert "make_wood_pickaxe" in crafted and "collect_wood" not in crafted


def test_experts_page_says_there_are_none_yet(client):
    page = client.get("/experts")
    assert page.status_code == 200 and "No experts yet" in page.text
    assert client.get("/api/experts").json() == []


def test_plotly_is_served_locally(client):
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert len(js.content) > 1_000_000
    assert client.get("/static/app/style.css").status_code == 200


def test_api_returns_what_the_run_recorded(client):
    skills = {s["name"]: s for s in client.get("/api/skills?limit=500").json()}
    assert all(skills[name]["attempts"] >= 2 for name in PRACTISED)
    assert skills["make_wood_pickaxe"]["slow_success_rate"] == 1.0
    detail = client.get("/api/skills/make_wood_pickaxe").json()
    assert len(detail["success_over_time"]) == 2 and len(detail["recent_episodes"]) == 2
    (run,) = client.get("/api/runs").json()
    assert run["episodes"] == 2 and run["successes"] == 2 and run["fast_share"] == 0.0
    episodes = client.get(f"/api/episodes?run_id={run['id']}").json()
    assert [e["fast_share"] for e in episodes] == [0.0, 0.0]
    assert client.get(f"/api/episodes/{episodes[0]['id']}").json() == episodes[0]
    assert len(client.get("/api/skills?limit=1&offset=1").json()) == 1


@pytest.mark.parametrize("url, status", [
    ("/api/skills/make_golden_apple", 404), ("/skills/make_golden_apple", 404),
    ("/api/episodes/999", 404), ("/api/episodes/0", 422), ("/api/episodes/abc", 422),
    ("/api/episodes/99999999999999999999999", 422), ("/api/skills?limit=0", 422),
    ("/api/skills?limit=501", 422), ("/api/skills?offset=-1", 422),
    ("/api/skills?sort=password", 422), ("/skills?order=sideways", 422),
    ("/api/skills?category=%00", 422), ("/api/nothing", 404)])
def test_bad_input_is_404_or_422(client, url, status):
    assert client.get(url).status_code == status


def test_get_requests_never_write(client, store):
    before = hashlib.sha256(store.path.read_bytes()).hexdigest()
    for url in ("/skills", "/skills/collect_wood", "/experts", "/jobs", "/runs", "/api/skills",
                "/api/jobs", "/api/runs", "/api/episodes", "/api/experts"):
        assert client.get(url).status_code == 200
    assert hashlib.sha256(store.path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("headers, status", [({}, 401), ({"X-Peam-Token": "guess"}, 403)])
def test_post_without_the_token_is_refused(client, headers, status):
    jobs = client.get("/api/jobs").json()
    out = client.post("/api/jobs", json={"skill": "collect_wood"}, headers=headers)
    assert out.status_code == status
    form = client.post("/jobs", data={"target": "skill:collect_wood"}, headers=headers)
    assert form.status_code == status
    assert client.get("/api/jobs").json() == jobs


def test_post_with_the_token_queues_a_job_shown_on_jobs(client):
    made = client.post("/api/jobs", json={"skill": "make_wood_pickaxe"},
                       headers={"X-Peam-Token": TOKEN})
    assert made.status_code == 201
    job = made.json()
    assert (job["status"], job["reason"], job["skill"]) == ("queued", "dashboard",
                                                            "make_wood_pickaxe")
    form = client.post("/jobs", data={"target": "category:gather", "token": TOKEN},
                       follow_redirects=False)
    assert form.status_code == 303
    jobs = client.get("/api/jobs").json()
    assert [(j["skill"], j["category"]) for j in jobs[:2]] == [(None, "gather"),
                                                               ("make_wood_pickaxe", None)]
    page = client.get("/jobs").text
    assert "queued" in page and "dashboard" in page and "category gather" in page


@pytest.mark.parametrize("body, status", [({"skill": "make_golden_apple"}, 404),
                                          ({"category": "nowhere"}, 404), ({}, 422),
                                          ({"skill": "collect_wood", "category": "gather"}, 422),
                                          ({"skill": "x" * 500}, 422)])
def test_bad_job_requests_are_refused(client, body, status):
    assert client.post("/api/jobs", json=body,
                       headers={"X-Peam-Token": TOKEN}).status_code == status


def test_without_a_token_our_own_form_works_but_a_foreign_post_does_not(store):
    client = TestClient(create_app(store, token=None, read_only_bind=False))
    nonce = client.get("/jobs").text.split('name="token" value="')[1].split('"')[0]
    assert client.post("/jobs", data={"target": "skill:collect_wood"}).status_code == 401
    assert client.post("/jobs", data={"target": "skill:collect_wood", "token": nonce},
                       follow_redirects=False).status_code == 303
    read_only = TestClient(create_app(store, token=None, read_only_bind=True))
    assert read_only.post("/api/jobs", json={"skill": "collect_wood"}).status_code == 403
    assert 'id="queue-job"' not in read_only.get("/jobs").text


def test_an_empty_store_renders_and_experts_and_job_durations_show(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path}/empty.db")
    client = TestClient(create_app(store, token=None, read_only_bind=False))
    for url, empty in [("/skills", "No skills"), ("/experts", "No experts yet"),
                       ("/jobs", "No jobs yet"), ("/runs", "No runs yet")]:
        page = client.get(url)
        assert page.status_code == 200 and empty in page.text
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with store.session() as s:
        s.add(Expert(game="crafter", category="gather", routing="category", rank=8, version=1,
                     path="/x", sha256="ab" * 32, params=12345, status="promoted",
                     metrics={"success": 0.9}, created_at=start, promoted_at=start))
        s.add(Job(game="crafter", category="gather", reason="worthiness", status="failed",
                  error="out of memory", created_at=start,
                  started_at=start + timedelta(seconds=3),
                  finished_at=start + timedelta(seconds=93)))
    experts = client.get("/experts").text
    assert "abababababab" in experts and "12,345" in experts and "2026-01-01" in experts
    (job,) = client.get("/api/jobs").json()
    assert (job["wait_s"], job["duration_s"]) == (3.0, 90.0)
    assert "out of memory" in client.get("/jobs").text
    store.close()


def test_cli_refuses_a_public_bind_without_a_token(tmp_path):
    peam = str(pathlib.Path(sys.executable).parent / "peam")
    environ = {k: v for k, v in os.environ.items() if k != "PEAM_DASHBOARD_TOKEN"}
    out = subprocess.run([peam, "dashboard", "--host", "0.0.0.0", "--db",
                          f"sqlite:///{tmp_path}/none.db"], capture_output=True, text=True,
                         env=environ, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "peam: error: refusing to bind 0.0.0.0 without a token: set PEAM_DASHBOARD_TOKEN, "
        "or bind 127.0.0.1"]
    assert not (tmp_path / "none.db").exists()


# ---- property test: schemathesis drives the API from its OpenAPI schema ------------------------

import schemathesis  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402


@pytest.mark.parametrize("mode, examples", [(GenerationMode.POSITIVE, 30),
                                            (GenerationMode.NEGATIVE, 20)])
def test_api_never_answers_5xx(store, mode, examples):
    app = create_app(store, token=TOKEN, read_only_bind=False)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    @given(case=schema.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def answers_without_a_server_error(case):
        case.call_and_validate(checks=[not_a_server_error], headers={"X-Peam-Token": TOKEN})

    answers_without_a_server_error()
