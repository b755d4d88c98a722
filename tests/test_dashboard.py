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
from agent.dashboard.guard import allowed_hosts
from agent.loop.runner import Runner
from envs import make_env
from envs.tasks import resolve_task
from memory.store import Expert, Job, Segment, Skill, Store
from memory.tables import Evaluation

PRACTISED = ("collect_wood", "place_table", "make_wood_pickaxe")
TOKEN = "s3cret-token"
LOCAL = "http://127.0.0.1"  # the dashboard answers to loopback names only (agent/dashboard/guard.py)
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
# make_wood_pickaxe's forgetting curve: (registry_version, episodes, successes)
CURVE = [(1, 10, 9), (2, 10, 7), (3, 8, 8)]
FACTORS = {"make_wood_pickaxe": dict(worthiness=4.25, cost_saving=123.5, stability=0.81,
                                     redundancy=0.125, interference=0.0625),
           "collect_wood": dict(worthiness=0.5, cost_saving=7.75, stability=0.33,
                                redundancy=0.9, interference=0.75)}


def add_scores(store):
    """What consolidation would have written: worthiness factors, a forgetting curve (and one
    point of another skill), and one failure–correction pair of make_wood_pickaxe."""
    with store.session() as s:
        for skill in s.query(Skill).filter(Skill.name.in_(FACTORS)):
            for key, value in FACTORS[skill.name].items():
                setattr(skill, key, value)
        for version, n, won in CURVE:
            s.add(Evaluation(expert_id=None, skill="make_wood_pickaxe", episodes=n,
                             successes=won, success_rate=won / n, registry_version=version,
                             created_at=T0 + timedelta(hours=version)))
        s.add(Evaluation(expert_id=None, skill="collect_wood", episodes=4, successes=1,
                         success_rate=0.25, registry_version=2, created_at=T0))
        slow = s.query(Segment).filter_by(skill="make_wood_pickaxe", path="slow") \
            .order_by(Segment.id).first()
        failed = Segment(episode_id=slow.episode_id, index=10_000, skill="make_wood_pickaxe",
                         category=slow.category, path="fast", outcome="failure", start_step=0,
                         steps=3, wall_s=0.01, created_at=T0)
        s.add(failed)
        s.flush()
        slow.corrects_segment_id = failed.id


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
    add_scores(store)
    store.path = path
    yield store
    store.close()


@pytest.fixture(scope="module")
def client(store):
    return TestClient(create_app(store, token=TOKEN, read_only_bind=False), base_url=LOCAL)


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


def test_skill_page_shows_forgetting_curve_factors_and_pairs(client):
    page = client.get("/skills/make_wood_pickaxe").text
    assert 'id="forgetting-chart"' in page and "forgetting-empty" not in page
    assert "1 failure–correction pair" in page and "failure–correction pairs" not in page
    for value in ("4.25", "123.50", "0.81", "0.12", "0.06"):  # num() rounds to 2 places
        assert value in page
    for note in ("uses × seconds saved per use",
                 "consistency and number of successful demonstrations",
                 "how well an existing expert already covers it",
                 "how much training would disturb skills sharing the expert"):
        assert note in page
    data = page.split('id="forgetting-data" type="application/json">')[1].split("</script>")[0]
    import json
    curve = json.loads(data)
    assert [(v["registry_version"], v["success_rate"], v["episodes"]) for v in curve] == \
        [(v, won / n, n) for v, n, won in CURVE]
    assert curve[0]["created_at"].startswith("2026-03-01T01:00:00")


def test_skill_page_without_evaluations_says_so(client):
    page = client.get("/skills/place_table").text
    assert "No forgetting curve yet" in page and 'id="forgetting-chart"' not in page
    assert "0 failure–correction pairs" in page and "Not scored yet" in page


def test_api_skill_detail_has_factors_curve_and_pairs(client):
    detail = client.get("/api/skills/make_wood_pickaxe").json()
    assert {k: detail["skill"][k] for k in FACTORS["make_wood_pickaxe"]} == \
        FACTORS["make_wood_pickaxe"]
    assert [e["registry_version"] for e in detail["evaluations"]] == [1, 2, 3]
    assert detail["evaluations"][1]["success_rate"] == 0.7
    assert detail["correction_pairs"] == 1
    assert client.get("/api/skills/place_table").json()["correction_pairs"] == 0


def test_api_evaluations_filters_and_pages(client):
    every = client.get("/api/evaluations").json()
    assert len(every) == 4 and [e["registry_version"] for e in every] == [1, 2, 2, 3]
    mine = client.get("/api/evaluations?skill=make_wood_pickaxe").json()
    assert [(e["episodes"], e["successes"]) for e in mine] == [(n, w) for _, n, w in CURVE]
    assert client.get("/api/evaluations?skill=make_wood_pickaxe&limit=1&offset=1").json() == \
        mine[1:2]
    assert client.get("/api/evaluations?skill=collect_wood").json()[0]["success_rate"] == 0.25
    assert client.get("/api/evaluations?skill=nothing_here").json() == []
    assert "/api/evaluations" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("factor", ["worthiness", "cost_saving", "stability", "redundancy",
                                    "interference"])
def test_skills_sort_by_each_worthiness_factor(client, factor):
    low, high = sorted(FACTORS, key=lambda name: FACTORS[name][factor])
    names = [s["name"] for s in client.get(f"/api/skills?sort={factor}&order=desc").json()]
    assert names[:2] == [high, low]  # unscored skills come last
    assert [s["name"] for s in client.get(f"/api/skills?sort={factor}").json()][:2] == [low, high]
    page = client.get(f"/skills?sort={factor}&order=desc")
    assert page.status_code == 200
    body = page.text.split("<tbody>")[1]
    assert body.index(f">{high}<") < body.index(f">{low}<") < body.index(">place_table<")
    assert "▼" in page.text.split("<tbody>")[0]


def test_skills_page_shows_factor_columns(client):
    page = client.get("/skills").text
    for header in ("Cost saving", "Stability", "Redundancy", "Interference"):
        assert header in page
    assert "123.50" in page and "7.75" in page


def test_runs_page_charts_fast_path_share(client):
    page = client.get("/runs").text
    assert 'src="/static/plotly.min.js"' in page and 'id="share-chart"' in page
    import json
    data = json.loads(page.split('id="share-data" type="application/json">')[1]
                      .split("</script>")[0])
    assert [p["episode"] for p in data] == sorted(p["episode"] for p in data)
    assert len(data) == 2 and {p["fast_share"] for p in data} == {0.0} and data[0]["run"] == 1
    assert 'id="share-chart"' in client.get("/runs?run_id=1").text
    assert "share-empty" in client.get("/runs?run_id=999").text


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
    slow = [p for p in detail["success_over_time"] if p["path"] == "slow"]
    assert len(slow) == 2 and len(detail["recent_episodes"]) == 2
    assert [p["path"] for p in detail["success_over_time"]].count("fast") == 1  # add_scores
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
    ("/api/skills?category=%00", 422), ("/api/nothing", 404),
    ("/api/skills?sort=cost_savings", 422), ("/skills?sort=interference%27", 422),
    ("/api/evaluations?limit=0", 422), ("/api/evaluations?limit=501", 422),
    ("/api/evaluations?offset=-1", 422), ("/api/evaluations?offset=x", 422),
    ("/api/evaluations?skill=a%20b", 422), ("/api/evaluations?skill=" + "x" * 129, 422)])
def test_bad_input_is_404_or_422(client, url, status):
    assert client.get(url).status_code == status


def test_get_requests_never_write(client, store):
    before = hashlib.sha256(store.path.read_bytes()).hexdigest()
    for url in ("/skills", "/skills/collect_wood", "/skills/make_wood_pickaxe", "/experts",
                "/jobs", "/runs", "/api/skills", "/api/jobs", "/api/runs", "/api/episodes",
                "/api/experts", "/api/evaluations", "/api/skills/make_wood_pickaxe",
                "/skills?sort=stability"):
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
    client = TestClient(create_app(store, token=None, read_only_bind=False), base_url=LOCAL)
    nonce = client.get("/jobs").text.split('name="token" value="')[1].split('"')[0]
    assert client.post("/jobs", data={"target": "skill:collect_wood"}).status_code == 401
    assert client.post("/jobs", data={"target": "skill:collect_wood", "token": nonce},
                       follow_redirects=False).status_code == 303
    read_only = TestClient(create_app(store, token=None, read_only_bind=True), base_url=LOCAL)
    assert read_only.post("/api/jobs", json={"skill": "collect_wood"}).status_code == 403
    assert 'id="queue-job"' not in read_only.get("/jobs").text


def test_an_empty_store_renders_and_experts_and_job_durations_show(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path}/empty.db")
    client = TestClient(create_app(store, token=None, read_only_bind=False), base_url=LOCAL)
    for url, empty in [("/skills", "No skills"), ("/experts", "No experts yet"),
                       ("/jobs", "No jobs yet"), ("/runs", "No runs yet")]:
        page = client.get(url)
        assert page.status_code == 200 and empty in page.text
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert "share-empty" in client.get("/runs").text
    assert client.get("/api/evaluations").json() == []
    with store.session() as s:
        s.add(Expert(game="crafter", category="gather", routing="category", rank=8, version=1,
                     path="/x", sha256="ab" * 32, params=12345, status="promoted",
                     metrics={"success": 0.9, "skill_success": {"collect_wood": 0.875,
                                                                "collect_stone": 0.5}},
                     created_at=start, promoted_at=start))
        s.add(Expert(game="crafter", category="craft", routing="category", rank=8, version=2, kind="plan",
                     path="/y", sha256="cd" * 32, params=1, status="candidate",
                     metrics={"propose_above": {"make_wood_pickaxe": 0.5, "make_iron_pickaxe": None}},
                     created_at=start))
        s.flush()
        s.add(Job(game="crafter", category="gather", reason="worthiness", status="failed",
                  error="out of memory", created_at=start,
                  started_at=start + timedelta(seconds=3),
                  finished_at=start + timedelta(seconds=93)))
        s.add(Job(game="crafter", category="gather", reason="worthiness", status="promoted",
                  expert_id=1, metrics={"candidate_success": 0.6875, "current_success": 0.25},
                  created_at=start))
    experts = client.get("/experts").text
    assert "abababababab" in experts and "12,345" in experts and "2026-01-01" in experts
    assert "collect_stone</a> 50%, " in experts and "collect_wood</a> 88%" in experts
    assert "#2 <small>promoted: 69% vs 25% before" in experts
    first, second = client.get("/api/experts").json()
    assert (second["job_id"], second["job_status"], second["candidate_success"],
            second["current_success"]) == (2, "promoted", 0.6875, 0.25)
    assert second["skill_success"] == {"collect_wood": 0.875, "collect_stone": 0.5}
    assert (first["job_id"], first["skill_success"]) == (None, {})
    assert first["propose_above"] == {"make_wood_pickaxe": 0.5, "make_iron_pickaxe": None}
    assert second["propose_above"] == {}
    assert "make_iron_pickaxe never, make_wood_pickaxe ≥ 0.50" in experts
    job = client.get("/api/jobs").json()[1]
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
    # schemathesis's ASGI client sends `Host: testserver`: a name the dashboard must be told of
    app = create_app(store, token=TOKEN, read_only_bind=False, hosts=allowed_hosts("127.0.0.1", "testserver"))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    @given(case=schema.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def answers_without_a_server_error(case):
        case.call_and_validate(checks=[not_a_server_error], headers={"X-Peam-Token": TOKEN})

    answers_without_a_server_error()
