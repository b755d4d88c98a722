"""The runner plays the real game and commits every segment to a real store."""

import pytest

from agent.loop.runner import Runner
from envs import make_env
from envs.tasks import resolve_task
from memory import columns as C
from memory.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store.open(f"sqlite:///{tmp_path}/peam.db")
    s.sync_skills(make_env("crafter").catalog)
    return s


def test_make_stone_pickaxe_succeeds_and_every_segment_is_stored(store):
    env = make_env("crafter")
    run_id = store.start_run(env="crafter", task="make_stone_pickaxe", planner="symbolic",
                             memory_mode="none", config={})
    runner = Runner(env, recorder=store, run_id=run_id)
    results = runner.run(resolve_task("make_stone_pickaxe", env.catalog), seeds=[0, 1, 2])
    assert all(r.success for r in results)
    episodes = store.episodes(run_id)
    assert sorted(e.status for e in episodes) == ["success"] * 3
    segments = store.segments()
    assert sum(s.steps for s in segments) == sum(r.steps for r in results)
    assert {s.skill for s in segments} >= {"collect_wood", "place_table", "make_wood_pickaxe",
                                          "collect_stone", "make_stone_pickaxe"}
    steps = store.load_steps(segments[0].id)
    assert steps[C.VIEW].shape == (segments[0].steps, 9, 7)
    assert steps[C.ACTION].shape == (segments[0].steps,)
    rows = {r.name: r for r in store.skill_table("crafter")}
    assert rows["make_stone_pickaxe"].successes == 3
    assert rows["make_stone_pickaxe"].slow_success_rate == 1.0


class ExplodingEnv:
    """The real game, which breaks after a number of steps (a crashed runner)."""

    def __init__(self, after):
        self.inner = make_env("crafter")
        self.after, self.steps = after, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def reset(self, **kw):
        return self.inner.reset(**kw)

    def step(self, action):
        self.steps += 1
        if self.steps > self.after:
            raise RuntimeError("game crashed")
        return self.inner.step(action)


def test_a_crashed_episode_is_marked_failed_and_keeps_its_committed_segments(store):
    env = ExplodingEnv(after=12)
    run_id = store.start_run(env="crafter", task="make_stone_pickaxe", planner="symbolic",
                             memory_mode="none", config={})
    runner = Runner(env, recorder=store, run_id=run_id)
    with pytest.raises(RuntimeError, match="game crashed"):
        runner.run_episode(resolve_task("make_stone_pickaxe", env.catalog), seed=0)
    (episode,) = store.episodes(run_id)
    assert episode.status == "failed" and "game crashed" in episode.error
    committed = store.segments(episode_id=episode.id)
    assert committed and sum(s.steps for s in committed) <= 12
