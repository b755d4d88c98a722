"""Issue 19, data and jobs: a worker's misconfiguration loses no job; a killed run does not stay
`running`; a requeued job leaves no orphan candidate; experts are bound to their base and to
their digest; `--workers` with `--consolidate auto` consolidates; expert paths do not depend on
the directory a job ran in. Real stores (SQLite file and PostgreSQL schema), real processes."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from consolidation.queue import enqueue, get_job, jobs
from consolidation.worker import JobOutcome, Worker
from envs.crafter import crafter_catalog
from memory.store import Store
from memory.tables import Run
from store_fixtures import store, store_url  # noqa: F401  (pytest fixtures)

PEAM = str(pathlib.Path(sys.executable).parent / "peam")
ROOT = str(pathlib.Path(__file__).resolve().parents[1])


def peam(*args, home=None, cwd=None, timeout=300):
    environ = dict(os.environ)
    if home is not None:
        environ["PEAM_HOME"] = str(home)
    environ.pop("PEAM_DB", None)
    return subprocess.run([PEAM, *args], capture_output=True, text=True, env=environ, timeout=timeout,
                          cwd=cwd)


def one_line_error(out) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("peam: error:"), out.stderr
    return lines[0]


def wait_for(predicate, what: str, limit_s: float = 240.0, every_s: float = 0.2):
    """Poll until `predicate()` is true (a deadline against hanging, not a timing assert)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(every_s)


# -- 1. a worker that cannot run a job gives it back ----------------------------------------------

def queued_job(store) -> int:
    store.sync_skills(crafter_catalog())
    return enqueue(store, game="crafter", category="build", reason="test")


def test_a_worker_setup_failure_after_the_claim_requeues_the_job_untouched(store):
    from consolidation.worker import WorkerSetupError

    job_id = queued_job(store)

    def process(job, beat):
        raise WorkerSetupError("no such device")

    with pytest.raises(WorkerSetupError):
        Worker(store, process, name="w", lease_s=60).run_once()
    job = get_job(store, job_id)
    assert (job.status, job.worker, job.attempts, job.error) == ("queued", None, 0, None)
    done = Worker(store, lambda job, beat: JobOutcome("rejected"), name="w2", lease_s=60).run_once()
    assert done.id == job_id and done.status == "rejected"  # a sound worker takes it afterwards


def test_worker_with_a_cuda_device_on_a_machine_without_one_fails_no_job(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    url = f"sqlite:///{tmp_path / 'peam.db'}"
    with Store.open(url) as s:
        job_id = queued_job(s)
    out = peam("worker", "--once", "--device", "cuda", "--db", url, timeout=120)
    assert "--device cuda" in one_line_error(out) and "Traceback" not in out.stderr
    with Store.open(url) as s:
        job = get_job(s, job_id)
        assert (job.status, job.attempts, job.error) == ("queued", 0, None)


# -- 2. runs killed from outside ------------------------------------------------------------------

def test_a_run_whose_process_died_is_swept_to_interrupted_keeping_its_steps(store, store_url):
    from memory.runs import recent_runs, sweep_stale_runs

    code = textwrap.dedent(f"""
        import os
        from envs.crafter import crafter_catalog
        from memory.store import SegmentRecord, Store
        s = Store.open({store_url!r})
        s.sync_skills(crafter_catalog())
        run = s.start_run(env="crafter", task="t", planner="symbolic", memory_mode="none", config={{}})
        episode = s.start_episode(run, env="crafter", task="t", seed=0)
        for steps in (3, 4):
            s.add_segment(episode, SegmentRecord(skill="collect_wood", category="gather", path="slow",
                                                 outcome="success", start_step=0, steps=steps, wall_s=0.1))
        os.kill(os.getpid(), 9)  # dies mid-episode, as a SIGKILLed runner
    """)
    dead = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=ROOT))
    assert dead.returncode == -signal.SIGKILL
    live = store.start_run(env="crafter", task="t", planner="symbolic", memory_mode="none", config={})
    (episode,) = [e for e in store.episodes() if e.run_id != live]
    assert episode.status == "running"
    swept = sweep_stale_runs(store)
    assert live not in swept and len(swept) == 1  # this process is alive: its run is left alone
    (episode,) = [e for e in store.episodes() if e.run_id != live]
    assert (episode.status, episode.steps) == ("interrupted", 7) and episode.finished_at is not None
    assert {r.id: r.status for r in recent_runs(store)} == {live: "running", swept[0]: "interrupted"}
    assert sweep_stale_runs(store) == []


def store_rows(url):
    """Runs, episodes and segments as stored, read without sweeping anything."""
    from sqlalchemy import select

    with Store.open(url, create=False) as s:
        with s.session() as session:
            runs = [(r.id, r.status) for r in session.scalars(select(Run).order_by(Run.id))]
        return runs, s.episodes(), {e.id: s.segments(episode_id=e.id) for e in s.episodes()}


def start_long_run(home, url):
    environ = dict(os.environ, PEAM_HOME=str(home))
    return subprocess.Popen([PEAM, "run", "--task", "make_iron_pickaxe", "--episodes", "3",
                             "--consolidate", "off", "--db", url], env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_a_segment(url, proc):
    def committed():
        assert proc.poll() is None, proc.stderr.read()
        try:
            with Store.open(url, create=False) as s:
                return s.segment_count() >= 1
        except Exception:  # noqa: BLE001 — not created yet
            return False

    wait_for(committed, "the run's first committed segment")


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_or_terminated_peam_run_ends_interrupted_with_its_committed_steps(tmp_path, how):
    url = f"sqlite:///{tmp_path / 'peam.db'}"
    proc = start_long_run(tmp_path, url)
    try:
        wait_for_a_segment(url, proc)
        proc.send_signal(getattr(signal, how))
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if how == "SIGTERM":  # handled as Ctrl-C: marked on the way out, before any sweep
        runs, episodes, segments = store_rows(url)
        assert runs[0][1] == "interrupted" and "Traceback" not in proc.stderr.read()
    else:
        listing = peam("runs", "--db", url, timeout=120)  # the next read sweeps
        assert listing.returncode == 0, listing.stderr
        assert "interrupted" in listing.stdout and "running" not in listing.stdout
        runs, episodes, segments = store_rows(url)
        assert runs[0][1] == "interrupted"
    (episode,) = episodes
    assert episode.status == "interrupted"
    assert episode.steps == sum(seg.steps for seg in segments[episode.id]) > 0


def test_a_new_run_sweeps_the_run_a_killed_process_left_running(tmp_path):
    url = f"sqlite:///{tmp_path / 'peam.db'}"
    proc = start_long_run(tmp_path, url)
    try:
        wait_for_a_segment(url, proc)
        proc.kill()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = peam("run", "--task", "collect_wood", "--consolidate", "off", "--db", url, home=tmp_path)
    assert out.returncode == 0, out.stderr
    runs, _, _ = store_rows(url)
    assert [status for _, status in runs] == ["interrupted", "finished"]


# -- 8. --workers with --consolidate auto ---------------------------------------------------------

@pytest.mark.ray
def test_workers_with_consolidate_auto_run_the_self_trigger(tmp_path, monkeypatch):
    import functools

    from agent.services import self_trigger
    from agent.services.session import RunSpec, run_episodes
    from store_helpers import record

    monkeypatch.setenv("PEAM_HOME", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'peam.db'}"
    with Store.open(url) as s:  # place_table: 10/10 slow, 0/10 fast: the trigger fires
        record(s, [("place_table", "slow", "success", 2, 0.01)] * 10
               + [("place_table", "fast", "failure", 20, 0.2)] * 10)
    ran = []

    def process(job, beat):  # the job's training stubbed (it has its own tests): what ran is the point
        ran.append(job.target)
        return JobOutcome("rejected")

    monkeypatch.setattr(self_trigger, "auto_consolidate",
                        functools.partial(self_trigger.auto_consolidate, pipeline=process))
    run_episodes(RunSpec(task="collect_wood", episodes=1, db=url, workers=1, consolidate="auto"))
    assert "category build" in ran
    with Store.open(url) as s:
        (job,) = [j for j in jobs(s, 10) if j.target == "category build"]
        assert job.status == "rejected" and job.reason.startswith("fast path fails more than slow")


# -- a practised store with a tiny base and a promoted expert, trained as a job would ----------

TINY_BASE = dict(d_model=32, n_layers=1, n_heads=4)


@pytest.fixture(scope="module")
def practised(tmp_path_factory):
    """A store practised on two games, a tiny base and a promoted `build` expert, made with the
    default, relative `PEAM_HOME` (./peam-data) from the directory `a/`: what the audit saw."""
    from agent.loop.runner import Runner
    from consolidation.fit import FitConfig
    from consolidation.trainer import ExpertTrainingConfig, train_base, train_expert
    from envs import make_env
    from envs.tasks import resolve_task
    from memory.db import data_home
    from memory.policy import PolicyConfig
    from memory.registry import promote

    root = tmp_path_factory.mktemp("practised")
    (root / "a").mkdir()
    cwd, home = os.getcwd(), os.environ.pop("PEAM_HOME", None)
    os.chdir(root / "a")
    try:
        store = Store.open()
        env = make_env("crafter")
        store.sync_skills(env.catalog)
        run_id = store.start_run(env="crafter", task="make_wood_pickaxe", planner="symbolic",
                                 memory_mode="none", config={})
        Runner(env, recorder=store, run_id=run_id).run(resolve_task("make_wood_pickaxe", env.catalog), [0, 1])
        store.finish_run(run_id, "finished")
        models = data_home() / "models"  # relative: peam-data/models
        train_base(store, out_dir=models, config=FitConfig(epochs=1), policy_config=PolicyConfig(**TINY_BASE),
                   progress=False)
        cand = train_expert(store, models_dir=models, game="crafter", category="build", tag="first",
                            config=ExpertTrainingConfig(epochs=1, rank=4))
        promote(store, cand.expert_id)
        store.close()
    finally:
        os.chdir(cwd)
        if home is not None:
            os.environ["PEAM_HOME"] = home
    return root / "a" / "peam-data"


@pytest.fixture
def home(practised, tmp_path, monkeypatch):
    """A copy of the practised data directory, used from another working directory with an
    absolute PEAM_HOME."""
    import shutil

    copy = tmp_path / "peam-data"
    shutil.copytree(practised, copy)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setenv("PEAM_HOME", str(copy))
    return copy


def open_home(home) -> Store:
    return Store.open(f"sqlite:///{home / 'peam.db'}")


def build_expert(store):
    from memory.registry import promoted

    (row,) = [e for e in promoted(store, "crafter") if e.category == "build"]
    return row


def flip_last_byte(path: pathlib.Path) -> None:
    """Alter the last tensor's last byte: the safetensors header stays intact."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


# -- 9. expert paths do not depend on the directory a job ran in ---------------------------------

def test_experts_load_from_another_working_directory_with_an_absolute_home(home):
    from agent.services.memory_modes import expert_fast_path
    from memory.db import data_home

    with open_home(home) as store:
        row = build_expert(store)
        assert row.path == "experts/build/first"  # relative to the models directory
        fast = expert_fast_path("peam", store, "crafter", data_home() / "models")
        assert fast is not None and fast.covers("build")


def test_a_row_registered_relative_to_the_jobs_directory_still_resolves(home):
    from memory.expert_io import sha256_of
    from memory.registry import expert_dir

    models = home / "models"
    legacy = "peam-data/models/experts/build/first"  # how rows were written before
    assert expert_dir(models, legacy) == models / "experts" / "build" / "first"
    assert expert_dir(models, "plan/experts/craft/job3") == models / "plan/experts/craft/job3"
    with open_home(home) as store:
        assert sha256_of(expert_dir(models, legacy)) == build_expert(store).sha256


# -- 5. the registered digests are checked when loading for play ---------------------------------

def test_an_expert_whose_tensors_were_altered_is_refused_for_play(home):
    from agent.services.memory_modes import expert_fast_path
    from memory.expert_io import AdapterError, WEIGHTS_NAME, read_expert
    from memory.registry import expert_dir

    with open_home(home) as store:
        directory = expert_dir(home / "models", build_expert(store).path)
        flip_last_byte(directory / WEIGHTS_NAME)
        read_expert(directory)  # the header is intact: it still parses
        with pytest.raises(AdapterError, match="does not match the sha256 registered"):
            expert_fast_path("peam", store, "crafter", home / "models")
        runs_before = len(store.episodes())
    out = peam("run", "--task", "collect_wood", "--consolidate", "off", home=home, timeout=120)
    assert "does not match the sha256" in one_line_error(out)
    with open_home(home) as store:
        assert len(store.episodes()) == runs_before  # refused before anything was written


def test_an_altered_base_is_refused_for_play(home):
    from agent.services.memory_modes import expert_fast_path
    from envs.errors import PeamError

    flip_last_byte(home / "models" / "base" / "model.safetensors")
    with open_home(home) as store:
        with pytest.raises(PeamError, match=r"expert #\d+ \(build\) was trained on another base"):
            expert_fast_path("peam", store, "crafter", home / "models")


# -- 4. one base at a time, and experts bound to theirs ------------------------------------------

def test_experts_record_the_digest_of_their_base(home):
    from memory.expert_io import sha256_of

    with open_home(home) as store:
        assert build_expert(store).base_sha256 == sha256_of(home / "models" / "base" / "model.safetensors")


def test_two_workers_on_an_empty_models_directory_train_the_base_once(tmp_path):
    import threading

    from memory.base_io import BASE_DIR, WEIGHTS, ensure_base

    models = tmp_path / "models"
    trained, inside, both = [], threading.Event(), threading.Event()

    def train(name):
        def run():
            trained.append(name)
            if len(trained) == 2:
                both.set()  # without the lock the second one gets here while the first trains
            inside.set()
            both.wait(1.0)  # give a second trainer every chance to overlap
            (models / BASE_DIR).mkdir(parents=True, exist_ok=True)
            (models / BASE_DIR / WEIGHTS).write_bytes(name.encode())
        return run

    first = threading.Thread(target=ensure_base, args=(models, train("first")))
    first.start()
    inside.wait(30)
    second = threading.Thread(target=ensure_base, args=(models, train("second")))
    second.start()
    first.join(60)
    second.join(60)
    assert trained == ["first"] and (models / BASE_DIR / WEIGHTS).read_bytes() == b"first"


def test_train_base_refuses_to_replace_a_base_under_promoted_experts_unless_told(home):
    from agent.services.memory_modes import expert_fast_path
    from envs.errors import PeamError
    from memory.expert_io import sha256_of
    from memory.registry import experts, promote

    weights = home / "models" / "base" / "model.safetensors"
    before = sha256_of(weights)
    args = ("train-base", "--epochs", "1", "--no-experts", "--device", "cpu")
    refused = peam(*args, home=home, timeout=300)
    assert "--replace" in one_line_error(refused)
    assert sha256_of(weights) == before
    replaced = peam(*args, "--replace", home=home, timeout=300)
    assert replaced.returncode == 0, replaced.stderr
    assert "retired 1 promoted expert" in replaced.stdout
    assert sha256_of(weights) != before
    with open_home(home) as store:
        (old,) = [e for e in experts(store, "crafter") if e.category == "build" and e.path.endswith("first")]
        assert old.status == "retired"
        assert expert_fast_path("peam", store, "crafter", home / "models") is None
        promote(store, old.id)  # put back by hand on the new base: refused at load
        with pytest.raises(PeamError, match="trained on another base"):
            expert_fast_path("peam", store, "crafter", home / "models")


# -- 3. a requeued job leaves no orphan candidate ------------------------------------------------

def test_a_requeued_job_supersedes_the_candidate_its_killed_attempt_left(home):
    from datetime import timedelta

    from consolidation.pipeline import ConsolidationConfig, run_pipeline
    from consolidation.queue import claim, requeue_expired
    from consolidation.trainer import ExpertTrainingConfig
    from memory.expert_io import sha256_of
    from memory.registry import expert_dir, experts
    from memory.tables import utcnow

    models = home / "models"
    cfg = ConsolidationConfig(expert=ExpertTrainingConfig(epochs=1, rank=4))

    def killed(refs, skills, n):
        raise RuntimeError("the worker was killed here")

    def nothing_works(refs, skills, n):
        return {s: {"rate": 0.0, "attempts": 1, "successes": 0} for s in skills}

    with open_home(home) as store:
        job_id = enqueue(store, game="crafter", category="build", reason="test")
        job = claim(store, "w1", lease_s=60)
        with pytest.raises(RuntimeError):
            run_pipeline(store, job, lambda: None, evaluate=killed, models_dir=models, config=cfg)
        (orphan,) = [e for e in experts(store, "crafter") if e.status == "candidate"]
        orphan_dir = expert_dir(models, orphan.path)
        assert orphan_dir.is_dir()
        assert requeue_expired(store, utcnow() + timedelta(hours=1)) == 1
        rerun = Worker(store, lambda job, beat: run_pipeline(store, job, beat, evaluate=nothing_works,
                                                             models_dir=models, config=cfg),
                       name="w2", lease_s=60).run_once()
        assert rerun.id == job_id and rerun.status == "rejected"
        rows = experts(store, "crafter")
        # (SQLite may give the rerun's row the orphan's freed id: compare paths)
        assert orphan.path not in {e.path for e in rows} and not orphan_dir.exists()
        assert [e.status for e in rows if e.status not in ("promoted",)] == ["rejected"]
        (last,) = [e for e in rows if e.status == "rejected"]
        assert last.id == rerun.expert_id and sha256_of(expert_dir(models, last.path)) == last.sha256
