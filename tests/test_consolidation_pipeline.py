"""The consolidation pipeline end to end on a real store, the real game and real files:
train a candidate, gate it in the game, promote atomically; isolation of every other expert;
a corrupt candidate never promoted; a worker SIGKILLed mid-training loses nothing."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agent.services.evaluation import run_job
from agent.services.memory_modes import expert_fast_path
from agent.loop.runner import Runner
from consolidation import pipeline
from consolidation.pipeline import ConsolidationConfig
from consolidation.queue import enqueue, get_job, requeue_expired
from consolidation.worker import Worker
from envs import make_env
from envs.tasks import resolve_task
from memory import columns as C
from memory.expert_io import sha256_of
from memory.registry import expert_dir, experts, promoted
from memory.store import Store
from memory.tables import Evaluation


def env_catalog():
    return make_env("crafter").catalog


def files_digest(models: Path) -> dict[str, str]:
    return {str(p.relative_to(models)): sha256_of(p) if p.name.endswith("safetensors") else p.read_text()
            for p in sorted(models.rglob("*")) if p.is_file()}


def process(store, models, config=None):
    return lambda job, beat: run_job(store, job, beat, models_dir=models, episodes=2, config=config)


# The fixture's job also practises once (DAgger, off by default): 2 episodes per skill.
PRACTISING = ConsolidationConfig(eval_episodes=2, practice_rounds=1, practice_episodes=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("consolidation")
    url = f"sqlite:///{root}/peam.db"
    store = Store.open(url)
    env = make_env("crafter")
    store.sync_skills(env.catalog)
    run_id = store.start_run(env="crafter", task="practice", planner="symbolic", memory_mode="none", config={})
    runner = Runner(env, recorder=store, run_id=run_id)
    runner.run(resolve_task("make_wood_pickaxe", env.catalog), [0, 1, 2, 3])
    models = root / "models"
    enqueue(store, game="crafter", category="build", reason="test")
    job = Worker(store, process(store, models, PRACTISING), name="w1", lease_s=300).run_once()
    return store, url, models, job


def test_a_job_trains_gates_in_the_game_and_promotes(world):
    store, _, models, job = world
    assert job.status == "promoted", job.error or job.metrics
    m = job.metrics
    assert m["candidate_success"] >= m["current_success"] and m["candidate_success"] > 0
    (row,) = promoted(store, "crafter")
    assert row.id == job.expert_id and row.category == "build"
    assert sha256_of(expert_dir(models, row.path)) == row.sha256
    fast = expert_fast_path("peam", store, "crafter", models)
    assert fast.covers("build") and not fast.covers("craft")
    ref = fast.experts["build"]  # what the gate measured travels with the expert to the arbiter
    for skill, rate in ref.skill_success.items():
        assert ref.skill_steps[skill] >= ref.skill_attempts[skill] >= 1
        measured = fast.confidence(skill)
        assert (measured.rate, measured.attempts, measured.steps) == (rate, ref.skill_attempts[skill],
                                                                     ref.skill_steps[skill])
        assert measured.seconds > 0  # the gate timed its attempts: the cost rule weighs seconds too
    with store.session() as s:  # forgetting is measured after every promotion
        assert s.query(Evaluation).filter_by(registry_version=row.id).count() >= 1


def test_a_candidate_practises_before_the_gate_and_the_next_learns_from_the_slow_paths_labels(world):
    store, _, _, job = world
    m = job.metrics
    assert m["practice_steps"][0] > 0 and m["relabelled"] > 0  # one DAgger round, recorded
    (first,) = [e for e in experts(store, "crafter") if e.id < job.expert_id and e.category == "build"]
    assert first.status == "superseded"  # replaced before the gate, never promoted
    fast = [s for s in store.segments(path="fast", category="build")]
    assert fast and all(len(store.load_steps(s.id)[C.TEACHER]) == s.steps for s in fast)


def test_training_another_expert_leaves_the_base_and_every_expert_byte_identical(world):
    store, _, models, _ = world
    before = files_digest(models)
    enqueue(store, game="crafter", category="craft", reason="test")
    job = Worker(store, process(store, models), name="w2", lease_s=300).run_once()
    assert job.status in ("promoted", "rejected"), job.error
    after = files_digest(models)
    assert {k: v for k, v in after.items() if k in before} == before
    assert any("craft" in k for k in after if k not in before)  # the candidate, in its own files


def test_a_corrupt_candidate_is_never_promoted(world, monkeypatch):
    store, _, models, _ = world
    real = pipeline.train_expert

    def truncating(*args, **kwargs):
        cand = real(*args, **kwargs)
        weights = Path(cand.path) / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])  # a torn write after the fact
        return cand

    monkeypatch.setattr(pipeline, "train_expert", truncating)
    promoted_before = [(e.id, e.sha256) for e in promoted(store, "crafter")]
    enqueue(store, game="crafter", category="build", reason="test")
    job = Worker(store, process(store, models), name="w3", lease_s=300).run_once()
    assert job.status == "rejected" and job.metrics["rejected"] == "file not intact"
    assert [(e.id, e.sha256) for e in promoted(store, "crafter")] == promoted_before
    candidate = [e for e in experts(store, "crafter") if e.id == job.expert_id]
    assert all(e.status == "rejected" for e in candidate)  # registered, never promoted


CHILD = textwrap.dedent("""
    import sys
    from consolidation.pipeline import ConsolidationConfig, run_pipeline
    from consolidation.trainer import ExpertTrainingConfig
    from consolidation.worker import Worker
    from agent.services.evaluation import fast_success
    from memory.store import Store

    store = Store.open(sys.argv[1])
    models = sys.argv[2]
    endless = ConsolidationConfig(expert=ExpertTrainingConfig(epochs=100000, patience=100000))

    def process(job, beat):
        print("training", flush=True)
        return run_pipeline(store, job, beat, models_dir=models, config=endless,
                            evaluate=lambda refs, skills, n: fast_success(store, models, job.game, refs, skills, n))

    Worker(store, process, name="doomed", lease_s=2).run_once()
""")


def test_a_worker_killed_mid_training_changes_nothing_and_its_job_completes_later(world):
    store, url, models, _ = world
    before_files = files_digest(models)
    before_rows = [(e.id, e.status, e.sha256) for e in experts(store, "crafter")]
    job_id = enqueue(store, game="crafter", category="gather", reason="test")
    root = Path(__file__).resolve().parents[1]
    child = subprocess.Popen([sys.executable, "-c", CHILD, url, str(models)], cwd=root,
                             stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(root)))
    try:
        assert child.stdout.readline().strip() == "training"
        time.sleep(3)  # well inside the endless training loop
        assert get_job(store, job_id).status == "running"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert files_digest(models) == before_files
    assert [(e.id, e.status, e.sha256) for e in experts(store, "crafter")] == before_rows
    time.sleep(2.5)  # the 2 s lease lapses with nobody to renew it
    assert requeue_expired(store) == 1
    requeued = get_job(store, job_id)
    assert requeued.status == "queued" and requeued.attempts == 1
    done = Worker(store, process(store, models), name="w4", lease_s=300).run_once()
    assert done.id == job_id and done.status in ("promoted", "rejected"), done.error


def test_the_targets_switch_reaches_the_base_a_job_trains(monkeypatch, tmp_path):
    """`peam bench continual --no-targets` -> ConsolidationConfig(targets=False) -> the base."""
    import types

    import consolidation.pipeline as pipeline
    from typer.testing import CliRunner

    import agent.bench.continual
    from agent.cli import app

    class Trained(Exception):
        pass

    def fake_train_base(store, **kw):
        raise Trained(kw["policy_config"].targets)

    monkeypatch.setattr(pipeline, "train_base", fake_train_base)
    job = types.SimpleNamespace(game="crafter", category="gather", skill=None)
    for targets in (True, False):
        with pytest.raises(Trained) as caught:
            pipeline.run_pipeline(None, job, lambda: None, evaluate=None, models_dir=tmp_path,
                                  config=ConsolidationConfig(targets=targets))
        assert caught.value.args == (targets,)
    seen = []
    monkeypatch.setattr(agent.bench.continual, "run_continual", lambda cfg, console: seen.append(cfg) or 1 / 0)
    CliRunner().invoke(app, ["bench", "continual", "--no-targets", "--out", str(tmp_path)])
    CliRunner().invoke(app, ["bench", "continual", "--out", str(tmp_path)])
    assert [cfg.consolidation.targets for cfg in seen] == [False, True]
