"""The SQL store, specified on a real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timezone

import numpy as np
import pytest
from sqlalchemy.exc import IntegrityError

from envs.crafter import crafter_catalog
from memory.columns import ACTION, FACING, INVENTORY, REWARD, VIEW
from memory.db import StoreError, resolve_url
from memory.store import SegmentRecord, Store, Base
from store_fixtures import store, store_url  # noqa: F401  (pytest fixtures)


def steps(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Step arrays shaped and typed as the runner records them (memory/columns.py)."""
    rng = np.random.default_rng(seed)
    return {
        VIEW: rng.integers(0, 30, (n, 9, 7), dtype=np.int16),
        INVENTORY: rng.integers(0, 10, (n, 16), dtype=np.int16),
        FACING: rng.integers(-1, 2, (n, 2), dtype=np.int8),
        ACTION: rng.integers(0, 17, (n,), dtype=np.int16),
        REWARD: rng.standard_normal(n).astype(np.float32),
    }


def segment(skill="collect_wood", path="slow", outcome="success", n=5, **kw) -> SegmentRecord:
    return SegmentRecord(skill=skill, category="gather", path=path, outcome=outcome,
                         start_step=0, steps=n, wall_s=0.5, data=steps(n), **kw)


def new_episode(store: Store) -> int:
    store.sync_skills(crafter_catalog())
    run = store.start_run(env="crafter", task="collect_wood", planner="symbolic",
                          memory_mode="none", config={"episodes": 1})
    return store.start_episode(run, env="crafter", task="collect_wood", seed=7)


def skill(store: Store, name: str):
    return next(row for row in store.skill_table("crafter") if row.name == name)


def test_migrated_schema_matches_the_models(store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(context, Base.metadata) == []


def test_reopening_a_store_keeps_its_rows(store_url):
    with Store.open(store_url) as first:
        episode = new_episode(first)
        first.add_segment(episode, segment())
    with Store.open(store_url, create=False) as again:
        assert skill(again, "collect_wood").attempts == 1
        assert len(again.skill_table("crafter")) == len(crafter_catalog())


def test_sync_skills_writes_one_row_per_catalog_skill_and_keeps_stats(store):
    episode = new_episode(store)
    store.add_segment(episode, segment())
    store.sync_skills(crafter_catalog())
    rows = store.skill_table("crafter")
    assert [r.name for r in rows] == crafter_catalog().names
    assert all(r.status == "novel" for r in rows)
    assert skill(store, "collect_wood").attempts == 1


def test_segment_commit_updates_the_skill_stats_and_episode_steps(store):
    episode = new_episode(store)
    store.add_segment(episode, segment(path="slow", outcome="success", n=4))
    store.add_segment(episode, segment(path="fast", outcome="failure", n=6))
    store.add_segment(episode, segment(path="fast", outcome="success", n=2))
    row = skill(store, "collect_wood")
    assert (row.attempts, row.successes, row.slow_attempts, row.fast_attempts) == (3, 2, 1, 2)
    assert row.success_rate == pytest.approx(2 / 3)
    assert (row.slow_success_rate, row.fast_success_rate) == (1.0, 0.5)
    assert row.mean_steps == pytest.approx(4.0)
    assert store.mean_steps(row.game) == {"collect_wood": pytest.approx(4.0)}  # attempted skills only
    assert row.last_used_at.tzinfo is not None
    assert skill(store, "collect_stone").success_rate is None  # never attempted
    (ep,) = store.episodes()
    assert (ep.slow_steps, ep.fast_steps) == (4, 8)
    assert [s.index for s in store.segments()] == [0, 1, 2]


def test_step_arrays_round_trip_exactly(store):
    episode = new_episode(store)
    data = steps(12, seed=3)
    data[REWARD][3] = np.nan
    seg_id = store.add_segment(episode, SegmentRecord(
        skill="collect_wood", category="gather", path="slow", outcome="success", start_step=0,
        steps=12, wall_s=1.0, data=data))
    loaded = store.load_steps(seg_id)
    assert loaded.keys() == data.keys()
    for key, array in data.items():
        assert loaded[key].dtype == array.dtype and loaded[key].shape == array.shape
        np.testing.assert_array_equal(loaded[key], array)


def test_a_failed_segment_commit_leaves_no_segment_and_no_stats(store):
    episode = new_episode(store)
    with pytest.raises(IntegrityError):  # corrects a segment that does not exist
        store.add_segment(episode, segment(corrects_segment_id=10**6))
    assert store.segments() == []
    assert skill(store, "collect_wood").attempts == 0
    assert store.episodes()[0].slow_steps == 0


def test_a_correction_links_to_the_failure_it_took_over_from(store):
    episode = new_episode(store)
    failed = store.add_segment(episode, segment(path="fast", outcome="timeout"))
    fixed = store.add_segment(episode, segment(path="slow", corrects_segment_id=failed))
    (row,) = store.segments(path="slow")
    assert (row.id, row.corrects_segment_id) == (fixed, failed)


def test_concurrent_segment_commits_lose_no_update(store):
    episodes = [new_episode(store) for _ in range(3)]

    def runner(episode_id):
        for _ in range(8):
            store.add_segment(episode_id, segment(n=2))

    threads = [threading.Thread(target=runner, args=(e,)) for e in episodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert skill(store, "collect_wood").attempts == 24
    assert skill(store, "collect_wood").mean_steps == 2.0


def test_fail_running_episodes_marks_only_the_runs_unfinished_episodes(store):
    episode = new_episode(store)
    run = store.episodes()[0].run_id
    done = store.start_episode(run, env="crafter", task="collect_wood", seed=8)
    store.finish_episode(done, status="success", steps=30, reward=1.0,
                         achievements={"collect_wood": 1}, planner_calls=2, planner_tokens=40)
    other_run = store.start_run(env="crafter", task="t", planner="p", memory_mode="none",
                                config={})
    bystander = store.start_episode(other_run, env="crafter", task="t", seed=0)
    assert store.fail_running_episodes(run, "RuntimeError: runner died") == 1
    by_id = {e.id: e for e in store.episodes()}
    assert (by_id[episode].status, by_id[episode].error) == ("failed", "RuntimeError: runner died")
    assert by_id[episode].finished_at is not None
    assert (by_id[done].status, by_id[done].achievements) == ("success", {"collect_wood": 1})
    assert by_id[bystander].status == "running"


def test_segments_filter_and_leave_out_step_data(store):
    episode = new_episode(store)
    store.add_segment(episode, segment(path="fast", outcome="failure"))
    store.add_segment(episode, segment(path="slow", outcome="success"))
    store.add_segment(episode, SegmentRecord("place_table", "build", "slow", "success", 5, 3,
                                             0.1, data=steps(3)))
    assert [s.skill for s in store.segments(category="build")] == ["place_table"]
    assert [s.outcome for s in store.segments(skill="collect_wood", path="fast")] == ["failure"]
    assert len(store.segments(outcome="success", limit=1)) == 1
    assert not hasattr(store.segments()[0], "data")
    assert store.segment_count(path="slow", outcome="success") == 2
    assert store.segment_count(path="slow", outcome="success", game="crafter") == len(
        store.segments(path="slow", outcome="success", game="crafter"))
    assert store.segment_count(skill="nothing") == 0


def test_runs_and_timestamps_are_timezone_aware_utc(store):
    episode = new_episode(store)
    store.finish_episode(episode, status="failure", steps=3, reward=0.0, achievements={})
    (ep,) = store.episodes()
    assert ep.started_at.utcoffset() == timezone.utc.utcoffset(None)
    assert ep.finished_at >= ep.started_at
    store.finish_run(ep.run_id, "finished")


def test_invalid_values_are_bugs_and_raise_value_error(store):
    with pytest.raises(ValueError, match="path"):
        segment(path="medium")
    with pytest.raises(ValueError, match="outcome"):
        segment(outcome="won")
    with pytest.raises(ValueError, match="length 5"):
        SegmentRecord("collect_wood", "gather", "slow", "success", 0, 5, 0.1, data=steps(4))
    with pytest.raises(ValueError, match="not in"):
        SegmentRecord("collect_wood", "gather", "slow", "success", 0, 1, 0.1,
                      data={"obs_pickle": np.zeros(1)})
    with pytest.raises(ValueError):
        store.finish_episode(new_episode(store), status="done", steps=0, reward=0,
                             achievements={})


# Bad input: one line that says how to mend it, and nothing written.

def assert_one_line_store_error(url, **kw) -> str:
    with pytest.raises(StoreError) as caught:
        Store.open(url, **kw)
    message = str(caught.value)
    assert message and "\n" not in message and caught.value.exit_code == 2
    return message


@pytest.mark.parametrize("url, says", [
    ("not a url", "malformed database URL"),
    ("mysql+pymysql://root@localhost/peam", "unsupported database"),
    ("postgresql+asyncmy://u@h/db", "unsupported database driver"),
])
def test_a_bad_url_raises_one_line_and_creates_nothing(tmp_path, monkeypatch, url, says):
    monkeypatch.setenv("PEAM_HOME", str(tmp_path / "home"))
    assert says in assert_one_line_store_error(url)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server_raises_one_line_and_hides_the_password():
    message = assert_one_line_store_error("postgresql+psycopg://peam:s3cret@127.0.0.1:1/peam")
    assert "cannot connect" in message and "s3cret" not in message


def test_an_unwritable_data_directory_raises_one_line_and_creates_nothing(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    url = f"sqlite:///{blocker / 'peam-data' / 'peam.db'}"
    assert "writable" in assert_one_line_store_error(url)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission bits")
def test_a_read_only_directory_raises_one_line_and_creates_nothing(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert "writable" in assert_one_line_store_error(f"sqlite:///{locked}/sub/peam.db")
    assert list(locked.iterdir()) == []


def test_opening_a_missing_store_without_create_creates_nothing(tmp_path):
    assert "no peam store" in assert_one_line_store_error(
        f"sqlite:///{tmp_path}/peam-data/peam.db", create=False)
    assert list(tmp_path.iterdir()) == []


def test_the_url_comes_from_the_flag_then_peam_db_then_peam_home(monkeypatch, tmp_path):
    monkeypatch.delenv("PEAM_DB", raising=False)
    monkeypatch.delenv("PEAM_HOME", raising=False)
    assert resolve_url() == "sqlite:///peam-data/peam.db"
    monkeypatch.setenv("PEAM_HOME", str(tmp_path))
    assert resolve_url() == f"sqlite:///{tmp_path}/peam.db"
    monkeypatch.setenv("PEAM_DB", "postgresql+psycopg://u@h/db")
    assert resolve_url() == "postgresql+psycopg://u@h/db"
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"


def test_importing_memory_imports_no_sqlalchemy():
    code = "import sys, memory; assert 'sqlalchemy' not in sys.modules, 'heavy import'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(__file__) + "/..")


def test_stores_opened_by_threads_at_once_all_migrate(tmp_path):
    """Alembic's `context` is process-wide: threads that migrate at once must take turns (they
    swapped connections and crashed the interpreter with a segmentation fault)."""
    code = (
        "import sys, threading\n"
        "from memory.store import Store\n"
        "errors = []\n"
        "def one(path):\n"
        "    try:\n"
        "        Store.open(f'sqlite:///{path}').close()\n"
        "    except Exception as e:\n"
        "        errors.append(e)\n"
        "for r in range(8):\n"
        "    ts = [threading.Thread(target=one, args=(f'{sys.argv[1]}/{r}-{i}.db',)) for i in range(4)]\n"
        "    [t.start() for t in ts]\n"
        "    [t.join() for t in ts]\n"
        "print(len(errors))\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.strip() == "0"
