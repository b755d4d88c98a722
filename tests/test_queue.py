"""The consolidation job queue and worker on SQLite and PostgreSQL (consolidation/queue.py,
consolidation/worker.py), including a worker killed with SIGKILL mid-job."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from consolidation.queue import (LeaseLostError, QueueError, advance, claim, enqueue, get_job,
                                 heartbeat, jobs, requeue_expired)
from consolidation.worker import JobOutcome, Worker
from envs.crafter import crafter_catalog
from memory.tables import utcnow
from store_fixtures import store, store_url  # noqa: F401  (pytest fixtures)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def skills(store):  # noqa: F811
    store.sync_skills(crafter_catalog())
    return store


def queue_one(store, skill="collect_wood") -> int:
    return enqueue(store, game="crafter", skill=skill, reason="test")


def test_enqueue_of_an_identical_active_job_returns_the_same_id(skills):
    first = queue_one(skills)
    assert queue_one(skills) == first
    assert enqueue(skills, game="crafter", category="gather", reason="t") != first
    claim(skills, "w", 60)
    assert queue_one(skills) == first  # still running: still the same job


@pytest.mark.parametrize("kw, message", [
    ({"skill": "fly"}, "unknown skill 'fly'"), ({"category": "magic"}, "unknown category 'magic'"),
    ({}, "exactly one"), ({"skill": "collect_wood", "category": "gather"}, "exactly one")])
def test_bad_enqueue_raises_one_line_and_writes_nothing(skills, kw, message):
    with pytest.raises(QueueError, match=message) as raised:
        enqueue(skills, game="crafter", reason="t", **kw)
    assert "\n" not in str(raised.value)
    assert jobs(skills, 10) == []


def test_claim_is_exclusive_under_concurrency(skills):
    names = [s.name for s in crafter_catalog()][:12]
    ids = {queue_one(skills, n) for n in names}
    claimed, start = [], threading.Barrier(6)

    def work(k):
        start.wait()
        while (job := claim(skills, f"w{k}", 60)) is not None:
            claimed.append(job.id)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)
    assert {j.status for j in jobs(skills, 50)} == {"running"}


def test_an_expired_lease_requeues_the_job_with_one_more_attempt(skills):
    job_id = queue_one(skills)
    claim(skills, "w1", 60)
    assert requeue_expired(skills) == 0
    assert requeue_expired(skills, utcnow() + timedelta(seconds=61)) == 1
    job = get_job(skills, job_id)
    assert (job.status, job.attempts, job.worker) == ("queued", 1, None)
    with pytest.raises(LeaseLostError):
        heartbeat(skills, job_id, "w1", 60)
    assert claim(skills, "w2", 60).id == job_id


def test_a_job_that_lost_its_lease_max_attempts_times_is_failed(skills):
    job_id = queue_one(skills)
    for _ in range(3):
        claim(skills, "w", 60)
        requeue_expired(skills, utcnow() + timedelta(seconds=61), max_attempts=3)
    job = get_job(skills, job_id)
    assert (job.status, job.attempts, job.error) == ("failed", 3, "lease expired 3 times")
    assert claim(skills, "w", 60) is None


def test_the_state_machine_refuses_illegal_transitions(skills):
    job_id = queue_one(skills)
    claim(skills, "w", 60)
    with pytest.raises(ValueError, match="running -> promoted"):
        advance(skills, job_id, "w", "promoted")
    with pytest.raises(LeaseLostError):
        advance(skills, job_id, "someone-else", "evaluating")
    advance(skills, job_id, "w", "evaluating")
    done = advance(skills, job_id, "w", "rejected", metrics={"success": 0.2})
    assert (done.status, done.metrics, done.lease_until) == ("rejected", {"success": 0.2}, None)
    with pytest.raises(LeaseLostError):
        advance(skills, job_id, "w", "failed")


def test_worker_records_promotion_and_a_crash_as_failed_in_one_line(skills):
    seen_beats = []

    def process(job, beat):
        beat()
        seen_beats.append(job.id)
        if job.skill == "collect_stone":
            raise RuntimeError("no data\nfor this skill")
        return JobOutcome("promoted", metrics={"success": 1.0})

    ok, bad = queue_one(skills), queue_one(skills, "collect_stone")
    worker = Worker(skills, process, name="w", lease_s=30, poll_s=0.05)
    assert worker.run_once().status == "promoted"
    crashed = worker.run_once()
    assert (crashed.status, crashed.error) == ("failed", "RuntimeError: no data for this skill")
    assert worker.run_once() is None and seen_beats == [ok, bad]


def test_worker_heartbeats_in_the_background_while_the_job_runs(skills):
    job_id = queue_one(skills)
    leases = []

    def process(job, beat):
        for _ in range(4):
            time.sleep(0.15)
            leases.append(get_job(skills, job.id).lease_until)
        return JobOutcome("rejected")

    Worker(skills, process, name="w", lease_s=0.3, poll_s=0.05).run_once()
    assert len(set(leases)) >= 2  # the lease moved on while `process` ran
    assert get_job(skills, job_id).status == "rejected"


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from consolidation.worker import Worker
    from memory.store import Store

    url, marker = sys.argv[1], Path(sys.argv[2])

    def process(job, heartbeat):
        marker.with_suffix(".tmp").write_bytes(b"half-trained expert")  # a candidate, never
        marker.write_text(str(job.id))                                  # the promoted file
        time.sleep(120)  # training

    Worker(Store.open(url), process, name="doomed", lease_s=1.0, poll_s=0.05).run_once()
""")


def test_a_sigkilled_worker_loses_nothing_and_its_job_is_completed_by_another(
        skills, store_url, tmp_path):  # noqa: F811
    expert = tmp_path / "experts" / "gather" / "adapter_model.safetensors"
    expert.parent.mkdir(parents=True)
    expert.write_bytes(b"promoted expert weights" * 100)
    sha = hashlib.sha256(expert.read_bytes()).hexdigest()
    job_id = queue_one(skills)
    marker = tmp_path / "started"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", CHILD, store_url, str(marker)], env=env,
                             cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.poll() is None and time.monotonic() < deadline, "child never started"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        child.kill()
    held = get_job(skills, job_id)
    assert (held.status, held.worker) == ("running", "doomed")
    deadline = time.monotonic() + 10
    while requeue_expired(skills) == 0:  # nobody renews the lease any more: it lapses
        assert time.monotonic() < deadline, "lease never expired"
        time.sleep(0.1)
    requeued = get_job(skills, job_id)
    assert (requeued.status, requeued.attempts) == ("queued", 1)
    done = Worker(skills, lambda job, beat: JobOutcome("promoted", metrics={"success": 1.0}),
                  name="survivor", lease_s=5, poll_s=0.05).run_once()
    assert (done.id, done.status, done.worker, done.attempts) == (job_id, "promoted",
                                                                  "survivor", 1)
    assert hashlib.sha256(expert.read_bytes()).hexdigest() == sha


PEAM = str(Path(sys.executable).parent / "peam")


def peam(*args, home, **kw):
    environ = dict(os.environ, PEAM_HOME=str(home))
    environ.pop("PEAM_DB", None)
    return subprocess.Popen([PEAM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=environ, **kw)


@pytest.fixture
def home(tmp_path):
    from memory.store import Store

    with Store.open(f"sqlite:///{tmp_path / 'peam.db'}") as opened:
        opened.sync_skills(crafter_catalog())
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["--skill", "collect_wood", "--category", "gather"], "exactly one of --skill or --category"),
    ([], "exactly one of --skill or --category"),
    (["--skill", "fly"], "unknown skill 'fly'")])
def test_cli_consolidate_refuses_bad_input_in_one_line_and_queues_nothing(home, args, message):
    cli = peam("consolidate", *args, home=home)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    listed, _ = peam("jobs", home=home).communicate(timeout=60)
    assert "no job yet" in listed


def test_cli_consolidate_wait_follows_the_job_until_a_worker_promotes_it(home):
    from memory.store import Store

    waiting = peam("consolidate", "--skill", "collect_wood", "--wait", home=home)
    with Store.open(f"sqlite:///{home / 'peam.db'}", create=False) as store:
        deadline = time.monotonic() + 30
        while not jobs(store, 1):
            assert time.monotonic() < deadline and waiting.poll() is None
            time.sleep(0.1)
        Worker(store, lambda job, beat: JobOutcome("promoted", expert_id=None),
               name="w", lease_s=10, poll_s=0.05).run_once()
    out, err = waiting.communicate(timeout=30)
    assert waiting.returncode == 0, err
    assert "job #1: promoted" in out
    listed, _ = peam("jobs", "--status", "promoted", home=home).communicate(timeout=60)
    assert "skill collect_wood" in listed and "promoted" in listed
