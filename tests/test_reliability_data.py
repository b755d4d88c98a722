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
from consolidation.worker import JobOutcome, Worker, WorkerSetupError
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

    from agent import memory_modes
    from agent.session import RunSpec, run_episodes
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

    monkeypatch.setattr(memory_modes, "auto_consolidate",
                        functools.partial(memory_modes.auto_consolidate, process=process))
    run_episodes(RunSpec(task="collect_wood", episodes=1, db=url, workers=1, consolidate="auto"))
    assert "category build" in ran
    with Store.open(url) as s:
        (job,) = [j for j in jobs(s, 10) if j.target == "category build"]
        assert job.status == "rejected" and job.reason.startswith("fast path fails more than slow")
