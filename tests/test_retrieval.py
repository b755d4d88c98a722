"""The retrieval-memory baseline (memory/retrieval.py) on a store filled by real episodes."""

import numpy as np
import pytest

from agent.loop.arbiter import Arbiter
from agent.loop.runner import Runner
from envs import make_env
from envs.base import Observation
from envs.tasks import resolve_task
from memory import columns as C
from memory.retrieval import SkillLibrary
from memory.store import Store

TASK = "make_wood_pickaxe"


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A real SQLite store with the slow path's segments of three real episodes."""
    path = tmp_path_factory.mktemp("retrieval") / "peam.db"
    store = Store.open(f"sqlite:///{path}")
    env = make_env("crafter")
    store.sync_skills(env.catalog)
    run_id = store.start_run(env="crafter", task=TASK, planner="symbolic", memory_mode="none", config={})
    results = Runner(env, recorder=store, run_id=run_id).run(resolve_task(TASK, env.catalog), seeds=[0, 1, 2])
    assert all(r.success for r in results)
    yield store, env, run_id
    store.close()


@pytest.fixture
def library(filled):
    store, env, _ = filled
    return SkillLibrary.for_env(store, env, loop_break=False)


def _obs(steps, t, items):
    inv = {name: int(v) for name, v in zip(items, steps[C.INVENTORY][t])}
    return Observation(rgb=np.zeros((1, 1, 3), np.uint8), local_view=steps[C.VIEW][t], inventory=inv,
                       facing=tuple(int(v) for v in steps[C.FACING][t]))


def test_a_stored_state_retrieves_its_own_action_at_distance_zero(filled, library):
    store, env, _ = filled
    for row in store.segments(path="slow", outcome="success"):
        steps = store.load_steps(row.id)
        memory = library.skills[row.skill].built()
        for t in range(row.steps):
            obs = _obs(steps, t, library.items)
            best = library.nearest(obs, row.skill)[0]
            assert best.similarity == pytest.approx(1.0, abs=1e-5)  # cosine distance 0
            # every remembered step of this skill with this very key (usually only this one)
            twins = np.flatnonzero(np.all(memory.matrix == library._query(obs), axis=1))
            assert (row.id, t) in {tuple(w) for w in memory.where[twins]}
            assert env.action_names.index(best.action) in memory.values[twins]
            if len(twins) == 1:
                assert best.action == env.action_names[steps[C.ACTION][t]]
            assert library.act(obs, row.skill) == best.action


def test_different_subgoals_never_mix(filled, library):
    store, _, _ = filled
    skill_of = {r.id: r.skill for r in store.segments()}
    (table,) = [r for r in store.segments(skill="place_table", outcome="success")][:1]
    steps = store.load_steps(table.id)
    query = (steps[C.VIEW][0], steps[C.INVENTORY][0], steps[C.FACING][0])
    for skill in library.skills:
        matches = library.nearest(query, skill, n=1_000)
        assert len(matches) == library.steps(skill)
        assert {skill_of[m.segment_id] for m in matches} == {skill}
    # place_table's own state under collect_wood never answers "place_table"
    assert library.act(_obs(steps, 0, library.items), "collect_wood") != "place_table"
    assert library.act(_obs(steps, 0, library.items), "place_table") == "place_table"


def test_covers_confidence_version_and_size(filled, library):
    store, env, _ = filled
    catalog = env.catalog
    wins = store.segments(path="slow", outcome="success")
    decisions = sum(len(labels) for _, labels in library.decisions.values())
    assert decisions > 0 and library.version == len(wins) + decisions
    assert library.steps() == sum(r.steps for r in wins)
    assert {c: library.covers(c) for c in ("gather", "build", "craft", "combat")} == {
        "gather": True, "build": True, "craft": True, "combat": False}
    assert library.confidence("collect_wood").rate == 1.0
    assert library.confidence("collect_stone").attempts == 0  # same category, never remembered
    assert library.act(_obs(store.load_steps(wins[0].id), 0, library.items), "collect_stone") == "noop"
    assert library.size_bytes >= library.steps() * library.embed.dim * 4
    strict = SkillLibrary.for_env(store, env, min_segments=4)  # 3 episodes: 3 tables, 9 woods
    assert strict.covers("gather") and not strict.covers("build")
    assert strict.confidence("collect_wood").rate == 1.0
    assert strict.confidence("place_table").attempts == 0


def test_embedding_is_deterministic_and_unit_norm(filled, library):
    store, env, _ = filled
    again = SkillLibrary.for_env(store, env)
    for skill, memory in library.skills.items():
        a, b = memory.built().matrix, again.skills[skill].built().matrix
        assert a.dtype == np.float32 and np.array_equal(a, b)
        assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)


def test_loop_breaking_tries_the_next_best_action_on_a_repeated_state(filled):
    store, env, _ = filled
    library = SkillLibrary.for_env(store, env, loop_break=True)
    row = store.segments(skill="collect_wood", outcome="success")[0]
    obs = _obs(store.load_steps(row.id), 0, library.items)
    first, second = library.act(obs, "collect_wood"), library.act(obs, "collect_wood")
    assert first != second
    library.reset()
    assert library.act(obs, "collect_wood") == first
    voter = SkillLibrary.for_env(store, env, k=5, loop_break=False)
    assert voter.act(obs, "collect_wood") in env.action_names


def test_the_library_as_fast_path_plays_a_real_episode_and_its_segments_are_recorded(filled, library):
    store, env, run_id = filled
    slow_mean = {r.name: r.mean_steps for r in store.skill_table("crafter") if r.mean_steps}
    runner = Runner(env, recorder=store, run_id=run_id, arbiter=Arbiter(library, slow_mean, force_fast=True))
    result = runner.run_episode(resolve_task(TASK, env.catalog), seed=3)
    assert result.success  # by the fast path, or corrected by the slow path
    assert "fast" in result.paths and result.fast_steps > 0
    fast = store.segments(path="fast", episode_id=result.episode_id)
    assert len(fast) == result.paths.count("fast")
    assert sum(s.steps for s in store.segments(episode_id=result.episode_id)) == result.steps
    corrections = [s for s in store.segments(path="slow", episode_id=result.episode_id)
                   if s.corrects_segment_id is not None]
    assert len(corrections) == result.corrections
    assert all(c.corrects_segment_id in {f.id for f in fast if f.outcome != "success"} for c in corrections)
